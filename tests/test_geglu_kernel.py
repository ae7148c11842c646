"""gemma-nb's GeGLU op (gemma_nb/kernels/geglu.cc) against gelu_tanh(gate) * up in float64 and
against the nodes it stands in for in the graph (Split, Gelu with approximate="tanh", Mul), on
each of its paths."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from gemma_nb.session import create_session


def graph_model(nodes, opsets, initializers=()):
    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in "xy")
    graph = helper.make_graph(nodes, "geglu", [x], [y], list(initializers))
    return helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid(domain, 1 if domain else 21) for domain in opsets])


def geglu_session(tmp_path):
    path = tmp_path / "geglu.onnx"
    model = graph_model([helper.make_node("GeGLU", ["x"], ["y"], domain="gemma_nb")],
                           ["", "gemma_nb"])
    path.write_bytes(model.SerializeToString())
    return create_session(path, threads=2, kernel=True)


def standard_session(tmp_path, f: int):
    """What the graph runs without the op."""
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [2], [f, f])
    model = graph_model([
        helper.make_node("Split", ["x", "sizes"], ["gate", "up"], axis=-1),
        helper.make_node("Gelu", ["gate"], ["gelu"], approximate="tanh"),
        helper.make_node("Mul", ["gelu", "up"], ["y"])], [""], [sizes])
    path = tmp_path / "standard.onnx"
    path.write_bytes(model.SerializeToString())
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def gelu_tanh_times_up(x: np.ndarray) -> np.ndarray:
    gate, up = np.split(x.astype(np.float64), 2, axis=-1)
    return 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate**3))) * up


def inputs(shape) -> np.ndarray:
    x = np.random.default_rng(len(shape) + shape[-1]).standard_normal(shape).astype(np.float32) * 3
    if x.size:  # gates at zero, saturated either way, and tiny
        x.reshape(-1, shape[-1])[0, :6] = [0.0, -0.0, 40.0, -40.0, 1e-30, -9.0]
    return x


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512-vnni"])
@pytest.mark.parametrize("shape", [(1, 2 * 9216), (3, 2 * 13), (2, 5, 2 * 2048), (1, 0)],
                         ids=["decode", "tail", "rows-across-tasks", "empty"])
def test_geglu_is_gelu_tanh_of_gate_times_up(tmp_path, monkeypatch, isa, shape):
    """A row of the 2B shape; 13 values, 8 (or 0) in a vector and 5 (13) left; 20,480 outputs,
    so that the second task starts mid-row; no values."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    x = inputs(shape)
    y = geglu_session(tmp_path).run(None, {"x": x})[0]
    expected = gelu_tanh_times_up(x)
    assert y.shape == expected.shape and y.dtype == np.float32
    scale = np.abs(x[..., x.shape[-1] // 2:]) * np.maximum(1, np.abs(x[..., : x.shape[-1] // 2]))
    assert np.all(np.abs(y - expected) <= 1e-6 * scale + 1e-6 * np.abs(expected))
    if x.size:
        standard = standard_session(tmp_path, shape[-1] // 2).run(None, {"x": x})[0]
        assert np.abs(y - standard).max() <= 2e-6 * scale.max()


def test_an_odd_last_axis_is_refused(tmp_path):
    session = geglu_session(tmp_path)
    with pytest.raises(Exception, match="GeGLU: the input's last axis is not gate and up"):
        session.run(None, {"x": np.zeros((2, 7), np.float32)})
