/**
 * gemma-nb in JupyterLab: cell commands, `%%gemma` highlighting and a status bar item.
 *
 * The extension holds no model logic. Each command sends the active cell to the notebook's
 * own kernel, where `gemma_nb.lab` loads the model (once), builds the prompt and streams
 * events back; this side shows progress in a notice and inserts the answer below the cell.
 */

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  Notification,
  showErrorMessage
} from '@jupyterlab/apputils';
import { ICellModel, ICodeCellModel, MarkdownCell } from '@jupyterlab/cells';
import {
  INotebookTracker,
  Notebook,
  NotebookPanel
} from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { buildIcon, infoIcon, markdownIcon } from '@jupyterlab/ui-components';

import { errorText } from './cells';
import { highlightPromptCells } from './highlight';
import {
  doneMessage,
  errorMessage,
  IModelState,
  kernelProblem,
  progressMessage
} from './messages';
import {
  Action,
  ACTIONS,
  IAnswerEvent,
  IErrorEvent,
  ILabRequest
} from './protocol';
import { runOnKernel } from './runner';
import { GemmaStatus } from './statusbar';

const PLUGIN_ID = 'gemma-nb-lab:plugin';

const COMMANDS: Record<Action, { id: string; label: string; caption: string }> =
  {
    explain: {
      id: 'gemma-nb:explain',
      label: 'Gemma: explain this cell',
      caption: 'Explain the active cell in a Markdown cell below it'
    },
    fix: {
      id: 'gemma-nb:fix',
      label: 'Gemma: fix this cell',
      caption:
        'Fix the active cell from its error output, in a code cell below it'
    },
    document: {
      id: 'gemma-nb:document',
      label: 'Gemma: document this cell',
      caption: 'Document the active cell in a Markdown cell below it'
    }
  };

const ICONS = { explain: infoIcon, fix: buildIcon, document: markdownIcon };

/** The plugin's settings (schema/plugin.json). */
interface ISettings {
  modelPath: string;
  maxTokens: number;
  temperature: number;
}

const DEFAULT_SETTINGS: ISettings = {
  modelPath: '',
  maxTokens: 128,
  temperature: 0
};

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    "Explain, fix and document cells with a local Gemma model running in the notebook's kernel.",
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ISettingRegistry, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    statusBar: IStatusBar | null
  ) => {
    let settings = { ...DEFAULT_SETTINGS };
    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(loaded => {
          const read = () => {
            settings = { ...DEFAULT_SETTINGS, ...(loaded.composite as object) };
          };
          read();
          loaded.changed.connect(read);
        })
        .catch(reason =>
          console.error('gemma-nb-lab: cannot load settings', reason)
        );
    }

    // What each notebook's kernel has loaded; forgotten when its kernel restarts or changes.
    const states = new WeakMap<NotebookPanel, IModelState>();
    const status = new GemmaStatus();
    const refresh = () =>
      status.render(
        tracker.currentWidget
          ? (states.get(tracker.currentWidget) ?? null)
          : null
      );
    const setState = (panel: NotebookPanel, state: IModelState | null) => {
      if (state) {
        states.set(panel, state);
      } else {
        states.delete(panel);
      }
      if (panel === tracker.currentWidget) {
        refresh();
      }
    };

    tracker.widgetAdded.connect((_, panel) => {
      highlightPromptCells(panel.content);
      panel.sessionContext.kernelChanged.connect(() => setState(panel, null));
      panel.sessionContext.statusChanged.connect((_, kernelStatus) => {
        if (kernelStatus === 'restarting' || kernelStatus === 'dead') {
          setState(panel, null);
        }
      });
    });
    tracker.currentChanged.connect(refresh);

    if (statusBar) {
      statusBar.registerStatusItem(PLUGIN_ID, {
        item: status,
        align: 'left',
        rank: 4,
        isActive: () => tracker.currentWidget !== null
      });
    }

    const run = async (action: Action) => {
      const panel = tracker.currentWidget;
      const cell = panel?.content.activeCell;
      if (!panel || !cell) {
        return;
      }
      await panel.sessionContext.ready;
      const kernel = panel.sessionContext.session?.kernel ?? null;
      let problem = kernelProblem(null);
      if (kernel) {
        const info = await kernel.info;
        problem = kernelProblem({
          language: info.language_info.name,
          displayName: panel.sessionContext.kernelDisplayName
        });
      }
      if (problem || !kernel) {
        Notification.warning(problem ?? '', { autoClose: 10000 });
        return;
      }

      const request: ILabRequest = {
        action,
        source: cell.model.sharedModel.getSource(),
        error:
          cell.model.type === 'code'
            ? errorText((cell.model as ICodeCellModel).outputs.toJSON())
            : '',
        model: settings.modelPath,
        max_tokens: settings.maxTokens,
        temperature: settings.temperature
      };
      const label = cellLabel(panel.content, cell.model);
      const id = Notification.emit(
        progressMessage(action, label, 0),
        'in-progress',
        {
          autoClose: false,
          actions: [
            {
              label: 'Stop',
              caption: 'Interrupt the kernel: keeps the answer so far',
              callback: () => void kernel.interrupt()
            }
          ]
        }
      );

      let answer: IAnswerEvent | null = null;
      let error: IErrorEvent | null = null;
      const previous = states.get(panel);
      setState(panel, previous ? { ...previous, busy: 'answering' } : null);
      try {
        await runOnKernel(kernel, request, event => {
          switch (event.event) {
            case 'status':
              Notification.update({ id, message: `Gemma: ${event.message}` });
              break;
            case 'model':
              setState(panel, {
                name: event.name,
                provider: event.provider,
                tokensPerS: states.get(panel)?.tokensPerS ?? null,
                busy: 'answering'
              });
              break;
            case 'progress':
              Notification.update({
                id,
                message: progressMessage(action, label, event.tokens)
              });
              break;
            case 'answer':
              answer = event;
              break;
            case 'error':
              error = error ?? event;
              break;
          }
        });
      } catch {
        error = {
          event: 'error',
          kind: 'kernel',
          message: 'nothing: the kernel restarted or died before answering'
        };
      }
      const state = states.get(panel);
      if (state) {
        setState(panel, { ...state, busy: null });
      }
      finish(panel.content, cell.model, id, answer, error, (a: IAnswerEvent) =>
        setState(panel, {
          name: a.model,
          provider: a.provider,
          tokensPerS: a.tokens_per_s,
          busy: null
        })
      );
    };

    for (const action of ACTIONS) {
      const command = COMMANDS[action];
      app.commands.addCommand(command.id, {
        label: command.label,
        caption: command.caption,
        icon: ICONS[action],
        isEnabled: () =>
          tracker.currentWidget !== null &&
          tracker.activeCell?.model.type === 'code',
        execute: () => run(action)
      });
      palette?.addItem({ command: command.id, category: 'Gemma' });
    }
  }
};

/** Report how a command ended, and insert its answer below the cell it ran on. */
function finish(
  notebook: Notebook,
  cell: ICellModel,
  id: string,
  answer: IAnswerEvent | null,
  error: IErrorEvent | null,
  answered: (answer: IAnswerEvent) => void
): void {
  if (error) {
    const details = error.message;
    Notification.update({
      id,
      type: 'error',
      message: errorMessage(error),
      autoClose: false,
      actions: [
        {
          label: 'Details',
          callback: () => void showErrorMessage('Gemma', details)
        }
      ]
    });
    return;
  }
  if (!answer) {
    Notification.update({
      id,
      type: 'error',
      message: 'Gemma: the kernel finished without an answer.',
      autoClose: false
    });
    return;
  }
  answered(answer);
  if (!answer.text.trim()) {
    Notification.update({
      id,
      type: 'warning',
      message: 'Gemma: the model gave an empty answer; nothing was inserted.',
      autoClose: 8000
    });
    return;
  }
  insertAnswer(notebook, cell, answer);
  Notification.update({
    id,
    type: 'success',
    message: doneMessage(answer),
    autoClose: 4000,
    actions: []
  });
}

/** A new cell below `cell` (or at the end, if it was deleted meanwhile) with the answer. */
function insertAnswer(
  notebook: Notebook,
  cell: ICellModel,
  answer: IAnswerEvent
): void {
  const model = notebook.model;
  if (!model) {
    return;
  }
  const cells = model.sharedModel.cells;
  const at = cells.findIndex(c => c.id === cell.sharedModel.id);
  const index = at === -1 ? cells.length : at + 1;
  const metadata = {
    gemma_nb: {
      action: answer.action,
      model: answer.model,
      provider: answer.provider,
      tokens: answer.tokens,
      tokens_per_s: answer.tokens_per_s,
      finish_reason: answer.finish_reason
    }
  };
  model.sharedModel.insertCell(
    index,
    answer.format === 'code'
      ? {
          cell_type: 'code',
          source: answer.text,
          metadata,
          outputs: [],
          execution_count: null
        }
      : { cell_type: 'markdown', source: answer.text, metadata }
  );
  const widget = notebook.widgets[index];
  if (widget instanceof MarkdownCell) {
    widget.rendered = true;
  }
  void notebook.scrollToItem(index, 'smart');
}

/** How the notice names a cell: by its execution count, else by its position. */
function cellLabel(notebook: Notebook, cell: ICellModel): string {
  const count =
    cell.type === 'code' ? (cell as ICodeCellModel).executionCount : null;
  if (count !== null && count !== undefined) {
    return `cell [${count}]`;
  }
  const index = notebook.widgets.findIndex(w => w.model === cell);
  return `cell ${index + 1}`;
}

export default plugin;
