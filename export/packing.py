"""How weight matrices become ONNX initializers and the ops that read them.

A packing is chosen per export (`--dtype`); the graph builder only calls `linear`, `embed` and
`tied_head`, so a quantized packing is a drop-in replacement.
"""

from __future__ import annotations

import numpy as np

from .errors import ExportError
from .tape import Tape

__all__ = ["Fp32Packing", "packing_for"]


class Fp32Packing:
    """Float32 weights: `MatMul` for projections, one shared table for embedding and lm_head."""

    dtype = "fp32"

    def __init__(self) -> None:
        self._tables: dict[str, str] = {}

    def linear(self, tape: Tape, x: str, name: str, weight: np.ndarray) -> str:
        """y = x @ W^T for W stored [out, in]; kept transposed so MatMul reads rows."""
        return tape.op("MatMul", [x, tape.weight(name, weight.T)], name=name)

    def embed(self, tape: Tape, ids: str, name: str, table: np.ndarray) -> str:
        self._tables[name] = tape.weight(name, table)
        return tape.op("Gather", [self._tables[name], ids], name="embed")

    def tied_head(self, tape: Tape, hidden2d: str, name: str) -> str:
        """logits = h @ E^T on the embedding's own table (Gemm transB: no transposed copy)."""
        return tape.op("Gemm", [hidden2d, self._tables[name]], transB=1, name="lm_head")


_PACKINGS = {"fp32": Fp32Packing}


def packing_for(dtype: str) -> Fp32Packing:
    if dtype not in _PACKINGS:
        raise ExportError(f"unknown dtype {dtype!r}; choose one of {', '.join(_PACKINGS)}")
    return _PACKINGS[dtype]()
