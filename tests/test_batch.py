"""Batched generation: right-padded rows in one session run give each row's own answer."""

from __future__ import annotations

import numpy as np
import pytest

PROMPTS = ["a", "the cat sat on", "hello world, this is a longer prompt than the others", "x y",
           "digits 12345", "short"]


def test_batch_greedy_equals_single_calls(tiny_gemma2_model):
    model = tiny_gemma2_model
    batch = model.generate_batch(PROMPTS, max_new_tokens=20)
    for prompt, row in zip(PROMPTS, batch):
        single = model.generate(prompt, max_new_tokens=20)
        assert row.token_ids == single.token_ids and row.text == single.text
        assert row.finish_reason == single.finish_reason
        np.testing.assert_allclose(row.logprobs, single.logprobs, atol=1e-3)


def test_batch_sampling_with_a_seed_equals_single_calls(tiny_gemma2_model):
    model = tiny_gemma2_model
    batch = model.generate_batch(PROMPTS[:3], max_new_tokens=12, temperature=0.9, seed=5)
    assert [g.token_ids for g in batch] == [
        model.generate(p, max_new_tokens=12, temperature=0.9, seed=5).token_ids
        for p in PROMPTS[:3]]


def test_logprobs_are_the_log_softmax_of_the_chosen_tokens(tiny_gemma2_model):
    model = tiny_gemma2_model
    result = model.generate("the cat", max_new_tokens=5)
    ids = model.tokenizer.encode("the cat") + result.token_ids
    z = model.logits(ids).astype(np.float64)
    log_softmax = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - z.max(-1, keepdims=True)
    start = len(ids) - len(result.token_ids) - 1
    expected = [log_softmax[start + i, t] for i, t in enumerate(result.token_ids)]
    np.testing.assert_allclose(result.logprobs, expected, atol=1e-3)


def test_map_over_a_series_keeps_its_index(tiny_gemma2_model):
    import pandas as pd
    series = pd.Series(["cat", "dog", "bird"], index=[10, 20, 30], name="animal")
    out = tiny_gemma2_model.map(series, "Say something about {item}", batch_size=2,
                                max_new_tokens=6, progress=False)
    assert list(out.index) == [10, 20, 30] and out.name == "animal"
    assert list(out) == tiny_gemma2_model.map(list(series), "Say something about {item}",
                                              batch_size=3, max_new_tokens=6, progress=False)


@pytest.mark.slow
def test_map_of_16_prompts_equals_16_single_calls_on_the_real_model(real_model):
    from gemma_nb.chat import format_chat

    topics = ["the sea", "a forest", "the moon", "bread", "rain", "a city", "music", "winter",
              "a cat", "the desert", "a river", "coffee", "mountains", "a library", "fire",
              "the wind"]
    mapped = real_model.map(topics, "Write one sentence about {item}.", batch_size=8,
                            max_new_tokens=24, progress=False)
    singles = [real_model.generate(format_chat([{"role": "user", "content":
                                                 f"Write one sentence about {t}."}]),
                                   max_new_tokens=24).text for t in topics]
    assert mapped == singles
