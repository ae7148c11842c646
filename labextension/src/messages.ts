/**
 * What the user reads: notices and the status bar text, as pure functions.
 *
 * Notifications show at most 140 characters, so each message says what happened and what to
 * do in one short sentence; the kernel's full text goes in the notice's details.
 */

import { Action, IAnswerEvent, IErrorEvent } from './protocol';

const VERBS: Record<Action, string> = {
  explain: 'explaining',
  fix: 'fixing',
  document: 'documenting'
};

/** Why a kernel cannot run the commands, or null if it can. */
export function kernelProblem(
  kernel: { language: string; displayName: string } | null
): string | null {
  if (kernel === null) {
    return 'Gemma: this notebook has no kernel. Start a Python kernel with gemma_nb installed.';
  }
  if (kernel.language.toLowerCase() !== 'python') {
    return (
      `Gemma runs in the notebook's kernel, and ${kernel.displayName} is ` +
      `${kernel.language}: switch to a Python kernel with gemma_nb installed.`
    );
  }
  return null;
}

/** The one-line message of an error event. */
export function errorMessage(error: IErrorEvent): string {
  switch (error.kind) {
    case 'not-installed':
      return "Gemma: gemma_nb is not installed in this notebook's kernel: run %pip install gemma-nb in it, then restart the kernel.";
    case 'too-old':
      return "Gemma: the kernel's gemma_nb has no Lab support: upgrade it (%pip install -U gemma-nb), then restart the kernel.";
    case 'import-failed':
      return `Gemma: gemma_nb fails to import in this kernel: ${error.message}`;
    case 'no-model':
      return `Gemma: no model: ${error.message}`;
    case 'bad-request':
      return `Gemma: check the settings: ${error.message}`;
    case 'generation':
      return `Gemma: the model failed: ${error.message}`;
    case 'aborted':
      return 'Gemma: the kernel aborted the command without running it: run it again.';
    case 'no-answer':
      return 'Gemma: the kernel finished without an answer: run the command again.';
    case 'kernel-lost':
      return 'Gemma: the kernel restarted or died before answering.';
    default:
      return `Gemma: the kernel raised ${error.message}`;
  }
}

/** How a command ended: the notice that replaces its progress notice. */
export interface IOutcome {
  type: 'success' | 'warning' | 'error';
  message: string;
  /** The kernel's full text of an error (the notice's Details button), else null. */
  details: string | null;
  /** Milliseconds before the notice closes; false keeps it until the user closes it. */
  autoClose: number | false;
  /** Whether the answer goes into the notebook. */
  insert: boolean;
}

/**
 * The notice of a command's end, from its final events (`runOnKernel` always gives one; an
 * error wins over an answer).
 */
export function outcome(
  answer: IAnswerEvent | null,
  error: IErrorEvent | null
): IOutcome {
  if (error || !answer) {
    const event: IErrorEvent = error ?? {
      event: 'error',
      kind: 'no-answer',
      message: 'No answer or error event came back.'
    };
    return {
      type: 'error',
      message: errorMessage(event),
      details: event.message,
      autoClose: false,
      insert: false
    };
  }
  if (!answer.text.trim()) {
    return {
      type: 'warning',
      message: 'Gemma: the model gave an empty answer; nothing was inserted.',
      details: null,
      autoClose: 8000,
      insert: false
    };
  }
  return {
    type: 'success',
    message: doneMessage(answer),
    details: null,
    autoClose: 4000,
    insert: true
  };
}

/** The notice while a command runs. */
export function startMessage(action: Action, cellLabel: string): string {
  return `Gemma: ${VERBS[action]} ${cellLabel}…`;
}

/** What the status bar says while the answer streams. */
export function progressMessage(
  action: Action,
  cellLabel: string,
  tokens: number
): string {
  const count = tokens === 1 ? '1 token' : `${tokens} tokens`;
  return `${VERBS[action]} ${cellLabel}: ${count}`;
}

/** The notice once the answer is in the notebook. */
export function doneMessage(answer: IAnswerEvent): string {
  const what = answer.format === 'code' ? 'code cell' : 'Markdown cell';
  const stopped = answer.finish_reason === 'interrupted' ? ' (stopped)' : '';
  return `Gemma: ${answer.tokens} tokens at ${answer.tokens_per_s.toFixed(1)} tok/s, inserted a ${what} below${stopped}`;
}

/** What the status bar says about a notebook's kernel. */
export interface IModelState {
  name: string;
  provider: string;
  /** Decode speed of the last answer; null before the first one. */
  tokensPerS: number | null;
  /** What a running command is doing (`progressMessage`), else null. */
  busy: string | null;
}

export function statusText(state: IModelState | null): string {
  if (state === null) {
    return 'Gemma: no model loaded';
  }
  const parts = [`Gemma: ${state.name}`, state.provider];
  if (state.tokensPerS !== null) {
    parts.push(`${state.tokensPerS.toFixed(1)} tok/s`);
  }
  const text = parts.join(' · ');
  return state.busy ? `${text} (${state.busy})` : text;
}
