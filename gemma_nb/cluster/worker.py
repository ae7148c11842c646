"""What runs on a Dask worker: the model, loaded once per worker process and kept there for
every later task (Dask runs tasks in the worker's threads, so a module-level cache is shared by
all of them)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ModelFolderError
from ..exclusive import exclusive
from ..model import Model, load
from .ref import ModelRef, fingerprint

__all__ = ["call_with_model", "local_folder", "sees_folder", "loaded_models"]

T = TypeVar("T")

_models: dict[ModelRef, Model] = {}
_loads: list[str] = []  # every folder this process loaded, in order: one entry per model
_guard = threading.Lock()  # two threads of one worker asking at once load the model once


def _worker() -> Any:
    from distributed import get_worker

    return get_worker()


def sees_folder(ref: ModelRef) -> bool:
    """Whether this machine has the very folder at the notebook's path."""
    path = Path(ref.path)
    return path.is_dir() and fingerprint(path) == ref.fingerprint


def local_folder(ref: ModelRef) -> Path:
    """The model folder on this worker: the notebook's path when it holds the same folder
    here, else the copy uploaded to this worker (`folder.share_folder`)."""
    if sees_folder(ref):
        return Path(ref.path)
    worker = _worker()
    copy = Path(worker.local_directory) / ref.upload_name
    if copy.is_dir():
        return copy
    raise ModelFolderError(f"the worker at {worker.address} has no copy of {ref.path}")


def _model(ref: ModelRef) -> Model:
    with _guard:
        if ref not in _models:
            folder = local_folder(ref)
            _models[ref] = load(folder, ref.provider, threads=_worker().state.nthreads)
            _loads.append(str(folder))
        return _models[ref]


def call_with_model(ref: ModelRef, fn: Callable[..., T], shared: Any, *args: Any) -> T:
    """A task: `fn(model, shared, *args)` on this worker's model."""
    model = _model(ref)
    with exclusive(model):  # a worker with several threads runs its chunks one at a time
        return fn(model, shared, *args)


def loaded_models() -> list[str]:
    """Each load this worker process made, by folder (`client.run(loaded_models)` shows that
    a worker loads a model once, however many tasks it runs)."""
    return list(_loads)
