import { Notification } from '@jupyterlab/apputils';

import { CommandNotice } from '../notice';
import { outcome } from '../messages';

/** The changes the notification manager announces while `body` runs (what toasts follow). */
function changes(body: () => void): string[] {
  const seen: string[] = [];
  const record = (_: unknown, change: Notification.IChange) =>
    seen.push(`${change.type} ${change.notification.message}`);
  Notification.manager.changed.connect(record);
  try {
    body();
  } finally {
    Notification.manager.changed.disconnect(record);
  }
  return seen;
}

const messages = () => Notification.manager.notifications.map(n => n.message);

describe('CommandNotice', () => {
  beforeEach(() => Notification.dismiss());

  it('never updates a notice in place: each change replaces it', () => {
    const seen = changes(() => {
      const notice = new CommandNotice('Gemma: explaining cell [1]…', () => {});
      notice.replace('Gemma: loading the model');
      notice.replace('Gemma: loading the model'); // unchanged: nothing to do
      notice.replace('Gemma: explaining cell [1]…');
      notice.end(
        outcome(null, {
          event: 'error',
          kind: 'not-installed',
          message: "No module named 'gemma_nb'"
        }),
        () => {}
      );
    });
    expect(seen.filter(c => c.startsWith('updated'))).toEqual([]);
    expect(seen).toEqual([
      'added Gemma: explaining cell [1]…',
      'removed Gemma: explaining cell [1]…',
      'added Gemma: loading the model',
      'removed Gemma: loading the model',
      'added Gemma: explaining cell [1]…',
      'removed Gemma: explaining cell [1]…',
      expect.stringMatching(/^added Gemma: gemma_nb is not installed/)
    ]);
    expect(messages()).toEqual([expect.stringContaining('not installed')]);
  });

  it('shows the outcome with its details, and only the outcome', () => {
    const opened: string[] = [];
    const notice = new CommandNotice('Gemma: fixing cell 2…', () => {});
    notice.end(
      outcome(null, { event: 'error', kind: 'kernel', message: 'MemoryError' }),
      details => opened.push(details)
    );
    const [shown] = Notification.manager.notifications;
    expect(Notification.manager.count).toBe(1);
    expect(shown.type).toBe('error');
    expect(shown.options.autoClose).toBe(false);
    const details = shown.options.actions![0];
    expect(details.label).toBe('Details');
    details.callback(new MouseEvent('click'));
    expect(opened).toEqual(['MemoryError']);
  });

  it('stops through its Stop button and stays closed once the user closed it', () => {
    let stopped = 0;
    const notice = new CommandNotice('Gemma: explaining cell 1…', () => {
      stopped += 1;
    });
    const [shown] = Notification.manager.notifications;
    expect(shown.type).toBe('in-progress');
    shown.options.actions![0].callback(new MouseEvent('click'));
    expect(stopped).toBe(1);
    Notification.dismiss(shown.id); // what closing the toast does
    notice.replace('Gemma: waiting for the model (a chat is answering)');
    expect(messages()).toEqual([]);
  });
});
