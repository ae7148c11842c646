/**
 * gemma-nb in JupyterLab: cell commands, `%%gemma` highlighting and a status bar item.
 *
 * The extension holds no model logic. Each command sends the active cell to the notebook's
 * own kernel, where `gemma_nb.lab` loads the model (once), builds the prompt and streams
 * events back; this side shows what runs in a notice (`CommandNotice`), the token count in the
 * status bar, and inserts the answer below the cell.
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
  IModelState,
  kernelProblem,
  outcome,
  progressMessage,
  startMessage
} from './messages';
import { CommandNotice } from './notice';
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
      const working = startMessage(action, label);
      const notice = new CommandNotice(working, () => void kernel.interrupt());
      const busy = (tokens: number) => progressMessage(action, label, tokens);

      // The final events (set in the callback: an object keeps TypeScript's narrowing honest).
      const final: { answer: IAnswerEvent | null; error: IErrorEvent | null } =
        { answer: null, error: null };
      const previous = states.get(panel);
      setState(panel, previous ? { ...previous, busy: busy(0) } : null);
      await runOnKernel(kernel, request, event => {
        switch (event.event) {
          case 'status':
            notice.replace(`Gemma: ${event.message}`);
            break;
          case 'model':
            notice.replace(working);
            setState(panel, {
              name: event.name,
              provider: event.provider,
              tokensPerS: states.get(panel)?.tokensPerS ?? null,
              busy: busy(0)
            });
            break;
          case 'progress': {
            notice.replace(working);
            const state = states.get(panel);
            if (state) {
              setState(panel, { ...state, busy: busy(event.tokens) });
            }
            break;
          }
          case 'answer':
            final.answer = event;
            break;
          case 'error':
            final.error = final.error ?? event;
            break;
        }
      });
      const { answer, error } = final;
      const end = outcome(answer, error);
      if (answer && !error) {
        setState(panel, {
          name: answer.model,
          provider: answer.provider,
          tokensPerS: answer.tokens_per_s,
          busy: null
        });
      } else {
        const state = states.get(panel);
        setState(panel, state ? { ...state, busy: null } : null);
      }
      if (answer && end.insert) {
        insertAnswer(panel.content, cell.model, answer);
      }
      notice.end(end, details => void showErrorMessage('Gemma', details));
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
