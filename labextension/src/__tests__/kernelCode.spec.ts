import { spawnSync } from 'child_process';

import { kernelCode, pythonString } from '../kernelCode';
import { ILabRequest, parseLine } from '../protocol';

// Python runs the generated code for real: the only proof that quoting is safe. A stub
// `gemma_nb.lab` echoes the request it receives (or gemma_nb is made unimportable).
const PYTHON = process.env.PYTHON ?? 'python3';

const STUB = `
import json, sys, types
mode = sys.argv[1]
if mode == "stub":
    pkg = types.ModuleType("gemma_nb"); pkg.__path__ = []
    lab = types.ModuleType("gemma_nb.lab")
    lab.run = lambda request: print("ECHO " + json.dumps(json.loads(request)))
    pkg.lab = lab
    sys.modules.update({"gemma_nb": pkg, "gemma_nb.lab": lab})
elif mode == "missing":  # import gemma_nb fails as in an environment without it
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "gemma_nb":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Hide())
namespace = {}
exec(sys.stdin.read(), namespace)
print("LEFT " + json.dumps(sorted(k for k in namespace if k != "__builtins__")))
`;

function runPython(code: string, mode: 'stub' | 'missing'): string[] {
  const result = spawnSync(PYTHON, ['-c', STUB, mode], {
    input: code,
    encoding: 'utf-8'
  });
  if (result.status !== 0) {
    throw new Error(`python failed: ${result.stderr}`);
  }
  return result.stdout.split('\n');
}

const request = (source: string): ILabRequest => ({
  action: 'explain',
  source,
  error: '',
  model: '',
  max_tokens: 32,
  temperature: 0
});

describe('pythonString', () => {
  it('writes only escapes Python reads the same way', () => {
    expect(pythonString('a"b\\c\nd')).toBe('"a\\"b\\\\c\\nd"');
  });
});

describe('kernelCode', () => {
  const nasty = [
    'print("hello")',
    'x = \'\'\'triple\'\'\' + """quotes"""',
    'path = "C:\\\\new\\\\table"\nprint(r"\\n is not a newline")',
    'd = {"a": {"b": "{c}"}}; f"{d!r:>{10}}"',
    'emoji 🦙 and accents é, CJK 漢字, RTL שלום',
    'line\u2028separator and \u0000 nul and \u001b[31m ansi',
    '\\u0041 literal backslash-u, then \\x41 and \\N{BULLET}',
    '") ; import os; os.system("echo pwned") ; ("',
    '\r\n\twhitespace\r'
  ];

  it.each(nasty)('hands %j to gemma_nb.lab unchanged', source => {
    const req = request(source);
    const lines = runPython(kernelCode(req), 'stub');
    const echo = lines.find(l => l.startsWith('ECHO '));
    expect(JSON.parse(echo!.slice(5))).toEqual(req);
  });

  it('leaves no names in the user namespace', () => {
    const lines = runPython(kernelCode(request('1')), 'stub');
    expect(lines.find(l => l.startsWith('LEFT '))).toBe('LEFT []');
  });

  it('reports a kernel without gemma_nb as an event, not a traceback', () => {
    const lines = runPython(kernelCode(request('1')), 'missing');
    const events = lines.map(parseLine).filter(e => e !== null);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ event: 'error', kind: 'not-installed' });
    expect(lines.find(l => l.startsWith('LEFT '))).toBe('LEFT []');
  });
});
