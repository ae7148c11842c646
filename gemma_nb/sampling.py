"""Choosing the next token from one row of logits: greedy, temperature, top-k, top-p."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GemmaError
from .logit_stats import SUM_BLOCK, row_stats, temperature_weights

__all__ = ["SamplingSettings", "SamplingError", "sample", "choose"]


class SamplingError(GemmaError, ValueError):
    """A sampling setting is out of range."""


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.0  # 0 = greedy (argmax)
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # nucleus mass; 1 = no limit

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise SamplingError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SamplingError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise SamplingError(f"top_p must be in (0, 1], got {self.top_p}")


def sample(logits: np.ndarray, settings: SamplingSettings, rng: np.random.Generator) -> int:
    """Pick a token id from a 1-D float32 logits row.

    One pass over the vocabulary (262k entries for Gemma 3) makes the weights exp(l / T) and
    their blocks' sums (logit_stats.py); only the candidates that top-k / top-p can keep are
    ever sorted, so a step costs well under a millisecond instead of a full sort's ~15 ms.
    """
    if settings.temperature == 0:
        return int(np.argmax(logits))
    weights, block_sums = temperature_weights(logits, settings.temperature)
    candidates = _candidates(weights, settings.top_k, settings.top_p)
    if candidates is None:
        return _crossing(weights, rng.random(), "right", block_sums)
    return int(candidates[_crossing(weights[candidates], rng.random(), "right")])


def _crossing(values: np.ndarray, fraction: float, side: str,
              block_sums: np.ndarray | None = None) -> int:
    """Where the running sum of `values` passes `fraction` of their sum: searchsorted(cumsum,
    target, side), by the sums of blocks of SUM_BLOCK (`block_sums` where already made) and
    then within one block."""
    starts = np.arange(0, len(values), SUM_BLOCK)
    if block_sums is None:
        block_sums = np.add.reduceat(values, starts, dtype=np.float64)
    blocks = np.cumsum(block_sums)
    target = fraction * blocks[-1]
    block = min(int(np.searchsorted(blocks, target, side=side)), len(blocks) - 1)
    low = blocks[block - 1] if block else 0.0
    inside = np.cumsum(values[starts[block]:starts[block] + SUM_BLOCK], dtype=np.float64)
    at = (target - low) / (blocks[block] - low) * inside[-1]  # the block's own sum, not its total's
    return int(starts[block]) + min(int(np.searchsorted(inside, at, side=side)), len(inside) - 1)


def choose(logits: np.ndarray, settings: SamplingSettings,
           rng: np.random.Generator) -> tuple[int, float]:
    """The next token (`sample`'s) and its log-probability under the model (temperature 1)."""
    stats = row_stats(logits)
    token = stats.best if settings.temperature == 0 else sample(logits, settings, rng)
    return token, float(logits[token]) - stats.logsumexp


def _candidates(weights: np.ndarray, top_k: int, top_p: float) -> np.ndarray | None:
    """Token ids top-k and then top-p keep, most likely first; None when they keep all."""
    n = weights.shape[0]
    k = min(top_k or n, n)
    if k == n and top_p >= 1:
        return None
    if k < n:
        ids = _top_k_ids(weights, k)
        total = None  # top-p then renormalizes over the top-k
    else:
        total = float(weights.sum(dtype=np.float64))
        ids = np.flatnonzero(weights >= _nucleus_floor(weights, top_p, total))
    ids = ids[np.argsort(-weights[ids], kind="stable")][:k]  # ties: the lower id first
    if top_p >= 1:
        return ids
    mass = np.cumsum(weights[ids], dtype=np.float64) / (total or weights[ids].sum())
    return ids[: min(int(np.searchsorted(mass, top_p)), len(ids) - 1) + 1]


# Top-k first keeps the weights at or above a floor taken from every n/TOP_K_SAMPLE-th weight
# (~4k of the vocabulary's weights expected above it), then partitions those: ~50 us against
# ~150 us for a partial sort of all of Gemma 3's vocabulary.
TOP_K_SAMPLE = 4096


def _top_k_ids(weights: np.ndarray, k: int) -> np.ndarray:
    """The ids (ascending) of the k largest weights and of any weight equal to the k-th."""
    n = len(weights)
    sample = weights[:: max(1, n // TOP_K_SAMPLE)]
    rank = 4 * (k * len(sample) // n + 1) + 16
    if rank < len(sample):
        floor = np.partition(sample, len(sample) - rank)[len(sample) - rank]
        ids = np.flatnonzero(weights >= floor)
        if len(ids) >= k:
            kept = weights[ids]
            return ids[kept >= np.partition(kept, len(ids) - k)[len(ids) - k]]
    # a large k, or a floor too high: partition all of them
    return np.flatnonzero(weights >= np.partition(weights, n - k)[n - k])


# The largest weights a nucleus is first looked for among: enough for a confident step's.
# _top_k_ids finds them in ~60 us; a whole sort of Gemma 3's vocabulary takes ~0.55 ms.
NUCLEUS_FIRST_TRY = 256
# Running sums by blocks may round apart from one sum from the start: the floor takes in this
# much more mass, so that it never cuts into the nucleus.
NUCLEUS_MARGIN = 1e-9


def _nucleus_floor(weights: np.ndarray, top_p: float, total: float) -> float:
    """A weight at or below the smallest of the top-p nucleus's (the largest weights whose sum
    first reaches top_p of `total`)."""
    target = min(top_p + NUCLEUS_MARGIN, 1.0)
    if len(weights) > NUCLEUS_FIRST_TRY:
        top = np.sort(weights[_top_k_ids(weights, NUCLEUS_FIRST_TRY)])[::-1]
        mass = np.cumsum(top, dtype=np.float64) / total
        if mass[-1] >= target:
            return float(top[int(np.searchsorted(mass, target))])
    descending = np.sort(weights)[::-1]
    return float(descending[_crossing(descending, target, "left")])
