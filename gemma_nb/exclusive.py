"""One request at a time per model: the lock the chat widget and the %%gemma magic share.

A `Model` holds one ONNX Runtime session and answers one prompt at a time; two chats on it at
once would interleave their tokens in the notebook and halve each other's speed. Each model gets
one lock, kept in a `WeakKeyDictionary` so the lock goes when the model does (the model class
knows nothing of it).

    with exclusive(model, on_wait=lambda: status("waiting for the model")):
        for piece in model.stream(prompt):
            ...

A waiter polls, so a cancel event (the widget's Stop) or Kernel > Interrupt ends the wait.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import GemmaError

__all__ = ["Cancelled", "exclusive", "model_lock"]

POLL_S = 0.05  # how often a waiter checks its cancel event: Stop answers within this

_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()  # two threads asking for a new model's lock get the same one


class Cancelled(GemmaError):
    """The wait for a model was cancelled (Stop pressed before the model was free)."""


def model_lock(model: Any) -> threading.Lock:
    """The lock of `model`, made on first use."""
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.Lock()
        return lock


@contextmanager
def exclusive(model: Any, on_wait: Callable[[], None] | None = None,
              cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold `model`'s lock for the block. If another request holds it, `on_wait()` is called
    once and the block waits; `cancel` being set while waiting raises `Cancelled`."""
    lock = model_lock(model)
    if not lock.acquire(blocking=False):
        if on_wait is not None:
            on_wait()
        while not lock.acquire(timeout=POLL_S):
            if cancel is not None and cancel.is_set():
                raise Cancelled("stopped while waiting for the model")
    try:
        yield
    finally:
        lock.release()
