"""The runtime API on a tiny exported model: generate, stream, chat, stop strings, seeds, the KV
cache in place."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from onnx import load_model

import gemma_nb
from gemma_nb import model as model_module
from gemma_nb.folder import GRAPH_FILE


@pytest.fixture(scope="module", params=["fp32", "int4-cpu"])
def model(request) -> gemma_nb.Model:
    """The runtime API on MatMul graphs and on the CPU kernel's (int4-cpu); each export is made
    only when its parameter runs."""
    if request.param == "fp32":
        return request.getfixturevalue("tiny_gemma2_model")
    return gemma_nb.load(request.getfixturevalue("tiny_gemma2_int4_cpu"))


def test_generate_returns_text_ids_and_timings(model):
    result = model.generate("hello world", max_new_tokens=12)
    assert len(result.token_ids) <= 12 and result.finish_reason in ("stop", "length")
    assert result.text == model.tokenizer.decode(result.token_ids)
    t = result.timings
    assert t.prompt_tokens == len(model.tokenizer.encode("hello world"))
    assert t.generated_tokens >= len(result.token_ids) and t.time_to_first_token_s > 0


def test_stream_yields_the_same_text_as_generate(model):
    stream = model.stream("the cat", max_new_tokens=20)
    pieces = list(stream)
    assert "".join(pieces) == model.generate("the cat", max_new_tokens=20).text
    assert stream.result.text == "".join(pieces)


def test_same_seed_same_sample_different_seed_differs(model):
    runs = [model.generate("a", max_new_tokens=15, temperature=1.5, seed=s).token_ids
            for s in (1, 1, 2)]
    assert runs[0] == runs[1] != runs[2]


def test_stop_string_cuts_the_text(model):
    full = model.generate("x", max_new_tokens=30).text
    assert len(full) > 4, "the tiny model should produce some text"
    stop = full[2:4]
    cut = model.generate("x", max_new_tokens=30, stop=[stop])
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"



def test_generation_stops_at_end_of_turn(model, monkeypatch):
    eot = model.tokenizer.end_of_turn_id
    real_decode_one = model.decode_one
    steps = []

    def decode_one_then_end_turn(cache, token, reuse=False):
        steps.append(token)
        logits = real_decode_one(cache, token)
        if len(steps) == 3:
            logits[eot] = logits.max() + 10
        return logits

    monkeypatch.setattr(model, "decode_one", decode_one_then_end_turn)
    result = model.generate("a", max_new_tokens=20)
    assert len(result.token_ids) == 3 and eot not in result.token_ids
    assert result.finish_reason == "stop"


def test_chat_merges_system_prompt_and_answers(model):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    result = model.chat(messages, max_new_tokens=5)
    assert isinstance(result.text, str) and len(result.token_ids) <= 5


def test_kv_cache_is_updated_in_place(model):
    ids = model.tokenizer.encode("in place")
    cache = model.new_cache(len(ids) + 2)
    before = dict(cache.buffers)
    pointers = {k: v.data_ptr() for k, v in cache.buffers.items()}
    model.prefill(cache, ids)
    snapshot = cache.buffers["0.key"].numpy().copy()
    model.decode_one(cache, 5)
    assert cache.buffers == before
    assert {k: v.data_ptr() for k, v in cache.buffers.items()} == pointers
    after = cache.buffers["0.key"].numpy()
    assert not np.array_equal(after[:, :, len(ids)], snapshot[:, :, len(ids)])  # new row written
    np.testing.assert_array_equal(after[:, :, : len(ids)], snapshot[:, :, : len(ids)])


def test_the_logits_output_is_the_heads_own(model):
    """No op after the head only moves the logits: a Reshape there copied the whole vocabulary's
    logits into the caller's bound buffer every step. The tiny Gemma 2 soft-caps them (Div, Tanh,
    Mul); the float graphs' Gemm takes 2-D rows, so they reshape back."""
    graph = load_model(model.path / GRAPH_FILE, load_external_data=False).graph
    producers = {out: node for node in graph.node for out in node.output}
    chain, name = [], "logits"
    while producers[name].name != "lm_head":
        chain.append(producers[name].op_type)
        name = producers[name].input[0]
    after_gemm = ["Reshape"] if producers[name].op_type == "Gemm" else []
    assert chain == ["Mul", "Tanh", "Div", *after_gemm]


def test_ctrl_c_during_a_long_prompt_stops_after_the_running_chunk(model, monkeypatch,
                                                                   python_ctrl_c):
    monkeypatch.setattr(model_module, "PREFILL_CHUNK", 4)
    run_chunk = model._forward

    def chunk_then_ctrl_c(*args, **kwargs):
        logits = run_chunk(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the first chunk ends
        return logits

    monkeypatch.setattr(model, "_forward", chunk_then_ctrl_c)
    cache = model.new_cache(20)
    with pytest.raises(KeyboardInterrupt):
        model.prefill(cache, list(range(2, 22)))
    assert cache.lengths.tolist() == [4]  # the other 16 tokens never ran


def test_only_a_prompts_last_chunk_asks_for_logits(model, monkeypatch):
    monkeypatch.setattr(model_module, "PREFILL_CHUNK", 4)
    rows_asked: list[int] = []
    run = model._forward

    def recording(cache, ids, logits_index, *rest):
        rows_asked.append(len(logits_index))
        return run(cache, ids, logits_index, *rest)

    monkeypatch.setattr(model, "_forward", recording)
    prompt = [model.tokenizer.bos_id, *range(5, 15)]  # 11 tokens: chunks of 4, 4, 3
    assert model.prefill(model.new_cache(11), prompt).shape == (model.config.vocab_size,)
    model.generate(prompt, max_new_tokens=2)
    assert rows_asked == [0, 0, 1, 0, 0, 1]  # prefill, then generate's (its decode steps: _step)


def test_a_long_prompt_streams_an_empty_piece_between_chunks(model, monkeypatch):
    monkeypatch.setattr(model_module, "PREFILL_CHUNK", 4)
    prompt = [model.tokenizer.bos_id, *range(5, 15)]  # 11 tokens: chunks of 4, 4, 3
    whole = model.generate(prompt, max_new_tokens=3)
    pieces = list(model.stream(prompt, max_new_tokens=3))
    assert pieces[:2] == ["", ""] and "".join(pieces) == whole.text

    stream = model.stream(prompt, max_new_tokens=3)
    assert next(iter(stream)) == ""  # the first chunk has run: a consumer may stop here
    stream.close()
    assert stream.result.token_ids == [] and stream.result.text == ""
