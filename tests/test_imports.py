"""The runtime layer stays light: importing gemma_nb pulls in none of the exporter's packages,
and Dask only when a cluster is asked for."""

import subprocess
import sys


def test_runtime_imports_no_exporter_packages():
    code = ("import gemma_nb, gemma_nb.cli, gemma_nb.models, gemma_nb.eval, gemma_nb.cluster; "
            "import sys; "
            "print(sorted(m for m in ('gguf', 'onnx', 'gemma_export', 'torch', 'transformers', "
            "'distributed', 'dask') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
