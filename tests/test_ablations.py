"""Each classic Gemma mistake, injected into the exported graph, must fail the parity check.

This shows the reference comparison in test_parity_tiny.py is sharp enough to catch them.
The mistakes are made by editing a copy of the exported ONNX graph (weights untouched).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import gemma_nb
from gemma_nb.folder import GRAPH_FILE
from test_parity_tiny import TOLERANCE, prompt_ids
from tiny_models import reference_logits


def attention_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "GroupQueryAttention"]


def set_attribute(node: onnx.NodeProto, name: str, value: object) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, helper.make_attribute(name, value)])


def get_attribute(node: onnx.NodeProto, name: str) -> object:
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def no_sliding_window(graph: onnx.GraphProto) -> None:
    for node in attention_nodes(graph):
        set_attribute(node, "local_window_size", -1)


def wrong_sliding_parity(graph: onnx.GraphProto) -> None:
    """Odd layers local, even layers global: the opposite of Gemma-2."""
    nodes = attention_nodes(graph)
    windows = [get_attribute(n, "local_window_size") for n in nodes]
    for i, node in enumerate(nodes):
        set_attribute(node, "local_window_size", windows[i ^ 1])


def no_attention_softcap(graph: onnx.GraphProto) -> None:
    for node in attention_nodes(graph):
        set_attribute(node, "softcap", 0.0)


def norms_without_plus_one(graph: onnx.GraphProto) -> None:
    """Use the stored `w` as the multiplier instead of `1 + w`."""
    graph.initializer.append(numpy_helper.from_array(np.float32(1.0), "ablation_one"))
    for k, node in enumerate([n for n in graph.node
                              if n.op_type == "SimplifiedLayerNormalization"]):
        minus_one = f"ablation_w_minus_one_{k}"
        graph.node.append(helper.make_node("Sub", [node.input[1], "ablation_one"], [minus_one]))
        node.input[1] = minus_one
    nodes = list(graph.node)  # keep the graph topologically sorted: Subs first
    del graph.node[:]
    graph.node.extend([n for n in nodes if n.op_type == "Sub" and n.output[0].startswith(
        "ablation_")] + [n for n in nodes if not n.output[0].startswith("ablation_")])


def interleaved_rope(graph: onnx.GraphProto) -> None:
    for node in attention_nodes(graph):
        set_attribute(node, "rotary_interleaved", 1)


def ablated_copy(folder: Path, out: Path, mistake: Callable[[onnx.GraphProto], None]) -> Path:
    shutil.copytree(folder, out, ignore=shutil.ignore_patterns(GRAPH_FILE))
    model = onnx.load(folder / GRAPH_FILE, load_external_data=False)
    mistake(model.graph)
    onnx.save_model(model, out / GRAPH_FILE)
    return out


@pytest.mark.parametrize("mistake", [no_sliding_window, wrong_sliding_parity,
                                     no_attention_softcap, norms_without_plus_one,
                                     interleaved_rope])
def test_mistake_breaks_parity(mistake, export_once, tiny_gemma2_hf, tmp_path):
    folder = export_once(tiny_gemma2_hf, "tiny-gemma2-hf")
    model = gemma_nb.load(ablated_copy(folder, tmp_path / mistake.__name__, mistake))
    ids = prompt_ids(model)
    error = np.abs(model.logits(ids) - reference_logits(tiny_gemma2_hf, ids)).max()
    assert error > 10 * TOLERANCE, f"{mistake.__name__} went unnoticed (max error {error:.2e})"


def test_unablated_copy_still_matches(export_once, tiny_gemma2_hf, tmp_path):
    """The copying itself changes nothing: only the mistake breaks parity."""
    folder = export_once(tiny_gemma2_hf, "tiny-gemma2-hf")
    model = gemma_nb.load(ablated_copy(folder, tmp_path / "same", lambda graph: None))
    ids = prompt_ids(model)
    assert np.abs(model.logits(ids) - reference_logits(tiny_gemma2_hf, ids)).max() < TOLERANCE
