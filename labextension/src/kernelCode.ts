/**
 * The Python code a command executes in the notebook's kernel.
 *
 * The request travels as JSON inside a Python string literal. `JSON.stringify` of a string
 * writes only the escapes \" \\ \b \f \n \r \t \uXXXX, which Python string literals read the
 * same way, so `JSON.stringify(JSON.stringify(request))` is a Python literal whose value is
 * the request's JSON text whatever the cell holds (quotes, backslashes, braces, newlines).
 *
 * The import of `gemma_nb.lab` is guarded so that a kernel without gemma_nb answers with an
 * event the front end turns into a clear message, instead of a traceback.
 */

import { ILabRequest, PREFIX } from './protocol';

/** A Python string literal whose value is `text`. */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/** The kernel code that runs `request` through `gemma_nb.lab.run`. */
export function kernelCode(request: ILabRequest): string {
  const name = '_gemma_nb_lab_command';
  return [
    `def ${name}(request):`,
    '    try:',
    '        import gemma_nb.lab',
    '    except ImportError as exc:',
    '        import json, sys',
    '        kind = {"gemma_nb": "not-installed", "gemma_nb.lab": "too-old"}.get(exc.name, "import-failed")',
    `        print(${pythonString(PREFIX)} + json.dumps({"event": "error", "kind": kind, "message": str(exc), "python": sys.executable}), flush=True)`,
    '    else:',
    '        gemma_nb.lab.run(request)',
    'try:',
    `    ${name}(${pythonString(JSON.stringify(request))})`,
    'finally:',
    `    del ${name}`,
    ''
  ].join('\n');
}
