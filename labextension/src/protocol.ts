/**
 * The conversation with `gemma_nb.lab` in the notebook's kernel, as pure functions.
 *
 * The front end sends one request (an action and a cell's source) as the code of a silent
 * execution; the kernel answers with lines on stdout, each `@gemma-nb <json>`. Kernel stdout
 * arrives in chunks that can split or join lines, so `LineParser` buffers until a newline.
 * Lines without the prefix (a library printing while the model loads) are ignored.
 */

/** Starts every line the kernel side writes for us; must match `gemma_nb.lab.PREFIX`. */
export const PREFIX = '@gemma-nb ';

/** The cell commands; the kernel side holds their prompts (no model logic here). */
export type Action = 'explain' | 'fix' | 'document';

export const ACTIONS: ReadonlyArray<Action> = ['explain', 'fix', 'document'];

/** What one command asks the kernel (the JSON `gemma_nb.lab.LabRequest.from_json` reads). */
export interface ILabRequest {
  action: Action;
  source: string;
  /** The cell's error output, for `fix` ('' when it has none). */
  error: string;
  /** A model folder, weights file or 'default'; '' lets the kernel choose. */
  model: string;
  max_tokens: number;
  temperature: number;
}

/** Why a command failed, as the kernel side (or the front end) classifies it. */
export type ErrorKind =
  | 'not-installed' // gemma_nb cannot be imported: it is not in the kernel's environment
  | 'too-old' // gemma_nb is there, without gemma_nb.lab
  | 'import-failed' // gemma_nb is there and fails to import (a missing dependency)
  | 'no-model' // no model could be found or loaded
  | 'bad-request' // the request did not validate (settings out of range)
  | 'generation' // the model raised while answering
  | 'kernel' // the kernel raised outside gemma_nb.lab
  | 'aborted' // the kernel replied 'aborted': it did not run the request
  | 'no-answer' // the execution ended without a final event
  | 'kernel-lost'; // the kernel restarted or died before replying

export interface IStatusEvent {
  event: 'status';
  message: string;
}

export interface IModelEvent {
  event: 'model';
  name: string;
  provider: string;
  load_s: number;
}

export interface IProgressEvent {
  event: 'progress';
  tokens: number;
}

export interface IAnswerEvent {
  event: 'answer';
  action: Action;
  format: 'markdown' | 'code';
  text: string;
  model: string;
  provider: string;
  tokens: number;
  tokens_per_s: number;
  finish_reason: string;
}

export interface IErrorEvent {
  event: 'error';
  kind: ErrorKind;
  message: string;
  /** The kernel's interpreter, when the error is about what is installed in it. */
  python?: string;
}

export type LabEvent =
  IStatusEvent | IModelEvent | IProgressEvent | IAnswerEvent | IErrorEvent;

const EVENT_NAMES = new Set(['status', 'model', 'progress', 'answer', 'error']);

/** The event on one line of kernel output, or null if the line is not ours. */
export function parseLine(line: string): LabEvent | null {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (!text.startsWith(PREFIX)) {
    return null;
  }
  let value: unknown;
  try {
    value = JSON.parse(text.slice(PREFIX.length));
  } catch {
    return null; // a line cut by something else printing mid-line: not an event
  }
  if (
    typeof value !== 'object' ||
    value === null ||
    !EVENT_NAMES.has((value as { event?: unknown }).event as string)
  ) {
    return null;
  }
  return value as LabEvent;
}

/** Splits streamed stdout into lines and keeps the events among them. */
export class LineParser {
  private _pending = '';

  /** The events completed by `chunk`; a partial last line waits for the next chunk. */
  push(chunk: string): LabEvent[] {
    const lines = (this._pending + chunk).split('\n');
    this._pending = lines.pop() ?? '';
    return lines.map(parseLine).filter((e): e is LabEvent => e !== null);
  }

  /** The event on a last line that never got its newline, if any. */
  flush(): LabEvent[] {
    const rest = this._pending;
    this._pending = '';
    const event = rest ? parseLine(rest) : null;
    return event ? [event] : [];
  }
}
