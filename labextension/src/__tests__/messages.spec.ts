import {
  doneMessage,
  errorMessage,
  kernelProblem,
  progressMessage,
  statusText
} from '../messages';
import { IAnswerEvent } from '../protocol';

describe('kernelProblem', () => {
  it('accepts a Python kernel', () => {
    expect(
      kernelProblem({ language: 'python', displayName: 'Python 3' })
    ).toBeNull();
  });

  it('names the kernel and its language when it is not Python', () => {
    const message = kernelProblem({ language: 'R', displayName: 'R 4.3' });
    expect(message).toContain('R 4.3');
    expect(message).toContain('Python kernel');
  });

  it('says what to do without a kernel', () => {
    expect(kernelProblem(null)).toContain('no kernel');
  });
});

describe('errorMessage', () => {
  it('tells how to install gemma_nb in the kernel when it is missing', () => {
    const message = errorMessage({
      event: 'error',
      kind: 'not-installed',
      message: "No module named 'gemma_nb'"
    });
    expect(message).toContain('not installed');
    expect(message).toContain('%pip install gemma-nb');
    expect(message.length).toBeLessThanOrEqual(140); // Notification truncates longer ones
  });

  it('keeps the kernel side message of a missing model', () => {
    expect(
      errorMessage({
        event: 'error',
        kind: 'no-model',
        message: 'x is neither a model folder'
      })
    ).toBe('Gemma: no model: x is neither a model folder');
  });

  it.each([
    'too-old',
    'import-failed',
    'bad-request',
    'generation',
    'kernel'
  ] as const)('has a message for %s', kind => {
    expect(errorMessage({ event: 'error', kind, message: 'm' })).toMatch(
      /^Gemma/
    );
  });
});

describe('notices', () => {
  const answer: IAnswerEvent = {
    event: 'answer',
    action: 'fix',
    format: 'code',
    text: 'x = 1',
    model: 'gemma-3-270m-fp32',
    provider: 'cpu',
    tokens: 12,
    tokens_per_s: 31.24,
    finish_reason: 'stop'
  };

  it('counts tokens while streaming', () => {
    expect(progressMessage('explain', 'cell [3]', 1)).toBe(
      'Gemma: explaining cell [3]… 1 token'
    );
    expect(progressMessage('fix', 'cell 2', 5)).toBe(
      'Gemma: fixing cell 2… 5 tokens'
    );
  });

  it('reports what was inserted and how fast', () => {
    expect(doneMessage(answer)).toBe(
      'Gemma: 12 tokens at 31.2 tok/s, inserted a code cell below'
    );
    expect(
      doneMessage({
        ...answer,
        format: 'markdown',
        finish_reason: 'interrupted'
      })
    ).toContain('Markdown cell below (stopped)');
  });
});

describe('statusText', () => {
  it('names the model, the provider and the last speed', () => {
    expect(
      statusText({
        name: 'gemma-3-270m-fp32',
        provider: 'cpu',
        tokensPerS: 9.87,
        busy: null
      })
    ).toBe('Gemma: gemma-3-270m-fp32 · cpu · 9.9 tok/s');
  });

  it('leaves the speed out before the first answer and shows work in progress', () => {
    expect(
      statusText({
        name: 'm',
        provider: 'cuda',
        tokensPerS: null,
        busy: 'answering'
      })
    ).toBe('Gemma: m · cuda (answering)');
  });

  it('says when no model is loaded', () => {
    expect(statusText(null)).toBe('Gemma: no model loaded');
  });
});
