"""fp32 exports of tiny random Gemma-2/Gemma-3 models against transformers (the reference).

The tiny models are scaled so that the attention softcap, the final softcap, the query scalar
(!= head_dim) and the sliding window of 8 all change the logits; sequences are 8x the window.
GGUF exports are checked against twins whose query scalar is head_dim, as GGUF cannot store it
(llama.cpp derives it; see GemmaConfig.from_gguf).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gemma_nb
from gemma_nb import model as model_module
from tiny_models import SLIDING_WINDOW
from tiny_models import reference_greedy, reference_logits

TOLERANCE = 2e-3
SEQUENCE = 8 * SLIDING_WINDOW
GREEDY_TOKENS = 30


def prompt_ids(model: gemma_nb.Model, n: int = SEQUENCE) -> list[int]:
    rng = np.random.default_rng(7)
    return [model.tokenizer.bos_id, *rng.integers(4, model.config.vocab_size, n - 1).tolist()]


def greedy(model: gemma_nb.Model, ids: list[int], n: int) -> list[int]:
    """Greedy tokens through prefill + decode_one (the KV-cache path), ignoring stop tokens."""
    cache = model.new_cache(len(ids) + n)
    logits, out = model.prefill(cache, ids), []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = model.decode_one(cache, out[-1])
    return out


@pytest.fixture(scope="module", params=["gemma2-hf", "gemma2-gguf", "gemma3-hf", "gemma3-gguf"])
def case(request, export_once) -> tuple[gemma_nb.Model, Path]:
    """(our export, the transformers folder it must match)."""
    sources = {"gemma2-hf": ("tiny_gemma2_hf", "tiny_gemma2_hf"),
               "gemma2-gguf": ("tiny_gemma2_gguf", "tiny_gemma2_for_gguf"),
               "gemma3-hf": ("tiny_gemma3_hf", "tiny_gemma3_hf"),
               "gemma3-gguf": ("tiny_gemma3_gguf", "tiny_gemma3_for_gguf")}
    src, reference = (request.getfixturevalue(name) for name in sources[request.param])
    return gemma_nb.load(export_once(src, f"tiny-{request.param}")), reference


def test_logits_match_transformers_at_every_position(case):
    model, reference = case
    ids = prompt_ids(model)
    ours, theirs = model.logits(ids), reference_logits(reference, ids)
    assert ours.shape == theirs.shape == (SEQUENCE, model.config.vocab_size)
    assert np.abs(ours - theirs).max() < TOLERANCE


def test_greedy_tokens_match_transformers(case):
    model, reference = case
    ids = prompt_ids(model, 2 * SLIDING_WINDOW)
    assert greedy(model, ids, GREEDY_TOKENS) == reference_greedy(reference, ids, GREEDY_TOKENS)


def test_scoring_and_generation_agree_on_last_position(case):
    model, _ = case
    ids = prompt_ids(model)
    cache = model.new_cache(len(ids))
    np.testing.assert_allclose(model.prefill(cache, ids), model.logits(ids)[-1], atol=1e-5)


@pytest.mark.parametrize("chunk", [5, 13])
def test_prompt_run_in_chunks_matches_transformers(case, monkeypatch, chunk):
    """Chunks that straddle the sliding window's edges attend to what earlier runs cached."""
    model, reference = case
    monkeypatch.setattr(model_module, "PREFILL_CHUNK", chunk)
    ids = prompt_ids(model)
    cache = model.new_cache(len(ids))
    last = model.prefill(cache, ids)
    assert cache.lengths.tolist() == [len(ids)]
    assert np.abs(last - reference_logits(reference, ids)[-1]).max() < TOLERANCE
