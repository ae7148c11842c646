/**
 * What the commands read from a cell, as pure functions of its source and outputs.
 */

import type * as nbformat from '@jupyterlab/nbformat';

/** The mimetype of Markdown in notebooks (what Markdown cells use): prompt text. */
export const PROMPT_MIMETYPE = 'text/x-ipythongfm';

/** A `%%gemma` cell: its first line is the cell magic (leading blank space allowed). */
export function isGemmaCell(source: string): boolean {
  const firstLine = source.replace(/^\s+/, '').split('\n', 1)[0];
  return /^%%gemma(\s|$)/.test(firstLine);
}

// ANSI escape sequences (colours of IPython tracebacks): CSI ... final byte.
const ANSI = /\u001b\[[0-?]*[ -/]*[@-~]/g;

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

/**
 * The error a cell raised, as plain text: its traceback without colours (the last error
 * output if several), or '' when it has none. Stderr is left out: warnings are not errors.
 */
export function errorText(outputs: ReadonlyArray<nbformat.IOutput>): string {
  const errors = outputs.filter(
    (o): o is nbformat.IError => o.output_type === 'error'
  );
  if (errors.length === 0) {
    return '';
  }
  const error = errors[errors.length - 1];
  const traceback = (error.traceback ?? []).map(stripAnsi).join('\n').trim();
  return traceback || `${error.ename}: ${error.evalue}`;
}
