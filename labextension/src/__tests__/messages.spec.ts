import {
  doneMessage,
  errorMessage,
  kernelProblem,
  outcome,
  progressMessage,
  startMessage,
  statusText
} from '../messages';
import { IAnswerEvent, IErrorEvent } from '../protocol';

/** An answer event, as the kernel side sends it. */
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
    'kernel',
    'aborted',
    'no-answer',
    'kernel-lost'
  ] as const)('has a message for %s', kind => {
    const message = errorMessage({ event: 'error', kind, message: 'm' });
    expect(message).toMatch(/^Gemma/);
    expect(message.length).toBeLessThanOrEqual(140);
  });
});

describe('notices', () => {
  it('names the action and the cell while a command runs', () => {
    expect(startMessage('document', 'cell [3]')).toBe(
      'Gemma: documenting cell [3]…'
    );
  });

  it('counts tokens while streaming', () => {
    expect(progressMessage('explain', 'cell [3]', 1)).toBe(
      'explaining cell [3]: 1 token'
    );
    expect(progressMessage('fix', 'cell 2', 5)).toBe('fixing cell 2: 5 tokens');
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

describe('outcome', () => {
  const notInstalled: IErrorEvent = {
    event: 'error',
    kind: 'not-installed',
    message: "No module named 'gemma_nb'"
  };

  it('inserts an answer and says so', () => {
    expect(outcome(answer, null)).toEqual({
      type: 'success',
      message: doneMessage(answer),
      details: null,
      autoClose: 4000,
      insert: true
    });
  });

  it('keeps an error on screen, with the kernel text as details', () => {
    expect(outcome(null, notInstalled)).toEqual({
      type: 'error',
      message: errorMessage(notInstalled),
      details: "No module named 'gemma_nb'",
      autoClose: false,
      insert: false
    });
  });

  it('lets an error win over an answer', () => {
    const end = outcome(answer, notInstalled);
    expect(end.type).toBe('error');
    expect(end.insert).toBe(false);
  });

  it('says when nothing came back instead of waiting', () => {
    const end = outcome(null, null);
    expect(end.type).toBe('error');
    expect(end.message).toContain('without an answer');
    expect(end.autoClose).toBe(false);
  });

  it('inserts no empty answer', () => {
    const end = outcome({ ...answer, text: ' \n' }, null);
    expect(end.type).toBe('warning');
    expect(end.insert).toBe(false);
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
        busy: 'explaining cell 1: 4 tokens'
      })
    ).toBe('Gemma: m · cuda (explaining cell 1: 4 tokens)');
  });

  it('says when no model is loaded', () => {
    expect(statusText(null)).toBe('Gemma: no model loaded');
  });
});
