import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { PREFIX, LabEvent } from '../protocol';
import { closingEvent, runOnKernel } from '../runner';

type ReplyContent = KernelMessage.IExecuteReplyMsg['content'];

/** An execute reply's content (the count does not matter here). */
const replyOf = (content: object) =>
  ({ execution_count: 1, ...content }) as ReplyContent;

const OK = replyOf({ status: 'ok', user_expressions: {} });

/**
 * A kernel whose execution publishes `messages` on iopub, then replies with `reply` (null: the
 * future is cancelled, as when the kernel restarts or dies).
 */
function fakeKernel(
  messages: Array<Partial<KernelMessage.IIOPubMessage>>,
  reply: ReplyContent | null = OK
) {
  const sent: KernelMessage.IExecuteRequestMsg['content'][] = [];
  const kernel = {
    requestExecute(content: KernelMessage.IExecuteRequestMsg['content']) {
      sent.push(content);
      const future = {
        onIOPub: (_: KernelMessage.IIOPubMessage) => undefined,
        done: Promise.resolve().then(() => {
          for (const msg of messages) {
            future.onIOPub(msg as KernelMessage.IIOPubMessage);
          }
          if (reply === null) {
            throw new Error(
              'Canceled future for execute_request message before replies were done'
            );
          }
          return { content: reply };
        })
      };
      return future;
    }
  };
  return { kernel: kernel as unknown as Kernel.IKernelConnection, sent };
}

async function eventsOf(
  messages: Array<Partial<KernelMessage.IIOPubMessage>>,
  reply: ReplyContent | null = OK
): Promise<LabEvent[]> {
  const { kernel } = fakeKernel(messages, reply);
  const events: LabEvent[] = [];
  await runOnKernel(kernel, request, e => events.push(e));
  return events;
}

const stream = (name: 'stdout' | 'stderr', text: string) => ({
  header: { msg_type: 'stream' } as KernelMessage.IHeader<'stream'>,
  content: { name, text }
});

const request = {
  action: 'fix' as const,
  source: 'print(x)',
  error: "NameError: name 'x' is not defined",
  model: '',
  max_tokens: 16,
  temperature: 0
};

describe('runOnKernel', () => {
  it('runs the request without touching the history, and streams stdout events', async () => {
    const answer = { event: 'answer', text: 'x = 1\nprint(x)', format: 'code' };
    const { kernel, sent } = fakeKernel([
      stream(
        'stdout',
        `${PREFIX}{"event": "status", "message": "loading"}\n${PREFIX}{"ev`
      ),
      stream(
        'stderr',
        `${PREFIX}{"event": "status", "message": "ignored: stderr"}\n`
      ),
      stream('stdout', `ent": "progress", "tokens": 1, "text": "x"}\n`),
      stream('stdout', `${PREFIX}${JSON.stringify(answer)}`)
    ]);
    const events: LabEvent[] = [];
    await runOnKernel(kernel, request, e => events.push(e));
    expect(sent[0]).toMatchObject({
      store_history: false,
      stop_on_error: false
    });
    expect(sent[0].code).toContain('gemma_nb.lab.run(');
    expect(events.map(e => e.event)).toEqual(['status', 'progress', 'answer']);
    expect(events[2]).toMatchObject(answer);
  });

  it('turns an exception the kernel side did not report into an error event', async () => {
    const { kernel } = fakeKernel([
      {
        header: { msg_type: 'error' } as KernelMessage.IHeader<'error'>,
        content: {
          ename: 'MemoryError',
          evalue: '\u001b[31mout of memory\u001b[0m',
          traceback: []
        }
      } as Partial<KernelMessage.IIOPubMessage>
    ]);
    const events: LabEvent[] = [];
    await runOnKernel(kernel, request, e => events.push(e));
    expect(events).toEqual([
      { event: 'error', kind: 'kernel', message: 'MemoryError: out of memory' }
    ]);
  });

  it('ends with an error when the kernel goes away before replying', async () => {
    const events = await eventsOf(
      [
        stream('stdout', `${PREFIX}{"event": "status", "message": "loading"}\n`)
      ],
      null
    );
    expect(events.map(e => e.event)).toEqual(['status', 'error']);
    expect(events[1]).toMatchObject({ kind: 'kernel-lost' });
  });

  it('ends with the error of a reply whose error message never came', async () => {
    const events = await eventsOf(
      [],
      replyOf({
        status: 'error',
        ename: 'ImportError',
        evalue: '\u001b[31mcannot import name lab\u001b[0m',
        traceback: []
      })
    );
    expect(events).toEqual([
      {
        event: 'error',
        kind: 'kernel',
        message: 'ImportError: cannot import name lab'
      }
    ]);
  });

  it('ends with an error when the kernel aborts the execution', async () => {
    const events = await eventsOf([], replyOf({ status: 'aborted' }));
    expect(events).toEqual([
      expect.objectContaining({ event: 'error', kind: 'aborted' })
    ]);
  });

  it('ends with an error when the execution printed no final event', async () => {
    const events = await eventsOf([
      stream('stdout', `${PREFIX}{"event": "progress", "tokens": 3}\n`),
      stream('stdout', 'a library printing\n')
    ]);
    expect(events.map(e => e.event)).toEqual(['progress', 'error']);
    expect(events[1]).toMatchObject({ kind: 'no-answer' });
  });

  it('adds nothing after a final event, whatever the reply', async () => {
    const error = {
      event: 'error',
      kind: 'not-installed',
      message: "No module named 'gemma_nb'"
    };
    expect(
      await eventsOf([stream('stdout', `${PREFIX}${JSON.stringify(error)}\n`)])
    ).toEqual([error]);
    const answer = { event: 'answer', text: 'x', format: 'markdown' };
    // An answer on a last line without its newline still counts.
    expect(
      await eventsOf(
        [stream('stdout', `${PREFIX}${JSON.stringify(answer)}`)],
        replyOf({
          status: 'error',
          ename: 'KeyboardInterrupt',
          evalue: '',
          traceback: []
        })
      )
    ).toEqual([answer]);
  });
});

describe('closingEvent', () => {
  it('is null once a final event came', () => {
    expect(closingEvent(OK, true)).toBeNull();
    expect(closingEvent(null, true)).toBeNull();
  });

  it('turns every other end into an error event', () => {
    expect(closingEvent(OK, false)?.kind).toBe('no-answer');
    expect(closingEvent(null, false)?.kind).toBe('kernel-lost');
    expect(closingEvent(replyOf({ status: 'aborted' }), false)?.kind).toBe(
      'aborted'
    );
  });
});
