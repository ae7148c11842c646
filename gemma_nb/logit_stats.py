"""A row of logits' log-sum-exp and argmax: each generated token's log-probability, and the
greedy pick.

numpy makes them in five passes over the vocabulary (argmax, max, a subtraction, exp, a sum):
~210 us a step for Gemma 3's 262k logits, 5% of the 270M's decode step. The kernel library's
`GemmaNbLogitStats` (logit_stats.cc) makes both in one pass with AVX-512, ~2.5x faster; numpy's
form runs where the library is not built or the CPU has no AVX-512.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import numpy as np

from .kernels import KernelUnavailableError, kernel_library

__all__ = ["RowStats", "row_stats", "numpy_row_stats"]


class RowStats(NamedTuple):
    logsumexp: float  # log sum exp(logits): log_softmax(logits)[i] = logits[i] - logsumexp
    best: int  # argmax, the first index among equal maxima (numpy's)


def numpy_row_stats(row: np.ndarray) -> RowStats:
    best = int(np.argmax(row))
    top = row[best]
    return RowStats(float(top) + float(np.log(np.exp(row - top).sum(dtype=np.float64))), best)


@cache
def _library_row_stats() -> Callable[[np.ndarray], RowStats] | None:
    try:
        stats = ctypes.CDLL(str(kernel_library())).GemmaNbLogitStats
    except (KernelUnavailableError, OSError):
        return None
    stats.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                      ctypes.c_void_p]
    stats.restype = ctypes.c_int

    def row_stats(row: np.ndarray) -> RowStats:
        logsumexp, best = ctypes.c_float(), ctypes.c_int64()
        if not stats(row.ctypes.data, 1, row.size, ctypes.addressof(logsumexp),
                     ctypes.addressof(best)):
            return numpy_row_stats(row)  # no AVX-512 here, or GEMMA_NB_KERNEL_ISA caps it
        return RowStats(logsumexp.value, best.value)

    return row_stats


def row_stats(row: np.ndarray) -> RowStats:
    """The log-sum-exp and argmax of a 1-D row of logits."""
    row = np.ascontiguousarray(row, np.float32)
    fast = _library_row_stats()
    return fast(row) if fast and row.size else numpy_row_stats(row)
