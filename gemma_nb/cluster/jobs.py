"""Chunks of work on a cluster, their results handed back as they finish.

The shared part of a job (the task's items and prompts, the sampling settings) is scattered to
the workers once; each chunk is one Dask task naming only its slice. A worker that dies takes
its unfinished chunks with it, and Dask's scheduler runs them again on another worker (up to
`distributed.scheduler.allowed-failures` times). A chunk's result is taken once, by its
position, and released: nothing is lost, counted twice, or computed again. Leaving the
iteration early (Ctrl-C, an error in a chunk, `close()`) cancels every chunk not yet done.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .folder import share_folder
from .ref import ModelRef
from .worker import call_with_model

__all__ = ["completed"]


def completed(client: Any, ref: ModelRef, fn: Callable[..., Any], shared: Any,
              chunks: Sequence[tuple[Any, ...]]) -> Iterator[tuple[int, Any]]:
    """(position, `fn(model, shared, *chunks[position])`) for each chunk, in the order they
    finish, with `fn` run on the workers' own copies of the model `ref` names."""
    from distributed import as_completed

    share_folder(client, ref)
    job = uuid.uuid4().hex[:8]
    # In a list, so that a dict or a tuple is sent as one object, not scattered item by item.
    [shared_future] = client.scatter([shared], broadcast=True, hash=False)
    pending = {f"gemma-nb-{fn.__name__}-{job}-{i}": i for i in range(len(chunks))}
    futures = [client.submit(call_with_model, ref, fn, shared_future, *chunk, pure=False,
                             key=key) for key, chunk in zip(pending, chunks)]
    try:
        for future, result in as_completed(futures, with_results=True):
            # Released once taken: a worker dying later does not make Dask compute it again.
            future.release()
            yield pending.pop(future.key), result
    finally:
        client.cancel([f for f in futures if f.key in pending] + [shared_future])
