"""Small statistics for reports: Wilson intervals, KL divergence, calibration bins.

The Wilson score interval (Wilson 1927) is used rather than the normal approximation
p +- z sqrt(p(1-p)/n): on samples of 100-200 items at accuracies near chance (0.25) or near 1,
the normal interval is too narrow and can leave [0, 1]; Wilson's stays inside and keeps its
coverage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["Z95", "wilson_interval", "kl_divergence", "calibration_bins",
           "expected_calibration_error"]

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of the proportion correct / n; (nan, nan) when n = 0."""
    if n == 0:
        return math.nan, math.nan
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # The interval always holds p; min/max only undo rounding (p = 0 gave a low of 1e-17).
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))


def kl_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p || q) in nats between two distributions over the same choices."""
    p_, q_ = np.asarray(p, np.float64), np.asarray(q, np.float64)
    mask = p_ > 0
    return float(np.sum(p_[mask] * (np.log(p_[mask]) - np.log(q_[mask]))))


def calibration_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
                     ) -> list[tuple[float, float, float, int]]:
    """(bin low, mean confidence, accuracy, count) of each non-empty equal-width bin."""
    conf = np.asarray(confidence, np.float64)
    right = np.asarray(correct, bool)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append((b / bins, float(conf[mask].mean()), float(right[mask].mean()),
                        int(mask.sum())))
    return out


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool],
                               bins: int = 10) -> float:
    """Sum over bins of |accuracy - confidence| weighted by the bin's share of items."""
    table = calibration_bins(confidence, correct, bins)
    n = sum(count for *_, count in table)
    return sum(count * abs(acc - conf) for _, conf, acc, count in table) / n if n else math.nan
