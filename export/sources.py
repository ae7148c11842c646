"""Open any supported weights source: a GGUF file, a `.llamafile`, or a Hugging Face folder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol

import numpy as np
from gguf import GGMLQuantizationType

from gemma_nb.config import GemmaConfig

from .errors import CorruptWeightsError, MissingWeightsError
from .gguf_source import GGUFSource
from .hf_source import HFSource

__all__ = ["WeightsSource", "open_source", "source_sha256"]

_GGUF_MAGIC = b"GGUF"


class WeightsSource(Protocol):
    path: Path

    @property
    def config(self) -> GemmaConfig: ...

    def tokenizer_model(self) -> bytes: ...

    def source_names(self) -> set[str]: ...

    def source_name(self, ours: str) -> str: ...

    def tensor(self, ours: str) -> np.ndarray: ...

    def raw_tensor(self, ours: str) -> tuple[GGMLQuantizationType, np.ndarray]: ...


def open_source(path: str | Path) -> WeightsSource:
    path = Path(path)
    if path.is_dir():
        return HFSource(path)
    if not path.is_file():
        raise MissingWeightsError(f"{path} does not exist")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _GGUF_MAGIC or path.suffix == ".llamafile" or head[:2] in (b"PK", b"MZ"):
        return GGUFSource(path)  # a llamafile is an executable that is also a zip
    raise CorruptWeightsError(
        f"{path} is neither a GGUF file, a .llamafile, nor a Hugging Face folder"
    )


def source_sha256(path: str | Path) -> str:
    """sha256 of the source file; for a folder, of its config and weight files in name order."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(
        p for p in path.iterdir() if p.suffix in (".safetensors", ".json", ".model")
    )
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()
