"""The Lab extension's own suites, run from pytest so that one command tests the whole project.

jest covers the extension's pure parts; the Galata UI tests drive a real JupyterLab in Debian's
chromium on the real default model (docs/labextension.md). Both need `jlpm install` in their
folder first (.ci/run does it); a missing install fails with that instruction.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1] / "labextension"


def run_jlpm(folder: Path, *args: str) -> None:
    if not (folder / "node_modules").is_dir():
        pytest.fail(f"{folder}/node_modules is missing: run `jlpm install` there (.ci/run does)")
    env = {**os.environ, "PYTHON": sys.executable, "CI": "1"}
    result = subprocess.run(["jlpm", *args], cwd=folder, env=env, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout[-6000:], result.stderr[-3000:])


def test_jest_unit_tests():
    run_jlpm(LAB, "test")


@pytest.mark.slow
def test_galata_ui_tests_on_the_default_model():
    from gemma_nb.models import DEFAULT_MODEL, resolve_model

    resolve_model(DEFAULT_MODEL)  # exported once into the cache the UI tests' kernel reads
    run_jlpm(LAB / "ui-tests", "playwright", "test")
