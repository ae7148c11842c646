import type * as nbformat from '@jupyterlab/nbformat';

import { errorText, isGemmaCell, stripAnsi } from '../cells';

describe('isGemmaCell', () => {
  it.each([
    '%%gemma\nExplain this',
    '%%gemma --max-tokens 64 -o answer\nprompt',
    '%%gemma',
    '\n  %%gemma\nprompt after a blank line',
    '%%gemma\t--raw\nx'
  ])('detects %j', source => {
    expect(isGemmaCell(source)).toBe(true);
  });

  it.each([
    'print(1)',
    '%gemma load default',
    '%%gemmax\nnot the magic',
    '%%bash\n%%gemma',
    'x = 1\n%%gemma',
    '# %%gemma',
    ''
  ])('leaves %j alone', source => {
    expect(isGemmaCell(source)).toBe(false);
  });
});

describe('errorText', () => {
  const error = (ename: string, evalue: string, traceback: string[]) =>
    ({ output_type: 'error', ename, evalue, traceback }) as nbformat.IError;

  it('is empty without an error output', () => {
    const outputs: nbformat.IOutput[] = [
      { output_type: 'stream', name: 'stderr', text: 'DeprecationWarning: x' },
      {
        output_type: 'execute_result',
        data: {},
        metadata: {},
        execution_count: 1
      }
    ];
    expect(errorText(outputs)).toBe('');
  });

  it('joins the traceback without ANSI colours', () => {
    const text = errorText([
      error('NameError', "name 'x' is not defined", [
        '\u001b[0;31m---------------------------------------------------------------------------\u001b[0m',
        "\u001b[0;31mNameError\u001b[0m: name 'x' is not defined"
      ])
    ]);
    expect(text).toContain("NameError: name 'x' is not defined");
    expect(text).not.toContain('\u001b');
  });

  it('uses the last error, and its name and value when it has no traceback', () => {
    expect(
      errorText([
        error('ValueError', 'first', ['ValueError: first']),
        error('KeyError', "'k'", [])
      ])
    ).toBe("KeyError: 'k'");
  });
});

describe('stripAnsi', () => {
  it('removes colour and cursor sequences only', () => {
    expect(stripAnsi('\u001b[1;32mok\u001b[0m [1] {x}')).toBe('ok [1] {x}');
  });
});
