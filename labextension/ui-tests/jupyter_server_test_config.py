"""Server configuration of the UI tests.

Never use it in production: it opens the server to anyone, and exposes JupyterLab's JavaScript
objects through the global window variable (what Galata drives).

Besides the default Python kernel (with gemma_nb), it registers "Python 3 without gemma_nb": a
kernel of the same interpreter in which `import gemma_nb` fails as in an environment without it,
for the test of the message a command shows there.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (c is the config object jupyter passes)

c.ServerApp.allow_root = True  # CI runs as root  # noqa: F821

_data = Path(tempfile.mkdtemp(prefix="gemma-nb-ui-tests-"))
_spec = _data / "kernels" / "python-without-gemma-nb"
_spec.mkdir(parents=True)
(_spec / "kernel.json").write_text(json.dumps({
    "argv": [sys.executable, str(Path(__file__).resolve().parent / "kernel_without_gemma_nb.py"),
             "-f", "{connection_file}"],
    "display_name": "Python 3 without gemma_nb",  # listed after Python 3 (ipykernel)
    "language": "python",
}))
# Kernel specs are found on the Jupyter data path (KernelSpecManager.kernel_dirs is not
# configurable); the server reads it when it first lists kernels, after this file.
os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(_data),
                                                           os.environ.get("JUPYTER_PATH")]))
