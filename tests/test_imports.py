"""The runtime layer stays light: importing gemma_nb pulls in none of the exporter's packages."""

import subprocess
import sys


def test_runtime_imports_no_exporter_packages():
    code = ("import gemma_nb, gemma_nb.cli, gemma_nb.models, sys; "
            "print(sorted(m for m in ('gguf', 'onnx', 'gemma_export', 'torch', 'transformers') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
