"""Wilson intervals, KL divergence and calibration bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gemma_nb.eval.stats import (Z95, calibration_bins, expected_calibration_error,
                                 kl_divergence, wilson_interval)


def score_test_bounds(correct: int, n: int) -> tuple[float, float]:
    """The Wilson interval by its definition: the p0 whose score test |p - p0| <= z se(p0)
    accepts, found on a fine grid (independent of the closed form)."""
    grid = np.linspace(0, 1, 2_000_001)
    p = correct / n
    accepted = grid[np.abs(p - grid) <= Z95 * np.sqrt(grid * (1 - grid) / n)]
    return accepted.min(), accepted.max()


@pytest.mark.parametrize("correct, n", [(0, 10), (5, 10), (8, 10), (53, 200), (200, 200)])
def test_wilson_interval_inverts_the_score_test(correct, n):
    assert wilson_interval(correct, n) == pytest.approx(score_test_bounds(correct, n), abs=1e-5)


def test_wilson_known_value():
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_no_items_has_no_interval():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_kl_divergence():
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert kl_divergence(p, q) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(5))
    assert kl_divergence(p, p) == 0.0
    assert kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_calibration_bins_and_error():
    confidence = [0.3, 0.35, 0.9, 0.95, 1.0]
    correct = [False, True, True, True, False]
    assert calibration_bins(confidence, correct) == [
        (0.3, pytest.approx(0.325), 0.5, 2), (0.9, pytest.approx(0.95), pytest.approx(2 / 3), 3)]
    expected = (2 * abs(0.5 - 0.325) + 3 * abs(2 / 3 - 0.95)) / 5
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)


@pytest.mark.parametrize("n", [1, 3, 7, 40, 199])
def test_interval_holds_the_proportion_at_the_ends(n):
    """At 0 and n correct, rounding put the bound past p (a negative error bar in plots)."""
    for correct in (0, n):
        low, high = wilson_interval(correct, n)
        assert low <= correct / n <= high
