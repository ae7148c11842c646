"""Passes over a row of logits (gemma_nb/logit_stats.py, logit_stats.cc): its log-sum-exp and
argmax, and a temperature's weights with their blocks' sums, against numpy in float64, on the
kernel library's AVX-512 passes and on numpy's forms."""

from __future__ import annotations

import numpy as np
import pytest

from gemma_nb import logit_stats
from gemma_nb.kernels import kernel_isa
from gemma_nb.logit_stats import (SUM_BLOCK, numpy_row_stats, numpy_temperature_weights,
                                  row_stats, temperature_weights)
from gemma_nb.sampling import SamplingSettings, choose, sample

# The library's passes take the AVX-512 path (avx512-vnni or amx); on a CPU without it they
# decline, numpy's forms run, and test_a_capped_isa_falls_back_to_numpy covers that path.
AVX512 = kernel_isa() in ("avx512-vnni", "amx")


def reference(row: np.ndarray) -> tuple[float, int]:
    wide = row.astype(np.float64)
    top = wide.max()
    return float(top + np.log(np.exp(wide - top).sum())), int(np.argmax(row))


# around the library's 16 lanes and 4 KB chunks, and Gemma's vocabularies
SIZES = [1, 15, 16, 17, 1023, 1024, 1025, 3000, 256000, 262144]


@pytest.mark.parametrize("stats", [row_stats, numpy_row_stats], ids=["library", "numpy"])
@pytest.mark.parametrize("n", SIZES)
def test_stats_match_float64(stats, n):
    rng = np.random.default_rng(n)
    for scale, shift in [(1.0, 0.0), (8.0, -40.0), (0.01, 25.0)]:
        row = (rng.normal(size=n) * scale + shift).astype(np.float32)
        logsumexp, best = stats(row)
        expected, expected_best = reference(row)
        assert best == expected_best
        assert logsumexp == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("stats", [row_stats, numpy_row_stats], ids=["library", "numpy"])
def test_the_first_of_equal_maxima_is_best(stats):
    row = np.zeros(5000, np.float32)
    row[[4100, 7, 2048]] = 3.0  # lanes and chunks apart
    assert stats(row).best == 7
    assert stats(row[8:]).best == 2040


def test_a_new_maximum_late_rescales_the_sum():
    row = np.full(70000, -30.0, np.float32)
    row[-1] = 60.0  # every chunk before was summed against a far smaller maximum
    logsumexp, best = row_stats(row)
    assert best == 69999
    assert logsumexp == pytest.approx(reference(row)[0], abs=1e-6)


def test_strided_rows_are_read_as_their_values():
    rows = np.random.default_rng(3).normal(size=(4, 3000)).astype(np.float32)
    column_major = np.asfortranarray(rows)
    assert row_stats(column_major[2]) == row_stats(rows[2])


@pytest.mark.skipif(not AVX512, reason="this CPU has no AVX-512 VNNI: the library's passes "
                    "decline there by design and numpy's forms run")
def test_the_library_passes_run_where_built(monkeypatch):
    def numpy_form(*args):
        raise AssertionError("numpy's form ran on a CPU with AVX-512")

    monkeypatch.setattr(logit_stats, "numpy_row_stats", numpy_form)
    monkeypatch.setattr(logit_stats, "numpy_temperature_weights", numpy_form)
    row = np.random.default_rng(4).normal(size=262144).astype(np.float32)
    assert row_stats(row).best == int(np.argmax(row))
    assert temperature_weights(row, 0.7)[0].argmax() == int(np.argmax(row))


def test_a_capped_isa_falls_back_to_numpy(monkeypatch):
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "avx2")
    row = np.random.default_rng(5).normal(size=4096).astype(np.float32)
    assert row_stats(row) == numpy_row_stats(row)
    for got, expected in zip(temperature_weights(row, 0.7), numpy_temperature_weights(row, 0.7)):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("weights", [temperature_weights, numpy_temperature_weights],
                         ids=["library", "numpy"])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_weights_and_block_sums_match_float64(weights, n, temperature):
    row = (np.random.default_rng(n).normal(size=n) * 6).astype(np.float32)
    got, sums = weights(row, temperature)
    wide = np.exp((row.astype(np.float64) - row.max()) / temperature)
    # float32 arguments: exp's relative error grows with |argument| (up to ~87 x 2^-23), and
    # below exp(-87) the library's exp stops at ~1.6e-38
    np.testing.assert_allclose(got, wide, rtol=2e-5, atol=2e-38)
    assert got.dtype == np.float32 and got.max() == 1.0
    blocks = [wide[i:i + SUM_BLOCK].sum() for i in range(0, n, SUM_BLOCK)]
    np.testing.assert_allclose(sums, blocks, rtol=2e-5)  # the weights' errors, and float32 sums


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_choose_gives_the_token_and_its_log_softmax(temperature):
    logits = np.random.default_rng(6).normal(size=50000).astype(np.float32) * 4
    settings = SamplingSettings(temperature=temperature, top_k=40)
    token, logprob = choose(logits, settings, np.random.default_rng(1))
    assert token == sample(logits, settings, np.random.default_rng(1))
    wide = logits.astype(np.float64)
    expected = wide[token] - wide.max() - np.log(np.exp(wide - wide.max()).sum())
    assert logprob == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("weights", [temperature_weights, numpy_temperature_weights],
                         ids=["library", "numpy"])
def test_each_thread_gets_its_own_weights(weights):
    import threading

    rows = np.random.default_rng(9).normal(size=(2, 5000)).astype(np.float32)
    mine = weights(rows[0], 1.0)[0]
    expected = mine.copy()
    other = threading.Thread(target=weights, args=(rows[1], 1.0))
    other.start()
    other.join()
    np.testing.assert_array_equal(mine, expected)  # the other thread wrote its own array
