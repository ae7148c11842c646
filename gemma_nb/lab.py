"""The kernel side of the JupyterLab extension (`labextension/`): what its cell commands run.

The extension executes one call per command in the notebook's kernel,

    gemma_nb.lab.run('{"action": "explain", "source": "...", "max_tokens": 128}')

and reads the answer back from stdout, one event a line, `@gemma-nb {"event": ...}`: lines
rather than a return value because the answer streams, and the notice shows it coming.

    status    {"message"}                             what is happening (loading a model)
    model     {"name", "provider", "load_s"}          the model that answers
    progress  {"tokens"}                              at most every PROGRESS_INTERVAL_S
    answer    {"action", "format", "text", "model", "provider", "tokens", "tokens_per_s",
               "finish_reason"}                       what the extension inserts below the cell
    error     {"kind", "message"}                     bad-request, no-model or generation

The prompts live here, in `TASKS`; the extension holds no model logic. The model is loaded once
per kernel and kept. Without a model path in the request, the one `%gemma load` loaded is
used, else `Gemma.model` (`%config`), else "default" (Gemma 3 270M); a model loaded for the
magic's configuration is handed to the magic, so a notebook holds one copy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .chat import format_chat
from .display import extract_code
from .errors import GemmaError
from .exclusive import exclusive
from .model import Model, load
from .models import DEFAULT_MODEL, resolve_model

__all__ = ["PREFIX", "PROGRESS_INTERVAL_S", "TASKS", "LabRequest", "LabRequestError", "Task",
           "answer_text", "build_prompt", "run", "unload"]

PREFIX = "@gemma-nb "  # starts every event line; the extension ignores other output
PROGRESS_INTERVAL_S = 0.2  # a notice needs no more; each event is a kernel message
ERROR_CHARS = 2000  # the end of a traceback says what went wrong; the rest costs prefill time

Event = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """One cell command: what the user turn asks, how the model's turn starts, and the
    shape of the answer."""

    instruction: str
    primer: str  # the start of the model's turn: steers small and base models into the shape
    format: str  # "markdown": the text as is; "code": the first fenced block of it
    stop: tuple[str, ...] = ()


TASKS: dict[str, Task] = {
    # No code in an explanation, so a fence means the model went on to repeat the cell.
    "explain": Task("Explain briefly, in plain words and without code, what this Python cell "
                    "does.", "This cell", "markdown", ("\n```",)),
    "document": Task("Write short Markdown documentation for this Python cell: its purpose, "
                     "its inputs and its outputs.", "## What this cell does\n\n", "markdown"),
    # The primer opens the code block: the first fence closes it, and the answer is done.
    "fix": Task("Fix this Python cell. Answer with the whole corrected cell in one Python code "
                "block.", "```python\n", "code", ("\n```",)),
}


class LabRequestError(GemmaError):
    """A command's request is malformed or out of range (the extension's settings)."""


@dataclass(frozen=True)
class LabRequest:
    """What one command asks: the action, the cell, and the settings it runs with."""

    action: str  # a key of TASKS
    source: str  # the cell's source, verbatim
    error: str = ""  # the cell's error output (fix), '' when it has none
    model: str = ""  # a model folder, weights file or "default"; '' lets the kernel choose
    max_tokens: int = 128
    temperature: float = 0.0

    @classmethod
    def from_json(cls, text: str) -> LabRequest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabRequestError(f"the request is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise LabRequestError(f"the request is a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise LabRequestError(f"unknown request fields: {', '.join(unknown)}")
        if "action" not in data or "source" not in data:
            raise LabRequestError("a request needs an action and a source")
        request = cls(**data)
        request._validate()
        return request

    def _validate(self) -> None:
        if self.action not in TASKS:
            raise LabRequestError(f"unknown action {self.action!r}; one of {', '.join(TASKS)}")
        for name in ("source", "error", "model"):
            if not isinstance(getattr(self, name), str):
                raise LabRequestError(f"{name} must be a string")
        # bool is an int in Python; JSON true is not a token count.
        if (not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool)
                or self.max_tokens < 1):
            raise LabRequestError(f"max tokens must be a whole number >= 1, got "
                                  f"{self.max_tokens!r}")
        if (not isinstance(self.temperature, (int, float)) or isinstance(self.temperature, bool)
                or self.temperature < 0):
            raise LabRequestError(f"temperature must be a number >= 0, got {self.temperature!r}")


def build_prompt(request: LabRequest) -> str:
    """The prompt: a chat user turn with the cell (and its error), then the task's primer.
    The cell is inserted as written: no templating touches its braces."""
    task = TASKS[request.action]
    parts = [task.instruction, f"```python\n{request.source.strip()}\n```"]
    if request.error.strip():
        parts.append(f"It raised this error:\n```\n{_tail(request.error.strip())}\n```")
    return format_chat([{"role": "user", "content": "\n\n".join(parts)}]) + task.primer


def answer_text(request: LabRequest, generated: str) -> str:
    """What is inserted: the primer and what the model wrote after it, as Markdown, or the
    code of its first block for a code answer."""
    task = TASKS[request.action]
    text = task.primer + generated
    if task.format == "code":
        return extract_code(text)[0]
    return text.strip()


def _tail(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else "..." + text[-ERROR_CHARS:]


# ---- the kernel's model ---------------------------------------------------------------------

@dataclass
class _Loaded:
    key: tuple[str, str]  # (spec, provider)
    model: Model


_loaded: _Loaded | None = None  # the model this kernel's commands use, kept between commands


def unload() -> None:
    """Forget the commands' model (the next command loads it again)."""
    global _loaded
    _loaded = None


def _magics() -> Any:
    """The %gemma magics of the running IPython, if the extension is loaded."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.magics_manager.registry.get("GemmaMagics")


def _model_for(spec: str, emit: Callable[[Event], None]) -> Model:
    global _loaded
    magics = _magics()
    configured = not spec
    if configured:
        if magics is not None and magics.model is not None:
            return magics.model
        spec = magics.settings.model if magics is not None else DEFAULT_MODEL
    provider = magics.settings.provider if magics is not None else "cpu"
    dtype = magics.settings.dtype if magics is not None else "fp32"
    if _loaded is not None and _loaded.key == (spec, provider):
        return _loaded.model
    first_use = " (exported on first use: about a minute)" if spec == DEFAULT_MODEL else ""
    emit({"event": "status", "message": f"loading the model {spec!r}{first_use}"})
    _loaded = None  # free the previous model before loading the next
    model = load(resolve_model(spec, dtype, progress=False), provider)
    _loaded = _Loaded((spec, provider), model)
    if configured and magics is not None and magics.model is None:
        # What the next %%gemma cell would load: the magic keeps it, the notebook one copy.
        magics.model, magics.model_is_configured = model, True
    return model


# ---- a command ------------------------------------------------------------------------------

def _answer(model: Model, request: LabRequest, emit: Callable[[Event], None]) -> Event:
    task = TASKS[request.action]
    stream = model.stream(build_prompt(request), max_new_tokens=request.max_tokens,
                          temperature=float(request.temperature), stop=list(task.stop))
    finish_reason = None
    last = time.perf_counter()
    try:
        for _ in stream:
            if time.perf_counter() - last >= PROGRESS_INTERVAL_S:
                emit({"event": "progress", "tokens": len(stream.result.token_ids)})
                last = time.perf_counter()
    except KeyboardInterrupt:  # the notice's Stop button interrupts the kernel: keep the text
        finish_reason = "interrupted"
    result = stream.result
    return {"event": "answer", "action": request.action, "format": task.format,
            "text": answer_text(request, result.text), "model": model.path.name,
            "provider": model.provider, "tokens": len(result.token_ids),
            "tokens_per_s": round(result.timings.decode_tokens_per_s, 2),
            "finish_reason": finish_reason or result.finish_reason}


def _print_event(event: Event) -> None:
    # ASCII JSON on one line: newlines in the answer are escaped, so a line is an event.
    print(PREFIX + json.dumps(event), flush=True)


def run(request_json: str, emit: Callable[[Event], None] = _print_event) -> None:
    """Answer one command: load the model if needed, stream progress, emit the answer. A
    problem the user can act on becomes an error event, not an exception."""
    try:
        request = LabRequest.from_json(request_json)
    except LabRequestError as exc:
        emit({"event": "error", "kind": "bad-request", "message": str(exc)})
        return
    try:
        model = _model_for(request.model, emit)
    except GemmaError as exc:
        emit({"event": "error", "kind": "no-model", "message": str(exc)})
        return
    emit({"event": "model", "name": model.path.name, "provider": model.provider,
          "load_s": round(model.load_s, 2)})
    try:
        waiting = {"event": "status", "message": "waiting for the model (a chat is answering)"}
        with exclusive(model, on_wait=lambda: emit(waiting)):  # shared with chat and %%gemma
            emit(_answer(model, request, emit))
    except GemmaError as exc:  # e.g. a cell longer than the context
        emit({"event": "error", "kind": "generation", "message": str(exc)})
