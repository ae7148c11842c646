/**
 * `%%gemma` cells are prompt text, not Python: their editor gets the Markdown language.
 *
 * CodeMirror 6 editors in Lab take their language from the cell model's mimetype, which the
 * notebook sets on every code cell from the kernel's language (on insertion and whenever the
 * kernel changes). So each code cell is watched: when its first line is `%%gemma` its mimetype
 * is set to Markdown's, and set again whenever the notebook resets it; otherwise it follows
 * the notebook's code mimetype. The mimetype is view state: the saved notebook is unchanged.
 */

import type { ICellModel } from '@jupyterlab/cells';
import type { Notebook } from '@jupyterlab/notebook';

import { isGemmaCell, PROMPT_MIMETYPE } from './cells';

/** The class of a `%%gemma` cell's widget (styles a marker; the UI tests look for it). */
export const PROMPT_CELL_CLASS = 'jp-gemma-nb-promptCell';

/** Keep the language of `notebook`'s `%%gemma` cells Markdown for the notebook's lifetime. */
export function highlightPromptCells(notebook: Notebook): void {
  const watched = new WeakSet<ICellModel>();

  const update = (cell: ICellModel): void => {
    if (cell.type !== 'code' || notebook.isDisposed) {
      return;
    }
    const prompt = isGemmaCell(cell.sharedModel.getSource());
    const wanted = prompt ? PROMPT_MIMETYPE : notebook.codeMimetype;
    if (cell.mimeType !== wanted) {
      cell.mimeType = wanted;
    }
    notebook.widgets
      .find(widget => widget.model === cell)
      ?.toggleClass(PROMPT_CELL_CLASS, prompt);
  };

  const watch = (cell: ICellModel): void => {
    if (watched.has(cell)) {
      return;
    }
    watched.add(cell);
    cell.sharedModel.changed.connect(() => update(cell));
    cell.mimeTypeChanged.connect(() => update(cell));
    update(cell);
  };

  const watchModel = (): void => {
    const model = notebook.model;
    if (!model) {
      return;
    }
    for (const cell of model.cells) {
      watch(cell);
    }
    model.cells.changed.connect((_, change) => change.newValues.forEach(watch));
  };

  notebook.modelChanged.connect(watchModel);
  watchModel();
}
