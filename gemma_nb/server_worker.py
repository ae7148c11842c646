"""The server's generation queue: one thread per model, one generation at a time on each.

A request becomes a `Job`; `Workers.submit` admits it if fewer than `models + queue_size` jobs
are admitted (else `QueueFullError`, which the server answers with 429). A worker thread runs
the job with `Model.stream` and hands each text piece to the event loop; the request's handler
reads them with `Job.pieces()`. `Job.cancel()` (a client gone) is seen by the worker at the
next piece, and the stream generator is closed: the model is free after one more token (a few
while `Model.stream` holds back a split character or a possible stop string), or, while a long
prompt is read, once its running chunk (`PREFILL_CHUNK` tokens) ends.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .errors import GemmaError
from .model import Generation, Model

__all__ = ["Job", "Workers", "QueueFullError"]

logger = logging.getLogger(__name__)

_DONE = object()  # the last event of a job: its `result` is set


class QueueFullError(GemmaError):
    """Every model is busy and the waiting queue is full."""


class Job:
    """One request's generation: `options` are `Model.stream` keyword arguments."""

    def __init__(self, prompt_ids: list[int], options: dict[str, Any],
                 loop: asyncio.AbstractEventLoop):
        self.prompt_ids = prompt_ids
        self.options = options
        self.result: Generation | None = None
        self._cancelled = threading.Event()
        self._loop = loop
        self._events: asyncio.Queue[Any] = asyncio.Queue()

    def cancel(self) -> None:
        """Stop the generation (or skip it while it waits); safe to call at any time."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def emit(self, event: Any) -> None:
        """From the worker thread: a text piece, an exception, or `_DONE`."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.cancel()

    async def pieces(self) -> AsyncIterator[str]:
        """The text pieces, on the event loop; raises what the generation raised."""
        while True:
            event = await self._events.get()
            if event is _DONE:
                return
            if isinstance(event, BaseException):
                raise event
            yield event


class Workers:
    """The models' only users: a thread per model, fed from one queue."""

    def __init__(self, models: Sequence[Model], queue_size: int):
        self.models = list(models)
        self.queue_size = queue_size
        self.running = 0
        self._admitted = 0  # waiting + running
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    @property
    def waiting(self) -> int:
        return self._admitted - self.running

    def start(self) -> None:
        for i, model in enumerate(self.models):
            thread = threading.Thread(target=self._serve, args=(model,), daemon=True,
                                      name=f"gemma-nb-worker-{i}")
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._admitted >= len(self.models) + self.queue_size:
                raise QueueFullError(
                    f"the server is busy: {self.running} generation(s) running and "
                    f"{self.waiting} waiting (the queue holds {self.queue_size}); retry later"
                )
            self._admitted += 1
        self._jobs.put(job)

    def _serve(self, model: Model) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self.running += 1
            try:
                if not job.cancelled:
                    _run(model, job)
            finally:
                with self._lock:
                    self.running -= 1
                    self._admitted -= 1


def _run(model: Model, job: Job) -> None:
    """Stream the job's pieces; stop between pieces once the job is cancelled."""
    stream = model.stream(job.prompt_ids, **job.options)
    try:
        for piece in stream:
            if job.cancelled:
                break
            if piece:  # empty ones only mark a chunk of a long prompt done
                job.emit(piece)
        job.result = stream.result
        job.emit(_DONE)
    except GemmaError as exc:
        job.emit(exc)
    except Exception as exc:  # noqa: BLE001 - the worker must outlive one failed generation
        logger.exception("generation failed")
        job.emit(exc)
    finally:
        stream.close()  # releases the KV cache at once
