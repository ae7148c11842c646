"""Gemma weights from a GGUF file, or from the GGUF stored inside a `.llamafile` zip.

Reading goes through the llama.cpp team's `gguf` package (memory-mapped: nothing is copied).
"""

from __future__ import annotations

import logging
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize

from gemma_nb.config import GemmaConfig

from .errors import CorruptWeightsError, MissingWeightsError, UnsupportedTensorTypeError
from .tensor_names import GGUF_NAMES, source_name
from .tokenizer import sentencepiece_model_from_gguf

logger = logging.getLogger(__name__)

__all__ = ["GGUFSource", "DEQUANTIZABLE_TYPES"]

# The types we promise to read (the `gguf` package dequantizes each in numpy).
DEQUANTIZABLE_TYPES = frozenset(
    {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1,
     Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K}
)


class _RangeReader(GGUFReader):
    """A GGUFReader over a byte range of a larger file: the stored GGUF member of a llamafile.

    GGUFReader memory-maps its whole path into `self.data`; the setter narrows that map to the
    member's bytes (a view, no copy) before parsing starts.
    """

    def __init__(self, path: Path, offset: int, length: int):
        self._range = (offset, length)
        self.member_offset = offset
        super().__init__(path)

    @property
    def data(self) -> np.memmap:
        return self._data

    @data.setter
    def data(self, whole: np.memmap) -> None:
        offset, length = self._range
        self._data = whole[offset : offset + length]


def _llamafile_member(path: Path) -> tuple[int, int]:
    """Byte offset and length of the GGUF stored (uncompressed) inside a llamafile."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".gguf")]
            if not members:
                raise MissingWeightsError(f"{path} is a zip archive without a .gguf member")
            member = members[0]
            if member.compress_type != zipfile.ZIP_STORED:
                raise CorruptWeightsError(
                    f"{member.filename} in {path} is compressed; llamafiles store it uncompressed"
                )
            with open(path, "rb") as raw:
                raw.seek(member.header_offset)
                header = raw.read(30)
            name_len = int.from_bytes(header[26:28], "little")
            extra_len = int.from_bytes(header[28:30], "little")
            return member.header_offset + 30 + name_len + extra_len, member.file_size
    except zipfile.BadZipFile as exc:
        raise CorruptWeightsError(f"{path} is not a valid llamafile (zip): {exc}") from None


class GGUFSource:
    """Config, tokenizer and float32 tensors (our names) of a Gemma GGUF."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            if zipfile.is_zipfile(self.path):
                self.reader: GGUFReader = _RangeReader(self.path, *_llamafile_member(self.path))
                self._file_offset = self.reader.member_offset
            else:
                self.reader = GGUFReader(self.path)
                self._file_offset = 0
        except (ValueError, IndexError, OverflowError, TypeError) as exc:
            raise CorruptWeightsError(
                f"{self.path} is not a readable GGUF file (truncated or corrupt): {exc}"
            ) from None
        self._tensors = {t.name: t for t in self.reader.tensors}
        self._check_tensors()

    def _check_tensors(self) -> None:
        for t in self.reader.tensors:
            if t.data.nbytes != t.n_bytes:
                raise CorruptWeightsError(
                    f"{self.path} is truncated: tensor {t.name} needs {t.n_bytes} bytes, "
                    f"{t.data.nbytes} are there"
                )
            if t.tensor_type not in DEQUANTIZABLE_TYPES:
                raise UnsupportedTensorTypeError(
                    f"tensor {t.name} is stored as {t.tensor_type.name}; gemma-nb reads "
                    + ", ".join(sorted(q.name for q in DEQUANTIZABLE_TYPES))
                )

    @cached_property
    def fields(self) -> dict[str, Any]:
        return {name: f.contents() for name, f in self.reader.fields.items()
                if not name.startswith("GGUF.")}

    @cached_property
    def config(self) -> GemmaConfig:
        embed = self._tensors.get(GGUF_NAMES["embed"])
        if embed is None:
            raise MissingWeightsError(f"{self.path} has no {GGUF_NAMES['embed']} tensor")
        return GemmaConfig.from_gguf(self.fields, vocab_size=int(embed.shape[-1]))

    def tokenizer_model(self) -> bytes:
        return sentencepiece_model_from_gguf(self.fields)

    def source_names(self) -> set[str]:
        return set(self._tensors)

    def source_name(self, ours: str) -> str:
        return source_name(ours, GGUF_NAMES)

    def raw_tensor(self, ours: str) -> tuple[Q, np.ndarray]:
        """The stored type and bytes (or values) of a tensor, for exact re-encodings.

        Read with one positioned read, not through the memory map: mapped pages that were read
        stay in the process's resident set, and a multi-GB file would count whole against the
        export's peak memory.
        """
        name = self.source_name(ours)
        if name not in self._tensors:
            raise MissingWeightsError(f"{self.path} lacks tensor {name}")
        t = self._tensors[name]
        values = np.fromfile(self.path, dtype=t.data.dtype, count=t.data.size,
                             offset=self._file_offset + t.data_offset)
        return t.tensor_type, values.reshape(t.data.shape)

    def tensor(self, ours: str) -> np.ndarray:
        """Float32 values, HF orientation ([out, in]); norms as the multiplier 1 + w."""
        qtype, data = self.raw_tensor(ours)
        values = np.asarray(dequantize(data, qtype), dtype=np.float32)
        return values  # GGUF stores norms as 1 + w already
