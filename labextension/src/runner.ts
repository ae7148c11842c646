/**
 * Running one request on a kernel and turning its output into events.
 */

import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { kernelCode } from './kernelCode';
import { IErrorEvent, ILabRequest, LabEvent, LineParser } from './protocol';
import { stripAnsi } from './cells';

/**
 * Execute `request` through `gemma_nb.lab` on `kernel`, calling `onEvent` for each event as it
 * streams; resolves when the kernel is done, never rejects, and always ends with a final event
 * (an answer or an error): an exception the kernel side does not report itself, a reply that
 * is not ok, an execution that printed no final event, and a kernel that restarts or dies
 * before replying each become an error event (`closingEvent`).
 */
export async function runOnKernel(
  kernel: Kernel.IKernelConnection,
  request: ILabRequest,
  onEvent: (event: LabEvent) => void
): Promise<void> {
  const parser = new LineParser();
  let final = false;
  const emit = (event: LabEvent) => {
    final = final || event.event === 'answer' || event.event === 'error';
    onEvent(event);
  };
  let reply: KernelMessage.IExecuteReplyMsg['content'] | null = null;
  try {
    const future = kernel.requestExecute({
      code: kernelCode(request),
      silent: false, // silent executions publish no stdout on some kernels: we need it
      store_history: false, // keeps In/Out and the execution count the user's
      allow_stdin: false,
      stop_on_error: false // a failed command must not abort the cells queued after it
    });
    future.onIOPub = (msg: KernelMessage.IIOPubMessage) => {
      const type = msg.header.msg_type;
      if (type === 'stream') {
        const content = (msg as KernelMessage.IStreamMsg).content;
        if (content.name === 'stdout') {
          parser.push(content.text).forEach(emit);
        }
      } else if (type === 'error') {
        const content = (msg as KernelMessage.IErrorMsg).content;
        emit({
          event: 'error',
          kind: 'kernel',
          message: stripAnsi(`${content.ename}: ${content.evalue}`)
        });
      }
    };
    reply = (await future.done).content;
  } catch {
    // The future is cancelled when the kernel restarts, dies or is shut down.
  }
  parser.flush().forEach(emit);
  const closing = closingEvent(reply, final);
  if (closing) {
    onEvent(closing);
  }
}

/**
 * The error that ends an execution which gave no final event itself, or null when it gave one.
 * `reply` is the execute reply's content, null when the kernel went away before replying.
 */
export function closingEvent(
  reply: KernelMessage.IExecuteReplyMsg['content'] | null,
  final: boolean
): IErrorEvent | null {
  if (final) {
    return null;
  }
  if (reply === null) {
    return {
      event: 'error',
      kind: 'kernel-lost',
      message: 'The kernel restarted or died before it replied.'
    };
  }
  switch (reply.status) {
    case 'error':
      // Its IOPub error message was missed (it would have been the final event).
      return {
        event: 'error',
        kind: 'kernel',
        message: stripAnsi(`${reply.ename}: ${reply.evalue}`)
      };
    case 'aborted':
      return {
        event: 'error',
        kind: 'aborted',
        message: 'The kernel aborted the execution without running it.'
      };
    default:
      return {
        event: 'error',
        kind: 'no-answer',
        message:
          'The execution ended without printing an answer or an error event.'
      };
  }
}
