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
