/**
 * The status bar item: the model loaded in the current notebook's kernel, its provider, and
 * the speed of its last answer. It knows only what the commands' events told it.
 */

import { Widget } from '@lumino/widgets';

import { IModelState, statusText } from './messages';

export const STATUS_CLASS = 'jp-gemma-nb-status';

export class GemmaStatus extends Widget {
  constructor() {
    super();
    this.addClass(STATUS_CLASS);
    this.addClass('jp-StatusBar-TextItem');
    this.render(null);
  }

  /** Show `state` (null: no model loaded in the current notebook's kernel). */
  render(state: IModelState | null): void {
    this.node.textContent = statusText(state);
    this.node.title = state
      ? 'The model that answers the Gemma cell commands in this kernel'
      : 'Gemma: the cell commands load a model in the kernel on first use';
  }
}
