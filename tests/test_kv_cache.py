"""The KV cache: bound once, grown when a caller runs past its capacity."""

from __future__ import annotations

import numpy as np

from gemma_nb.kv_cache import KVCache


def test_a_cache_grows_when_a_caller_runs_past_it(tiny_gemma2_model):
    model = tiny_gemma2_model
    ids = model.tokenizer.encode("a cache sized for two tokens, then fed many more")
    cache = model.new_cache(2)
    model.prefill(cache, ids[:2])
    for token in ids[2:]:
        last = model.decode_one(cache, token)
    assert cache.capacity >= len(ids) and list(cache.lengths) == [len(ids)]
    np.testing.assert_allclose(last, model.logits(ids)[-1], rtol=1e-4, atol=1e-4)


def test_growth_stops_at_the_context_length(tiny_gemma2_model):
    cfg = tiny_gemma2_model.config
    cache = KVCache(cfg, capacity=cfg.context_length // 2 + 1)
    cache.reserve(cfg.context_length // 2 + 2)
    assert cache.capacity == cfg.context_length


def test_the_binding_is_made_once_per_session(tiny_gemma2_model):
    cache = tiny_gemma2_model.new_cache(4)
    session = tiny_gemma2_model.session
    assert cache.binding(session) is cache.binding(session)


def test_a_prompt_between_decode_steps_leaves_the_next_step_right(tiny_gemma2_model):
    """Decode steps write their inputs into arrays bound once; a multi-token run between them
    binds its own, and the next step binds the step arrays again."""
    model = tiny_gemma2_model
    ids = model.tokenizer.encode("steps, then a second prompt, then steps again")
    cache = model.new_cache(len(ids))
    model.prefill(cache, ids[:3])
    model.decode_one(cache, ids[3], reuse=True)
    model.prefill(cache, ids[4:8])  # continues the cached tokens
    last = model.decode_one(cache, ids[8], reuse=True)
    np.testing.assert_allclose(last, model.logits(ids[:9])[-1], rtol=1e-4, atol=1e-4)


def test_decode_one_gives_a_fresh_array_unless_told_to_reuse_the_caches(tiny_gemma2_model):
    model = tiny_gemma2_model
    cache = model.new_cache(8)
    model.prefill(cache, [model.tokenizer.bos_id, 5])
    kept = model.decode_one(cache, 6)
    before = kept.copy()
    reused = model.decode_one(cache, 7, reuse=True)
    again = model.decode_one(cache, 8, reuse=True)
    assert np.array_equal(kept, before) and not np.shares_memory(kept, reused)
    assert np.shares_memory(reused, again)  # the cache's array: each step overwrites it
