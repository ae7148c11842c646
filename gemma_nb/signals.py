"""Keep Ctrl-C for the main thread.

OpenBLAS (imported with numpy), onnxruntime and every ORT session start native worker threads
that inherit the signal mask of the thread starting them. If those threads accept SIGINT, the
kernel may hand a Ctrl-C to one of them: Python then only sets a flag, and a main thread asleep
in `input()` (the terminal chat) never wakes to raise KeyboardInterrupt. Starting them with the
signals blocked leaves the main thread as the only one that can receive them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["workers_started_deaf_to_interrupts"]

_SHIELDED = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def workers_started_deaf_to_interrupts() -> Iterator[None]:
    """Threads started inside the block never receive SIGINT or SIGTERM."""
    if not hasattr(signal, "pthread_sigmask") or (
            threading.current_thread() is not threading.main_thread()):
        yield  # Windows, or not the thread that receives signals anyway
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SHIELDED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
