/**
 * The notice of a running command, changed only by replacing it.
 *
 * JupyterLab's `Notification.update` is unreliable at both ends of a toast's life (JupyterLab
 * 4.6, react-toastify 9): an update issued before the toast is on screen is dropped (the toast
 * handler finds the toast inactive and creates it again under the same id, which react-toastify
 * ignores as a duplicate), and a dismissal issued while react-toastify still holds an update
 * (it applies updates two timer ticks later) brings the toast back. A command that fails within
 * milliseconds (gemma_nb not installed) hit the first case: its notice said "0 tokens" forever
 * (issue #7). An emitted notice always shows and a dismissed one always goes, so this notice
 * is never updated: a new message replaces it (dismiss, then emit), and the token count streams
 * in the status bar instead.
 */

import { Notification } from '@jupyterlab/apputils';

import { IOutcome } from './messages';

export class CommandNotice {
  /** Show `message` with a spinner and the Stop button, which calls `stop`. */
  constructor(message: string, stop: () => void) {
    this._actions = [
      {
        label: 'Stop',
        caption: 'Interrupt the kernel: keeps the answer so far',
        callback: () => stop()
      }
    ];
    this._message = message;
    this._id = this._emit();
  }

  /** Say `message` instead, unless the user closed the notice (Stop closes it) or it ended. */
  replace(message: string): void {
    if (message === this._message || !Notification.manager.has(this._id)) {
      return;
    }
    Notification.dismiss(this._id);
    this._message = message;
    this._id = this._emit();
  }

  /** Replace the notice by the command's outcome; `showDetails` opens an error's details. */
  end(outcome: IOutcome, showDetails: (details: string) => void): void {
    Notification.dismiss(this._id);
    const details = outcome.details;
    Notification.emit(outcome.message, outcome.type, {
      autoClose: outcome.autoClose,
      actions:
        details === null
          ? []
          : [{ label: 'Details', callback: () => showDetails(details) }]
    });
  }

  private _emit(): string {
    return Notification.emit(this._message, 'in-progress', {
      autoClose: false,
      actions: this._actions
    });
  }

  private _actions: Notification.IAction[];
  private _message: string;
  private _id: string;
}
