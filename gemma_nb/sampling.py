"""Choosing the next token from one row of logits: greedy, temperature, top-k, top-p."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GemmaError

__all__ = ["SamplingSettings", "SamplingError", "sample"]


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
    """Pick a token id from a 1-D float32 logits row."""
    if settings.temperature == 0:
        return int(np.argmax(logits))
    # Work on the few candidates only: top-k (or all), sorted by logit, descending.
    k = settings.top_k or logits.shape[0]
    candidates = np.argpartition(logits, -k)[-k:] if k < logits.shape[0] else np.arange(k)
    scaled = logits[candidates].astype(np.float64) / settings.temperature
    order = np.argsort(-scaled)
    candidates, scaled = candidates[order], scaled[order]
    probs = np.exp(scaled - scaled[0])
    probs /= probs.sum()
    if settings.top_p < 1:
        keep = int(np.searchsorted(np.cumsum(probs), settings.top_p)) + 1
        candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
    return int(candidates[rng.choice(len(candidates), p=probs)])
