"""Gemma weights from a Hugging Face folder: `config.json`, `*.safetensors` (sharded or not)
and `tokenizer.model`.

Safetensors files are memory-mapped and read tensor by tensor. We read the (simple, documented)
format ourselves because the `safetensors` numpy backend cannot return bfloat16, the dtype most
Gemma checkpoints use.
"""

from __future__ import annotations

import json
import struct
from functools import cached_property
from pathlib import Path

import numpy as np

from gemma_nb.config import GemmaConfig

from .errors import (
    CorruptWeightsError,
    ExportError,
    MissingTokenizerError,
    MissingWeightsError,
    UnsupportedTensorTypeError,
)
from .tensor_names import HF_NAMES, NORMS, role_of, source_name

__all__ = ["HFSource"]

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}


class _SafetensorsFile:
    def __init__(self, path: Path):
        self.path = path
        size = path.stat().st_size
        try:
            with open(path, "rb") as f:
                (header_len,) = struct.unpack("<Q", f.read(8))
                if header_len > size - 8:
                    raise ValueError("header runs past the end of the file")
                header = json.loads(f.read(header_len))
        except (struct.error, ValueError) as exc:
            raise CorruptWeightsError(f"{path} is not a valid safetensors file: {exc}") from None
        header.pop("__metadata__", None)
        self.entries = header
        self.data_start = 8 + header_len
        end = max((e["data_offsets"][1] for e in header.values()), default=0)
        if self.data_start + end > size:
            raise CorruptWeightsError(f"{path} is truncated ({size} bytes, needs {end})")

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise UnsupportedTensorTypeError(
                f"{name} in {self.path} is {entry['dtype']}; expected F32, F16 or BF16"
            )
        begin, end = entry["data_offsets"]
        raw = np.memmap(self.path, dtype=np.uint8, mode="r",
                        offset=self.data_start + begin, shape=(end - begin,))
        values = raw.view(dtype).reshape(entry["shape"])
        if entry["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            return (values.astype(np.uint32) << 16).view(np.float32)
        return values.astype(np.float32)


class HFSource:
    """Config, tokenizer and float32 tensors (our names) of a Hugging Face Gemma folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        config_path = self.path / "config.json"
        if not config_path.is_file():
            raise MissingWeightsError(f"{self.path} has no config.json")
        self._config_json = json.loads(config_path.read_text())
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise MissingWeightsError(
                f"{self.path} has no *.safetensors weights (PyTorch .bin files are not read)"
            )
        self._where: dict[str, _SafetensorsFile] = {}
        for file in map(_SafetensorsFile, files):
            for name in file.entries:
                # Multimodal Gemma-3 checkpoints nest the text model; we export the text part.
                self._where[name.replace("language_model.model.", "model.")] = file
        self._original = {k.replace("language_model.model.", "model."): k
                          for f in set(self._where.values()) for k in f.entries}

    @cached_property
    def config(self) -> GemmaConfig:
        return GemmaConfig.from_hf(self._config_json)

    def tokenizer_model(self) -> bytes:
        path = self.path / "tokenizer.model"
        if not path.is_file():
            raise MissingTokenizerError(
                f"{self.path} has no tokenizer.model (Gemma's SentencePiece model); copy it from "
                "the original checkpoint"
            )
        return path.read_bytes()

    def source_names(self) -> set[str]:
        return set(self._where)

    def source_name(self, ours: str) -> str:
        return source_name(ours, HF_NAMES)

    def raw_tensor(self, ours: str) -> tuple:
        raise ExportError(
            "--dtype gguf re-encodes GGUF blocks, and a Hugging Face folder has none: "
            "choose fp32, fp16, int8 or int4"
        )

    def tensor(self, ours: str) -> np.ndarray:
        """Float32 values, [out, in]; norms as the multiplier 1 + w (HF stores w)."""
        name = self.source_name(ours)
        if name not in self._where:
            raise MissingWeightsError(f"{self.path} lacks tensor {name}")
        values = self._where[name].read(self._original[name])
        return values + np.float32(1.0) if role_of(ours) in NORMS else values
