"""Showing an answer in a notebook: live while it streams, then rendered in the chosen format.

Streaming uses one display handle (`display(..., display_id=True)`) updated at most every
`UPDATE_INTERVAL_S`: updating per token floods the front end and costs O(n^2) bytes, since each
update resends the whole text. The final update renders the format (Markdown by default) with a
footer (token counts, tokens/s, time to first token) and carries the output metadata: the model's
identity (sha256 of its source weights), the sampling settings and the seed.

A terminal IPython has no display handles, so it gets the pieces printed as they come.
"""

from __future__ import annotations

import html
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import Generation, Model, Timings

__all__ = ["UPDATE_INTERVAL_S", "Answer", "LiveDisplay", "extract_code", "parse_json", "footer",
           "render", "output_metadata", "model_identity", "is_rich"]

UPDATE_INTERVAL_S = 0.15  # ~7 updates a second: smooth to the eye, cheap for the front end


@dataclass
class Answer:
    """What `%%gemma -o NAME` stores: the answer, how it was produced, and what it cost."""

    text: str
    prompt: str  # exactly what the model read: after interpolation and chat formatting
    token_ids: list[int]
    logprobs: list[float]  # log-probability of each token in token_ids
    timings: Timings
    settings: dict[str, Any]  # mode, system, temperature, top_k, top_p, max_tokens, seed, stop
    finish_reason: str  # "stop", "length", or "interrupted" (the user stopped it)
    format: str = "markdown"
    value: Any = None  # -f code: the code; -f json: the parsed object (None if invalid)
    error: str | None = None  # -f json: why the text is not JSON
    model: dict[str, Any] = field(default_factory=dict)  # model_identity()

    @property
    def stopped(self) -> bool:
        """The user interrupted generation: `text` is a partial answer."""
        return self.finish_reason == "interrupted"

    @classmethod
    def from_generation(cls, generation: Generation, prompt: str, settings: dict[str, Any],
                        fmt: str, stopped: bool, model: dict[str, Any]) -> Answer:
        value, error = shape(generation.text, fmt)
        return cls(generation.text, prompt, list(generation.token_ids),
                   list(generation.logprobs), generation.timings, settings,
                   "interrupted" if stopped else generation.finish_reason, fmt, value, error,
                   model)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        preview = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (f"<gemma_nb Answer: {len(self.token_ids)} tokens, {self.finish_reason}, "
                f"{preview!r}>")


# ---- formats -------------------------------------------------------------------------------

_FENCE_LINE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*$", re.M)


def extract_code(text: str) -> tuple[str, str]:
    """(code, language) of the first fenced block in `text`.

    An answer often finishes a block the prompt opened, or is cut short inside one, so a lone
    fence counts too: a bare fence after text closes a block (the code is before it), any other
    opens one (the code is after it). Without any fence, the whole text."""
    fences = list(_FENCE_LINE.finditer(text))
    if len(fences) >= 2:
        start, end = fences[0], fences[1]
        return text[start.end() + 1 : end.start()].rstrip("\n"), start.group(1)
    if len(fences) == 1:
        fence = fences[0]
        before, after = text[: fence.start()], text[fence.end() + 1 :]
        if before.strip() and not fence.group(1):  # a bare fence after code closes a block
            return before.strip("\n"), ""
        return after.rstrip("\n"), fence.group(1)
    return text.strip("\n"), ""


def parse_json(text: str) -> tuple[Any, str | None]:
    """(value, None) if `text`, or its first fenced block, is JSON; else (None, the reason)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        error = exc
    if "```" in text:  # models like to wrap JSON in a ```json block
        try:
            return json.loads(extract_code(text)[0]), None
        except json.JSONDecodeError:
            pass  # report the error in the text as written
    return None, f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})"


def shape(text: str, fmt: str) -> tuple[Any, str | None]:
    """The value an answer has in a format, and an error if it does not fit it."""
    if fmt == "code":
        return extract_code(text)[0], None
    if fmt == "json":
        return parse_json(text)
    return text, None


def footer(answer: Answer) -> str:
    """One line: prompt/answer tokens, tokens/s, time to first token, and why it ended."""
    t = answer.timings
    rate = t.decode_tokens_per_s
    parts = [f"{t.prompt_tokens} prompt tokens", f"{len(answer.token_ids)} answer tokens",
             f"{rate:.1f} tok/s" if rate else "- tok/s",
             f"first token {t.time_to_first_token_s:.2f} s"]
    if answer.stopped:
        parts.append("stopped")
    elif answer.finish_reason == "length":
        parts.append("max tokens reached")
    return " · ".join(parts)


def _close_fences(markdown: str) -> str:
    # An answer cut inside a code block would swallow the footer into it.
    return markdown + "\n```" if len(_FENCE_LINE.findall(markdown)) % 2 else markdown


def _markdown(body: str, note: str) -> dict[str, str]:
    return {"text/markdown": f"{_close_fences(body)}\n\n<sub>{html.escape(note)}</sub>",
            "text/plain": f"{body}\n\n{note}"}


def render(answer: Answer) -> dict[str, str]:
    """The final MIME bundle of an answer, by format; text/plain is always there."""
    note = footer(answer)
    if answer.format == "text":
        return {"text/plain": f"{answer.text}\n\n{note}"}
    if answer.format == "html":
        return {"text/html": f"{answer.text}\n<div><sub>{html.escape(note)}</sub></div>",
                "text/plain": f"{answer.text}\n\n{note}"}
    if answer.format == "code":
        code, language = extract_code(answer.text)
        bundle = _markdown(f"```{language}\n{code}\n```", note)
        bundle["text/plain"] = f"{code}\n\n{note}"
        return bundle
    if answer.format == "json":
        if answer.error is not None:
            return _markdown(f"{answer.text}\n\n**{answer.error}**", note)
        pretty = json.dumps(answer.value, indent=2, ensure_ascii=False)
        bundle = _markdown(f"```json\n{pretty}\n```", note)
        bundle["text/plain"] = f"{pretty}\n\n{note}"
        return bundle
    return _markdown(answer.text, note)


# ---- metadata ------------------------------------------------------------------------------

def model_identity(model: Model) -> dict[str, Any]:
    """Which weights answered: the folder, its dtype, and the source file with its sha256."""
    exporter = model.info.get("exporter", {})
    return {"name": model.path.name, "dtype": model.info.get("dtype"),
            "provider": model.provider, "source": exporter.get("source"),
            "source_sha256": exporter.get("source_sha256")}


def output_metadata(answer: Answer) -> dict[str, Any]:
    """The output's metadata: enough to know which model and settings produced it."""
    t = answer.timings
    return {"gemma_nb": {
        "model": answer.model,
        "sampling": {k: v for k, v in answer.settings.items() if k != "seed"},
        "seed": answer.settings.get("seed"),
        "finish_reason": answer.finish_reason,
        "prompt_tokens": t.prompt_tokens,
        "answer_tokens": len(answer.token_ids),
        "tokens_per_s": round(t.decode_tokens_per_s, 2),
        "time_to_first_token_s": round(t.time_to_first_token_s, 4),
    }}


# ---- live display --------------------------------------------------------------------------

def is_rich(shell: Any) -> bool:
    """Whether the shell's front end shows MIME bundles and updates displays (a kernel does;
    terminal IPython's plain DisplayPublisher prints text/plain only)."""
    from IPython.core.displaypub import DisplayPublisher

    return type(shell.display_pub) is not DisplayPublisher


class LiveDisplay:
    """Text streamed into one output: a display handle in a notebook, stdout in a terminal."""

    def __init__(self, rich: bool, interval: float = UPDATE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.rich = rich
        self.interval = interval
        self.clock = clock
        self.text = ""
        self._handle: Any = None
        self._last = float("-inf")  # the first piece shows at once
        self.updates = 0

    def start(self, metadata: Mapping[str, Any] | None = None) -> None:
        if self.rich:
            from IPython.display import display

            self._handle = display({"text/plain": "..."}, raw=True, display_id=True,
                                   metadata=dict(metadata or {}))

    def push(self, piece: str) -> None:
        self.text += piece
        if not self.rich:
            sys.stdout.write(piece)
            sys.stdout.flush()
            return
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            self._update({"text/plain": self.text})

    def clear(self) -> None:
        """Empty the output (generation failed before an answer)."""
        if self._handle is not None:
            self._update({"text/plain": ""})

    def finish(self, answer: Answer) -> None:
        if self.rich:
            self._update(render(answer), output_metadata(answer))
            return
        if answer.error:
            print(f"\n{answer.error}", end="")
        print(f"\n\n{footer(answer)}", flush=True)

    def _update(self, bundle: dict[str, str], metadata: dict[str, Any] | None = None) -> None:
        self._handle.update(bundle, raw=True, metadata=metadata or {})
        self.updates += 1
