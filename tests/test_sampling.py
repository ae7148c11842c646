import numpy as np
import pytest

from gemma_nb.sampling import SamplingSettings, sample


def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_greedy_is_argmax():
    logits = np.array([0.1, 3.0, -1.0, 2.9], np.float32)
    assert sample(logits, SamplingSettings(), rng()) == 1


def test_top_k_one_is_greedy_at_any_temperature():
    logits = np.random.default_rng(1).normal(size=1000).astype(np.float32)
    assert sample(logits, SamplingSettings(temperature=5.0, top_k=1), rng()) == logits.argmax()


def test_top_p_keeps_only_the_nucleus():
    logits = np.log(np.array([0.6, 0.3, 0.05, 0.05], np.float32))
    draws = {sample(logits, SamplingSettings(temperature=1.0, top_p=0.8), np.random.default_rng(s))
             for s in range(200)}
    assert draws == {0, 1}


def test_temperature_sampling_follows_the_distribution():
    probs = np.array([0.5, 0.3, 0.2])
    logits = np.log(probs).astype(np.float32)
    generator = rng()
    draws = [sample(logits, SamplingSettings(temperature=1.0), generator) for _ in range(4000)]
    np.testing.assert_allclose(np.bincount(draws) / len(draws), probs, atol=0.03)


def test_same_seed_same_tokens():
    logits = np.random.default_rng(2).normal(size=50).astype(np.float32)
    settings = SamplingSettings(temperature=1.0)
    a = [sample(logits, settings, np.random.default_rng(9)) for _ in range(5)]
    b = [sample(logits, settings, np.random.default_rng(9)) for _ in range(5)]
    assert a == b


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_k": -2}, {"top_p": 0}])
def test_bad_settings_raise(kwargs):
    with pytest.raises(ValueError):
        SamplingSettings(**kwargs)


@pytest.mark.parametrize("top_k, top_p", [(0, 0.9), (0, 0.5), (40, 0.95), (300, 1.0), (0, 0.999)])
@pytest.mark.parametrize("spread, vocab", [(4, 20000), (1, 20000), (12, 262144), (0.5, 262144)])
def test_the_kept_candidates_are_exactly_the_sorted_reference(top_k, top_p, spread, vocab):
    # Reference: sort the whole vocabulary, cut top-k, renormalize, cut the top-p nucleus.
    # A small spread makes nuclei of thousands of tokens, past the first try's 256.
    from gemma_nb.sampling import _candidates

    rng = np.random.default_rng(7)
    logits = (rng.standard_normal(vocab) * spread).astype(np.float32)
    weights = np.exp((logits - logits.max()) / np.float32(0.8))
    order = np.argsort(-weights, kind="stable")[: top_k or None]
    mass = np.cumsum(weights[order], dtype=np.float64) / weights[order].sum(dtype=np.float64)
    expected = order[: int(np.searchsorted(mass, top_p)) + 1] if top_p < 1 else order
    np.testing.assert_array_equal(_candidates(weights, top_k, top_p), expected)


def test_plain_temperature_keeps_every_token():
    from gemma_nb.sampling import _candidates

    assert _candidates(np.ones(10, np.float32), 0, 1.0) is None


def test_tied_weights_keep_the_lower_ids():
    from gemma_nb.sampling import _candidates

    weights = np.ones(1000, np.float32)
    np.testing.assert_array_equal(_candidates(weights, 5, 1.0), np.arange(5))
    np.testing.assert_array_equal(_candidates(weights, 0, 0.0105), np.arange(11))


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("n", [1, 1023, 1024, 1025, 5000, 262144])
def test_crossing_is_searchsorted_on_the_running_sum(side, n):
    from gemma_nb.sampling import _crossing

    rng = np.random.default_rng(n)
    values = rng.exponential(size=n).astype(np.float32)
    values[rng.random(n) < 0.3] = 0.0  # zeros: the running sum stands still
    running = np.cumsum(values, dtype=np.float64)
    for fraction in [0.0, 1e-7, 0.25, 0.5, 0.999, 0.9999999]:
        expected = min(int(np.searchsorted(running, fraction * running[-1], side=side)), n - 1)
        assert abs(_crossing(values, fraction, side) - expected) <= (0 if n < 5000 else 1)


def test_draws_across_blocks_follow_the_weights_and_skip_zeros():
    weights = np.zeros(300000, np.float32)
    heavy = [3, 1500, 70000, 299999]  # in different blocks, the last in the short last block
    weights[heavy] = [1.0, 2.0, 3.0, 4.0]
    logits = np.where(weights > 0, np.log(np.maximum(weights, 1e-30)), -1e4).astype(np.float32)
    generator = rng()
    draws = [sample(logits, SamplingSettings(temperature=1.0), generator) for _ in range(3000)]
    assert set(draws) <= set(heavy)
    counts = np.array([draws.count(i) for i in heavy]) / len(draws)
    np.testing.assert_allclose(counts, np.array([1, 2, 3, 4]) / 10, atol=0.03)


@pytest.mark.parametrize("k", [1, 40, 1000, 30000, 262143])
def test_top_k_ids_are_the_k_largest_and_their_ties(k):
    from gemma_nb.sampling import _top_k_ids

    weights = np.exp(np.random.default_rng(k).normal(size=262144) * 3).astype(np.float32)
    weights[[5, 9000, 200000]] = np.sort(weights)[-k]  # ties with the k-th largest
    kth = np.sort(weights)[-k]
    np.testing.assert_array_equal(_top_k_ids(weights, k), np.flatnonzero(weights >= kth))


def test_top_k_ids_when_the_strided_sample_sees_only_large_weights():
    from gemma_nb.sampling import _top_k_ids

    weights = np.random.default_rng(8).uniform(0, 1e-3, 262144).astype(np.float32)
    weights[::64] = 1.0  # every weight the sample reads: its floor leaves fewer than k above
    weights[7] = 0.5
    expected = np.sort(np.argsort(-weights, kind="stable")[:4100])
    np.testing.assert_array_equal(_top_k_ids(weights, 4100), expected)
