"""`gemma_nb.Chat`: a chat with the kernel's model that lives in a cell output.

    import gemma_nb
    chat = gemma_nb.Chat("default", system="Be brief.", temperature=0.7)
    chat                    # shows it; chat.messages, chat.ask(...), chat.save(...) from Python

An anywidget (traitlets here, one ES module and one CSS file there, no front-end build). The
synced state is the log (`history.py`), the settings and a status line; an answer streams to
the front end as custom "delta" messages, batched to at most `UPDATE_INTERVAL_S` apart, and its
full text is committed to the log at the end, so a re-render shows it.

Generation runs in a worker thread: the kernel's main thread stays free to receive Stop (and
anything else the notebook sends) while the model talks. Stop sets an event the worker checks
after each piece; the worker then closes the stream (`Stream.close`) and keeps the partial text.
Each model answers one request at a time (`exclusive`, shared with the %%gemma magic): a second
chat on the same model shows "waiting for the model" until the first is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..chat import format_chat
from ..errors import GemmaError
from ..exclusive import Cancelled, exclusive
from ..model import Generation, Model, load
from ..models import DEFAULT_MODEL, resolve_model
from .history import (answer_stats, check_messages, conversation, dumps, loads,
                      overflow_notice, turns_to_drop)

__all__ = ["Chat", "ChatBusyError", "UPDATE_INTERVAL_S"]

UPDATE_INTERVAL_S = 0.04  # at most 25 delta messages a second: smooth, and cheap on the wire
WAITING = "waiting for the model: it is answering another request (a chat or a %%gemma cell)"


class ChatBusyError(GemmaError):
    """The chat is answering; the request needs it idle (press Stop or wait)."""


class Chat(anywidget.AnyWidget):
    """A chat with a model in a notebook cell. `model`: a loaded Model, a model folder or weights
    file, "default", or None for the model the %gemma magic holds (else "default"); a model
    that is not loaded yet is loaded on the first question."""

    _esm = Path(__file__).with_name("chat.js")
    _css = Path(__file__).with_name("chat.css")

    _log = traitlets.List(traitlets.Dict()).tag(sync=True)  # history.py describes entries
    status = traitlets.Unicode("").tag(sync=True)  # what the chat is doing, for the person
    busy = traitlets.Bool(False).tag(sync=True)  # an answer is in progress: Stop, not Send
    model_name = traitlets.Unicode("").tag(sync=True)
    context_length = traitlets.Int(0).tag(sync=True)  # 0 until the model is loaded
    system = traitlets.Unicode("").tag(sync=True)
    temperature = traitlets.Float(0.0).tag(sync=True)
    max_tokens = traitlets.Int(512).tag(sync=True)
    top_k = traitlets.Int(0)
    top_p = traitlets.Float(1.0)
    seed = traitlets.Int(None, allow_none=True)

    def __init__(self, model: Model | str | Path | None = None, system: str | None = None, *,
                 temperature: float = 0.0, max_tokens: int = 512, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, **kwargs: Any):
        super().__init__(system=system or "", temperature=temperature, max_tokens=max_tokens,
                         top_k=top_k, top_p=top_p, seed=seed, **kwargs)
        self._model: Model | None = model if isinstance(model, Model) else None
        self._spec = None if model is None or self._model is not None else str(model)
        self._show_model()
        if self._model is None:
            self.model_name = self._spec or "the kernel's model"
        self._mutex = threading.RLock()  # the log is changed by the main thread and the worker
        self._next_id = 0
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.on_msg(self._on_front_end)

    # ---- settings ---------------------------------------------------------------------------

    @traitlets.validate("temperature")
    def _check_temperature(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise traitlets.TraitError(f"temperature must be >= 0, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("max_tokens")
    def _check_max_tokens(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise traitlets.TraitError(f"max_tokens must be >= 1, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("top_k")
    def _check_top_k(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise traitlets.TraitError(f"top_k must be >= 0, got {proposal['value']}")
        return proposal["value"]

    @traitlets.validate("top_p")
    def _check_top_p(self, proposal: Any) -> float:
        if not 0 < proposal["value"] <= 1:
            raise traitlets.TraitError(f"top_p must be in (0, 1], got {proposal['value']}")
        return proposal["value"]

    def _sampling(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_tokens, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}

    # ---- the conversation from Python -------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, str]]:
        """The conversation as `Model.chat` takes it: the system prompt (if any), then the user
        and assistant turns the model reads (not those dropped to fit the context)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + conversation(self._log)

    @messages.setter
    def messages(self, messages: list[dict[str, str]]) -> None:
        system, turns = check_messages(messages)
        with self._mutex:
            self._check_idle("set the messages")
            self.system = system
            self._log = [self._entry(t["role"], t["content"], state="done") for t in turns]

    def ask(self, text: str) -> None:
        """Send a user message; the answer streams in a worker thread (`wait` waits for it)."""
        if not text.strip():
            raise GemmaError("the message is empty")
        with self._mutex:
            self._check_idle("ask")
            question = self._entry("user", text)
            answer = self._entry("assistant", "", state="waiting")
            self._log = [*self._log, question, answer]
            self._stop = threading.Event()
            self.busy = True
            self._worker = threading.Thread(target=self._answer,
                                            args=(question["id"], answer["id"], self._stop),
                                            name="gemma-nb-chat", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        """Stop the answer now; its text so far stays in the conversation."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the answer in progress; False if it is still going after `timeout` s."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return not self.busy

    def new_conversation(self) -> None:
        """Forget the conversation (an answer in progress is stopped); settings stay."""
        with self._mutex:
            self._stop.set()
            self._log = []

    def save(self, path: str | Path) -> None:
        """Write the conversation (`messages`) and the settings as JSON."""
        settings = {"temperature": self.temperature, "max_tokens": self.max_tokens,
                    "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}
        Path(path).write_text(dumps(self.system, conversation(self._log), settings) + "\n",
                              encoding="utf-8")

    def load(self, path: str | Path) -> None:
        """Replace the conversation (and the settings it was saved with) by a saved one, or by
        a JSON list of messages."""
        messages, settings = loads(Path(path).read_text(encoding="utf-8"))
        unknown = set(settings) - {"temperature", "max_tokens", "top_k", "top_p", "seed"}
        if unknown:
            raise GemmaError(f"{path}: unknown settings {sorted(unknown)}")
        self.messages = messages
        for name, value in settings.items():
            setattr(self, name, value)

    # ---- the front end ----------------------------------------------------------------------

    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """Messages from the view: ask, stop, new. Runs on the kernel's main thread."""
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "ask":
                self.ask(str(content.get("text", "")))
            elif kind == "stop":
                self.stop()
            elif kind == "new":
                self.new_conversation()
        except GemmaError as exc:  # a comm handler's exception would only reach the log
            self._add("error", str(exc))

    # ---- the worker -------------------------------------------------------------------------

    def _answer(self, question_id: int, answer_id: int, stop: threading.Event) -> None:
        """Load the model if needed, wait for it, stream the answer, commit it. In the worker."""
        started = time.perf_counter()
        ending: Callable[[], None] | None = None  # how the answer ends: set by each outcome
        try:
            model = self._ensure_model()
            with exclusive(model, on_wait=lambda: setattr(self, "status", WAITING),
                           cancel=stop):
                self.status = "answering"
                self._update(answer_id, state="streaming")
                prompt = self._prompt(model, question_id)
                result, stopped = self._stream(model, prompt, answer_id, stop)
            ending = partial(self._commit, answer_id, result, stopped,
                             time.perf_counter() - started)
        except Cancelled:  # Stop while waiting: an empty answer, marked stopped
            ending = partial(self._commit, answer_id, Generation("", [], "stop"), True,
                             time.perf_counter() - started)
        except Exception as exc:  # the thread's edge: every failure is shown in the widget
            message = str(exc) if isinstance(exc, GemmaError) else f"{type(exc).__name__}: {exc}"
            ending = partial(self._fail, question_id, answer_id, message)
        finally:
            self._finish(ending)

    def _finish(self, ending: Callable[[], None] | None) -> None:
        """The answer's last state and the chat's idle state in one sync message: the front end
        never shows a finished answer while Send is still disabled."""
        with self.hold_sync():
            try:
                if ending is not None:
                    ending()
            finally:
                with self._mutex:
                    self.busy = False
                    self.status = ""

    def _ensure_model(self) -> Model:
        if self._model is None:
            self.status = (f"loading the model {self._spec or DEFAULT_MODEL!r} (the first time, "
                           "exporting it takes about a minute)")
            self._model = _shared_model(self._spec)
            self._show_model()
        return self._model

    def _show_model(self) -> None:
        if self._model is not None:
            self.model_name = self._model.path.name
            self.context_length = self._model.config.context_length

    def _prompt(self, model: Model, question_id: int) -> str:
        """The chat prompt; the oldest turns are dropped, with a notice, if it outgrows the
        context (minus max_tokens for the answer)."""
        turns = conversation(self._log)
        drop = turns_to_drop(self.system, turns, lambda text: len(model.tokenizer.encode(text)),
                             model.config.context_length, self.max_tokens)
        if drop:
            with self._mutex:
                kept = [e for e in self._log if e["role"] in ("user", "assistant")
                        and not e.get("excluded") and e.get("state") in ("", "done", "stopped")]
                dropped = {e["id"] for e in kept[:drop]}
                notice = self._entry("notice", overflow_notice(
                    drop, model.config.context_length, self.max_tokens))
                log = []
                for entry in self._log:
                    if entry["id"] == question_id:
                        log.append(notice)
                    log.append({**entry, "excluded": "context"} if entry["id"] in dropped
                               else entry)
                self._log = log
            turns = turns[drop:]
        head = [{"role": "system", "content": self.system}] if self.system else []
        return format_chat(head + turns)

    def _stream(self, model: Model, prompt: str, answer_id: int, stop: threading.Event
                ) -> tuple[Generation, bool]:
        """Stream the answer to the front end as deltas; (result, stopped by the user)."""
        deltas = Deltas(lambda text: self.send({"type": "delta", "id": answer_id, "text": text}))
        stream = model.stream(prompt, **self._sampling())
        stopped = False
        try:
            for piece in stream:
                deltas.push(piece)
                if stop.is_set():
                    stopped = True
                    break
        finally:
            stream.close()  # ends generation now; result keeps the text so far
        deltas.flush()
        return stream.result, stopped

    # ---- the log ----------------------------------------------------------------------------

    def _entry(self, role: str, content: str, state: str = "") -> dict[str, Any]:
        self._next_id += 1
        return {"id": self._next_id, "role": role, "content": content, "state": state,
                "stats": None, "excluded": ""}

    def _add(self, role: str, content: str) -> None:
        with self._mutex:
            self._log = [*self._log, self._entry(role, content)]

    def _update(self, entry_id: int, **fields: Any) -> None:
        """Replace one entry (a new dict, so traitlets sees the change and syncs it); nothing
        if it is gone (New conversation pressed meanwhile)."""
        with self._mutex:
            self._log = [{**e, **fields} if e["id"] == entry_id else e for e in self._log]

    def _commit(self, answer_id: int, result: Generation, stopped: bool, seconds: float) -> None:
        self._update(answer_id, content=result.text, state="stopped" if stopped else "done",
                     stats=answer_stats(result, stopped, seconds))

    def _fail(self, question_id: int, answer_id: int, message: str) -> None:
        """Show the error where the answer was; the question stays visible, unanswered, out of
        the conversation (so the next question keeps user/assistant alternating)."""
        with self._mutex:
            log = []
            for entry in self._log:
                if entry["id"] == answer_id:
                    log.append(self._entry("error", message))
                elif entry["id"] == question_id:
                    log.append({**entry, "excluded": "unanswered"})
                else:
                    log.append(entry)
            self._log = log

    def _check_idle(self, what: str) -> None:
        if self.busy:
            raise ChatBusyError(f"cannot {what} while the chat is answering; press Stop or "
                                "call chat.wait()")


class Deltas:
    """Text pieces batched by time: `send` gets at most one message per `interval` seconds
    (the first piece at once, so the first token shows without delay)."""

    def __init__(self, send: Callable[[str], None], interval: float = UPDATE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic):
        self.send = send
        self.interval = interval
        self.clock = clock
        self.pending = ""
        self.last = float("-inf")
        self.sent = 0

    def push(self, piece: str) -> None:
        self.pending += piece
        if self.clock() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.send(self.pending)
            self.pending = ""
            self.last = self.clock()
            self.sent += 1


# ---- the kernel's models ------------------------------------------------------------------

_loaded: dict[str, Model] = {}  # loaded by spec, so two chats on "default" share one copy
_load_guard = threading.Lock()


def _shared_model(spec: str | None) -> Model:
    """The model for `spec`; None: the one the %gemma magic holds, else its configured model
    (handed to the magic, so the notebook holds one copy), else the default."""
    with _load_guard:
        magics = _magics()
        if spec is None and magics is not None and magics.model is not None:
            return magics.model
        key = spec or (magics.settings.model if magics is not None else DEFAULT_MODEL)
        if key not in _loaded:
            _loaded[key] = load(resolve_model(key, progress=False))
        if spec is None and magics is not None and magics.model is None:
            magics.model, magics.model_is_configured = _loaded[key], True
        return _loaded[key]


def _magics() -> Any:
    """The %gemma magics of the running IPython, if the extension is loaded."""
    from IPython import get_ipython

    shell = get_ipython()
    return None if shell is None else shell.magics_manager.registry.get("GemmaMagics")
