"""notebooks/chat.ipynb runs top to bottom in a real kernel on the default model: the chat is
displayed as a widget, answers from its worker thread, and saves and loads its conversation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "chat.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_chat_notebook_executes(default_model_cache, execute_notebook):
    notebook = execute_notebook(NOTEBOOK)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert not errors, errors
    assert WIDGET_VIEW in cells[0].outputs[-1].data  # the chat, as a widget
    answer = ast.literal_eval(cells[1].outputs[-1].data["text/plain"])
    assert answer["role"] == "assistant" and answer["content"].strip()
    assert cells[2].outputs[-1].data["text/plain"] == "True"  # saved and loaded back
    assert WIDGET_VIEW in cells[3].outputs[-1].data
