import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { PREFIX, LabEvent } from '../protocol';
import { runOnKernel } from '../runner';

/** A kernel whose execution publishes `messages` on iopub, then finishes. */
function fakeKernel(
  messages: Array<Partial<KernelMessage.IIOPubMessage>>,
  fail = false
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
          if (fail) {
            throw new Error(
              'Canceled future for execute_request message before replies were done'
            );
          }
        })
      };
      return future;
    }
  };
  return { kernel: kernel as unknown as Kernel.IKernelConnection, sent };
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

  it('rejects when the kernel goes away before answering', async () => {
    const { kernel } = fakeKernel([], true);
    await expect(runOnKernel(kernel, request, () => undefined)).rejects.toThrow(
      'Canceled'
    );
  });
});
