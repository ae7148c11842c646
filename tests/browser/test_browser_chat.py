"""gemma_nb.Chat end to end: a real JupyterLab, chromium, and the default model (Gemma 3 270M).

A notebook cell shows the chat; the test types a question and presses Send, sees the answer's
text grow while it streams, then the finished answer with its speed line; then asks for a long
answer (with Enter this time), presses Stop, and sees it stop. The first run on a machine may
export the default model into the cache (about a minute), hence the long first wait.

The screenshot goes to $GEMMA_NB_CHAT_SCREENSHOT if set (docs/images/chat.png is made so),
else into the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

CELL = 'import gemma_nb\n\nchat = gemma_nb.Chat("default")\nchat'
FIRST_ANSWER_S = 300  # includes loading (or, on a fresh machine, exporting) the model
SPEED_LINE = re.compile(r"^\d+ prompt tokens · \d+ answer tokens · [\d.]+ tok/s · "
                        r"first token [\d.]+ s")

LAST_ANSWER = """() => {
  const all = document.querySelectorAll('.gemma-msg-assistant');
  const last = all[all.length - 1];
  if (!last) return null;
  return {count: all.length, state: last.dataset.state || '',
          text: last.querySelector('.gemma-msg-body').innerText,
          stats: last.querySelector('.gemma-msg-stats').innerText};
}"""


def watch_answer(page, count: int, timeout: float, until=None) -> tuple[dict, list[int]]:
    """Poll the `count`-th answer until it is finished (or `until(answer)` holds); its last
    state and the lengths its text had while it streamed."""
    lengths: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = page.evaluate(LAST_ANSWER)
        if answer and answer["count"] == count:
            if answer["state"] == "streaming":
                lengths.append(len(answer["text"]))
            if until is not None and until(answer):
                return answer, lengths
            if answer["state"] in ("done", "stopped"):
                return answer, lengths
        page.wait_for_timeout(50)
    raise TimeoutError(f"answer {count} did not finish in {timeout} s: {answer}")


def test_chat_in_jupyterlab_streams_answers_and_stops(lab, page, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, lab.root / "chat.ipynb")

    page.goto(lab.tree("chat.ipynb"))
    try:
        chat = show_chat(page)
        check_chat(page, chat, tmp_path)
    except BaseException:
        page.screenshot(path=str(tmp_path / "failure.png"))  # what the page showed
        print(f"page at failure: {tmp_path / 'failure.png'}")
        raise


def show_chat(page):
    """Run the notebook's first cell with the toolbar's run button; the chat it shows.

    Lab can call its kernel idle a moment before the kernel takes requests, and a run sent
    then is dropped (the prompt stays "[ ]"): such a run is tried again."""
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=120_000)
    first = page.locator(".jp-Notebook .jp-Cell").first
    prompt = first.locator(".jp-InputArea-prompt")
    for _ in range(3):
        first.locator(".cm-content").click()
        page.locator("jp-button[data-command='notebook:run-cell-and-select-next']").click()
        deadline = time.monotonic() + 15
        while prompt.inner_text().strip() in ("[ ]:", "") and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        if prompt.inner_text().strip() not in ("[ ]:", ""):
            break
    chat = page.locator(".gemma-chat")
    chat.wait_for(timeout=60_000)
    return chat


def set_max_tokens(chat, n: int) -> None:
    """Through the settings area, as a person would; the kernel gets it on change."""
    settings = chat.locator(".gemma-chat-settings")
    if settings.get_attribute("open") is None:
        settings.locator("summary").click()
    field = chat.locator(".gemma-set-max-tokens")
    field.fill(str(n))
    field.press("Tab")  # leaving the field commits it
    assert field.input_value() == str(n)


def check_chat(page, chat, tmp_path: Path) -> None:

    # A short answer (max tokens set in the settings), the question sent with the button: the
    # text grows while it streams, then the finished answer shows its speed line.
    set_max_tokens(chat, 60)
    chat.locator(".gemma-chat-input").fill(
        "Write a short Python function that checks whether a number is prime.")
    chat.locator(".gemma-chat-send").click()
    answer, lengths = watch_answer(page, 1, FIRST_ANSWER_S)
    assert answer["state"] == "done", answer
    growth = sorted(set(lengths) - {0})  # 0: before the first token
    assert len(growth) >= 3, f"no streamed growth seen: {lengths}"
    assert lengths == sorted(lengths)  # it only grows
    assert len(answer["text"]) >= growth[-1]
    assert SPEED_LINE.match(answer["stats"]), answer["stats"]
    assert int(answer["stats"].split(" answer tokens")[0].split()[-1]) <= 60  # the setting held
    assert chat.locator(".gemma-chat-send").is_enabled()
    screenshot = Path(os.environ.get("GEMMA_NB_CHAT_SCREENSHOT", tmp_path / "chat.png"))
    chat.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # A long answer, sent with Enter, stopped part way: it stops and keeps its text.
    set_max_tokens(chat, 1000)
    box = chat.locator(".gemma-chat-input")
    box.click()
    box.type("Tell me a long story about a dragon and a knight, in many chapters.")
    box.press("Enter")
    running, _ = watch_answer(page, 2, 120, until=lambda a: len(a["text"]) > 80)
    assert running["state"] == "streaming", running
    chat.locator(".gemma-chat-stop").click()
    stopped, _ = watch_answer(page, 2, 30)
    assert stopped["state"] == "stopped", stopped
    assert stopped["stats"].endswith("stopped"), stopped["stats"]
    assert len(stopped["text"]) >= 80
    page.wait_for_timeout(1000)
    assert page.evaluate(LAST_ANSWER)["text"] == stopped["text"]  # nothing more came
    assert chat.locator(".gemma-chat-send").is_enabled()
    assert chat.locator(".gemma-chat-stop").is_disabled()
