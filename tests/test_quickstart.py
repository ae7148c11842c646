"""The quickstart notebook (the README's first command) runs top to bottom on the default model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes(default_model_cache, execute_notebook):
    notebook = execute_notebook(NOTEBOOK)
    outputs = ["".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                       for o in cell.get("outputs", []))
               for cell in notebook.cells if cell.cell_type == "code"]
    assert not any(o.get("output_type") == "error" for cell in notebook.cells
                   for o in cell.get("outputs", []))
    assert "UsageError" not in "".join(outputs)  # the magic reports mistakes without an error
    assert all(outputs[i] for i in range(len(outputs)) if i != 2)  # 2 only assigns a variable
    assert "gemma-3-270m-fp32" in outputs[0]  # %gemma load default
    assert "tok/s" in outputs[1] and "tok/s" in outputs[12] and "perplexity" in outputs[-1]
    # Interpolation kept the JSON braces and filled in {country['name']}; -o stored the result.
    assert '{"country": "Japan", "capital": "Tokyo"}\n{"country": "Italy", "capital": "' \
        in outputs[4]
    assert "My name is Ada." in outputs[7]  # --chat sent the earlier turn
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells[1].outputs[-1].metadata["gemma_nb"]["model"]["source_sha256"]
