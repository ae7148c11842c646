"""gemma-nb's DecoderLayer op (gemma_nb/kernels/decoder_layer.cc), the block of every `int4-cpu`
graph, against the five ops it stands for: each DecoderLayer of an exported tiny model taken
apart into Q4MatMul q|k|v, Attention, Q4MatMul o (norms and residual), Q4MatMul gate|up (geglu)
and Q4MatMul down (norms and residual) on the same initializers. The ops on their own are tested
against numpy and onnxruntime's GroupQueryAttention (test_cpu_kernel.py,
test_attention_kernel.py); the whole graph against transformers (test_cpu_kernel.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, load_model, save_model

import gemma_nb
from gemma_nb.folder import GRAPH_FILE

LAYER_ONLY = {"norm_epsilon"}  # the attributes Attention does not take


def five_ops(node) -> list:
    """The DecoderLayer `node` as the five nodes it runs, on its inputs and outputs."""
    i, name = list(node.input), node.name.removesuffix(".layer")
    qkv, heads, o_out, o_sum, ffw = (f"{name}/{part}" for part in ("qkv", "heads", "o", "h", "ffw"))
    epsilon = next(a.f for a in node.attribute if a.name == "norm_epsilon")
    attention = helper.make_node("Attention", [qkv, "", "", *i[18:]], [heads, *node.output[2:]],
                                 domain="gemma_nb", name=f"{name}.attn")
    attention.attribute.extend(a for a in node.attribute if a.name not in LAYER_ONLY)
    return [
        helper.make_node("Q4MatMul", [i[0], *i[2:5]], [qkv], domain="gemma_nb"),
        attention,
        helper.make_node("Q4MatMul", [heads, *i[5:8], i[14], i[1], i[15]], [o_out, o_sum],
                         domain="gemma_nb", norm_epsilon=epsilon),
        helper.make_node("Q4MatMul", [o_out, *i[8:11]], [ffw], domain="gemma_nb", geglu=1),
        helper.make_node("Q4MatMul", [ffw, *i[11:14], i[16], o_sum, i[17]], list(node.output[:2]),
                         domain="gemma_nb", norm_epsilon=epsilon),
    ]


def taken_apart(folder: Path, into: Path) -> Path:
    """A copy of the folder whose graph runs five ops a block (the weights file hard-linked)."""
    into.mkdir()
    for item in folder.iterdir():
        if item.name != GRAPH_FILE:
            os.link(item, into / item.name)
    model = load_model(folder / GRAPH_FILE, load_external_data=False)
    nodes = []
    for node in model.graph.node:
        nodes.extend(five_ops(node) if node.op_type == "DecoderLayer" else [node])
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    save_model(model, into / GRAPH_FILE)
    return into


@pytest.mark.parametrize("fixture", ["tiny_gemma2_hf", "tiny_gemma3_hf"])
def test_decoder_layer_gives_the_five_ops_logits_bit_for_bit(request, export_once, tmp_path,
                                                             fixture):
    """Every position of a prompt; a prefill, then decode steps through a cache that grows; a
    right-padded batch sampled at a temperature (Gemma 2's soft caps and sliding window, Gemma
    3's q/k norms): the same logits to the bit, so the same tokens and log-probabilities."""
    folder = export_once(request.getfixturevalue(fixture), fixture, "int4-cpu")
    fused, apart = gemma_nb.load(folder), gemma_nb.load(taken_apart(folder, tmp_path / "apart"))
    for model, op in ((fused, "DecoderLayer"), (apart, "Attention")):
        graph = load_model(model.path / GRAPH_FILE, load_external_data=False).graph
        assert [n.op_type for n in graph.node].count(op) == fused.config.num_layers
    prompt = list(range(3, 40))
    np.testing.assert_array_equal(fused.logits(prompt), apart.logits(prompt))
    caches = [m.new_cache(8) for m in (fused, apart)]
    first = [m.prefill(c, prompt) for m, c in zip((fused, apart), caches)]
    np.testing.assert_array_equal(*first)
    for token in (7, 8, 9):
        steps = [m.decode_one(c, token) for m, c in zip((fused, apart), caches)]
        np.testing.assert_array_equal(*steps)
    batch = [prompt, list(range(50, 61))]
    runs = [m.generate_batch(batch, max_new_tokens=6, temperature=0.8, seed=3)
            for m in (fused, apart)]
    assert [(g.token_ids, g.logprobs) for g in runs[0]] == [(g.token_ids, g.logprobs)
                                                            for g in runs[1]]
