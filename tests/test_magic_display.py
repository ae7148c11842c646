"""Rendering answers: formats, footer, metadata, and the throttled live display."""

from __future__ import annotations

import pytest

from gemma_nb.display import (Answer, LiveDisplay, extract_code, footer, output_metadata,
                              parse_json, render)
from gemma_nb.model import Generation, Timings

SHA = "ab" * 32


def make_answer(text: str, fmt: str = "markdown", stopped: bool = False,
                finish_reason: str = "stop") -> Answer:
    timings = Timings(prefill_s=0.1, time_to_first_token_s=0.25, decode_s=1.0, prompt_tokens=12,
                      generated_tokens=11)
    generation = Generation(text, list(range(10)), finish_reason, timings, [-0.5] * 10)
    settings = {"mode": "one-shot", "system": None, "max_new_tokens": 64, "temperature": 0.7,
                "top_k": 0, "top_p": 0.9, "seed": 123, "stop": []}
    return Answer.from_generation(generation, "<prompt>", settings, fmt, stopped,
                                  {"name": "m", "source_sha256": SHA})


@pytest.mark.parametrize("text, code, language", [
    ("Here:\n```python\nprint(1)\n```\nand\n```js\nx\n```", "print(1)", "python"),
    ("```\na = 1\nb = 2\n```", "a = 1\nb = 2", ""),
    ("    return n * 2\n```\nThat doubles it.", "    return n * 2", ""),  # closes a block
    ("Sure:\n```python\ndef f():\n    pass", "def f():\n    pass", "python"),  # cut short
    ("x = 1\n", "x = 1", ""),
])
def test_extract_code_takes_the_first_fenced_block(text, code, language):
    assert extract_code(text) == (code, language)


def test_parse_json_accepts_plain_or_fenced_json_and_explains_invalid_json():
    assert parse_json('{"a": [1, 2]}') == ({"a": [1, 2]}, None)
    assert parse_json('Here it is:\n```json\n{"a": 1}\n```') == ({"a": 1}, None)
    value, error = parse_json('{"a": 1,}')
    assert value is None and error.startswith("invalid JSON: ") and "line 1, column" in error


def test_footer_has_tokens_rate_and_time_to_first_token():
    assert footer(make_answer("hi")) == ("12 prompt tokens · 10 answer tokens · 10.0 tok/s · "
                                         "first token 0.25 s")
    assert footer(make_answer("hi", finish_reason="length")).endswith("max tokens reached")
    assert footer(make_answer("hi", stopped=True)).endswith("· stopped")


def test_stopped_answers_keep_their_text_and_say_so():
    answer = make_answer("partial ans", stopped=True)
    assert answer.stopped and answer.finish_reason == "interrupted"
    assert answer.text == "partial ans" and "stopped" in render(answer)["text/markdown"]


def test_markdown_is_the_default_rendering_with_a_plain_text_fallback():
    bundle = render(make_answer("**bold** answer"))
    assert bundle["text/markdown"].startswith("**bold** answer\n\n<sub>12 prompt tokens")
    assert bundle["text/plain"].startswith("**bold** answer\n\n12 prompt tokens")


def test_markdown_closes_a_code_block_the_answer_left_open():
    bundle = render(make_answer("```python\nx = 1", stopped=True))
    assert bundle["text/markdown"].startswith("```python\nx = 1\n```\n\n<sub>")


def test_code_format_shows_only_the_code():
    answer = make_answer("Try this:\n```python\nprint('hi')\n```\nDone.", fmt="code")
    bundle = render(answer)
    assert answer.value == "print('hi')"
    assert bundle["text/markdown"].startswith("```python\nprint('hi')\n```\n\n<sub>")
    assert bundle["text/plain"].startswith("print('hi')\n\n")


def test_json_format_parses_or_reports_invalid_json():
    good = make_answer('{"city": "Paris"}', fmt="json")
    assert good.value == {"city": "Paris"} and good.error is None
    assert '"city": "Paris"' in render(good)["text/markdown"]
    bad = make_answer('{"city": Paris}', fmt="json")
    assert bad.value is None and "invalid JSON" in bad.error
    assert "**invalid JSON" in render(bad)["text/markdown"]


def test_text_and_html_formats():
    assert list(render(make_answer("plain", fmt="text"))) == ["text/plain"]
    bundle = render(make_answer("<b>hi</b>", fmt="html"))
    assert bundle["text/html"].startswith("<b>hi</b>") and "text/plain" in bundle


def test_metadata_records_model_identity_sampling_and_seed():
    meta = output_metadata(make_answer("hi"))["gemma_nb"]
    assert meta["model"]["source_sha256"] == SHA and meta["seed"] == 123
    assert meta["sampling"]["temperature"] == 0.7 and meta["sampling"]["top_p"] == 0.9
    assert meta["finish_reason"] == "stop" and meta["answer_tokens"] == 10


class FakeHandle:
    def __init__(self):
        self.updates = []

    def update(self, bundle, **kwargs):
        self.updates.append((bundle, kwargs))


def test_live_display_updates_at_most_once_per_interval():
    now = [0.0]
    live = LiveDisplay(rich=True, interval=0.1, clock=lambda: now[0])
    live._handle = FakeHandle()
    for _ in range(100):  # 100 pieces over 1 s: ~10 updates, not 100
        live.push("x")
        now[0] += 0.01
    shown = [bundle["text/plain"] for bundle, _ in live._handle.updates]
    assert 9 <= len(shown) <= 11 and shown[0] == "x"  # the first piece shows at once
    assert all(len(b) > len(a) for a, b in zip(shown, shown[1:]))
    live.finish(make_answer("x" * 100))
    final, kwargs = live._handle.updates[-1]
    assert "text/markdown" in final and kwargs["raw"] is True
    assert kwargs["metadata"]["gemma_nb"]["seed"] == 123


def test_plain_display_prints_pieces_then_the_footer(capsys):
    live = LiveDisplay(rich=False)
    live.push("Hello")
    live.push(" world")
    live.finish(make_answer("Hello world", stopped=True))
    out = capsys.readouterr().out
    assert out.startswith("Hello world\n\n12 prompt tokens") and out.rstrip().endswith("stopped")
