/**
 * Running one request on a kernel and turning its output into events.
 */

import type { Kernel, KernelMessage } from '@jupyterlab/services';

import { kernelCode } from './kernelCode';
import { ILabRequest, LabEvent, LineParser } from './protocol';
import { stripAnsi } from './cells';

/**
 * Execute `request` through `gemma_nb.lab` on `kernel`, calling `onEvent` for each event as it
 * streams; resolves when the kernel is done. An exception the kernel side does not report
 * itself becomes an error event of kind 'kernel'.
 */
export async function runOnKernel(
  kernel: Kernel.IKernelConnection,
  request: ILabRequest,
  onEvent: (event: LabEvent) => void
): Promise<void> {
  const parser = new LineParser();
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
        parser.push(content.text).forEach(onEvent);
      }
    } else if (type === 'error') {
      const content = (msg as KernelMessage.IErrorMsg).content;
      onEvent({
        event: 'error',
        kind: 'kernel',
        message: stripAnsi(`${content.ename}: ${content.evalue}`)
      });
    }
  };
  await future.done;
  parser.flush().forEach(onEvent);
}
