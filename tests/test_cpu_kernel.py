"""gemma-nb's own CPU kernel (`--dtype int4-cpu`): each path of Q4MatMul against its numpy model,
Q4Gather, whole tiny models against transformers, the real model against its int4 export, and
the errors of a missing or unbuildable kernel.

The paths are chosen from the CPU, capped by GEMMA_NB_KERNEL_ISA, which is read as a session is
made: a test sets it before loading, and sessions made under different caps keep their own.
"""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from gemma_export import export
from gemma_export.exporter import check_tiles
from gemma_export.quant import QuantizationError, quantize_asymmetric, unpacked_codes
from gemma_export.sources import open_source
from gemma_export.tiles import (alternate_tile_rows, dequantize_tiles, quantize_to_tiles,
                                tiles_from_packed)
from onnx import TensorProto, helper, load_model, numpy_helper, save_model
from test_parity_tiny import prompt_ids
from test_quantized_exports import int8_activations, reference_logits

import gemma_nb
from gemma_nb import kernels
from gemma_nb.folder import CONFIG_FILE, GRAPH_FILE
from gemma_nb.kernels import KernelUnavailableError, kernel_isa
from gemma_nb.kernels.build import KernelBuildError, build, library_name, ort_headers
from gemma_nb.session import ProviderError, create_session

ISAS = ("exact", "generic", "avx2", "avx512-vnni", "amx")
N, K = 80, 256  # 5 tiles of 16 outputs: AMX takes them in pairs and one alone; prompts, 3 and 2


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (nearest, ties to even), kept as float32."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def prompt_form_activations(x: np.ndarray) -> np.ndarray:
    """avx512-vnni's prompt form: int8 per block of 32, the scale the least power of two at or
    above absmax / 127."""
    blocks = x.reshape(x.shape[0], -1, 32)
    mantissa, exponent = np.frexp(np.abs(blocks).max(-1, keepdims=True) / np.float32(127))
    scale = np.ldexp(np.float32(1), np.clip(np.where(mantissa == 0.5, exponent - 1, exponent), -126, 104))
    return (np.rint(blocks / scale) * scale).reshape(x.shape)


def one_op_session(tmp_path, arrays, node: helper.NodeProto, inputs, *outputs):
    graph = helper.make_graph([node], "one_op", inputs, list(outputs),
                              [numpy_helper.from_array(a, name) for name, a in arrays.items()])
    model = helper.make_model(graph, ir_version=10, opset_imports=[
        helper.make_opsetid("", 21), helper.make_opsetid("gemma_nb", 1)])
    save_model(model, tmp_path / "model.onnx")
    return create_session(tmp_path / "model.onnx", threads=2, kernel=True)


@functools.cache
def tiled_weight(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((n, K)).astype(np.float32) + 0.3  # one-sided blocks too
    return dict(zip(("tiles", "scales", "zeros"), quantize_to_tiles(w)))


@pytest.fixture(scope="module")
def weight():
    return tiled_weight(N)


def matmul_session(tmp_path, weight, **attrs):
    node = helper.make_node("Q4MatMul", ["x", "tiles", "scales", "zeros"], ["y"],
                            domain="gemma_nb", **attrs)
    return one_op_session(
        tmp_path, weight, node,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows", [1, 3, 7, 8, 16, 19, 31, 32, 40, 57])
@pytest.mark.parametrize("n", [N, 112])  # 112: 7 tiles, the prompt form's 3, 3 and 1
def test_each_path_computes_its_documented_arithmetic(tmp_path, monkeypatch, isa, rows, n):
    """exact: fp32; generic and avx512-vnni: int8 activations per block of 32 (rows 8, 4, 2 and
    1 at a time; from 32 rows, avx512-vnni's prompt form: codes unpacked once, 3 tile rows a
    task, 4 rows a pass and the rest one by one, power-of-two scales); amx: groups of 16 rows in bf16 (in pairs of groups, and one alone), the
    rows left over as avx512-vnni."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    weight = tiled_weight(n)
    session = matmul_session(tmp_path, weight)
    taken = kernel_isa()
    assert taken == isa or ISAS.index(taken) < ISAS.index(isa)  # a CPU without it: the next
    x = np.random.default_rng(rows).standard_normal((rows, K)).astype(np.float32)
    session.run(None, {"x": -x})  # an output left unwritten then holds other numbers
    y = session.run(None, {"x": x})[0]
    w = dequantize_tiles(weight["tiles"], weight["scales"], weight["zeros"])
    on_amx = rows // 16 * 16 if taken == "amx" else 0
    rest = x[on_amx:]
    if taken == "avx512-vnni" and rows >= 32:
        rest = prompt_form_activations(rest)
    elif taken != "exact":
        rest = int8_activations(rest, 32)
    modelled = np.concatenate([bf16(x[:on_amx]) @ bf16(w).T, rest @ w.T])
    exact = x @ w.T
    scale = np.abs(exact).max()
    assert np.abs(y - modelled).max() < 1e-5 * scale, (taken, np.abs(y - modelled).max())
    if taken != "exact":  # the approximation is really taken, and stays small
        assert np.abs(y - exact).max() > 10 * np.abs(y - modelled).max()
        assert np.abs(y - exact).max() < 0.02 * scale


def test_the_prompt_form_keeps_zero_tiny_and_huge_blocks_finite(tmp_path, weight, monkeypatch):
    """Its scales are powers of two added to a float's bits: a block of zeros must give 0, and
    blocks far from 1 must neither overflow the scale nor lose the rest of the row."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "avx512-vnni")
    session = matmul_session(tmp_path, weight)
    x = np.random.default_rng(4).standard_normal((40, K)).astype(np.float32)
    x[:, :32] = 0
    x[:10, 32:64] *= 1e-37
    x[10:20, 32:64] *= 1e30
    x[20:30] = 0
    y = session.run(None, {"x": x})[0]
    w = dequantize_tiles(weight["tiles"], weight["scales"], weight["zeros"])
    modelled = (prompt_form_activations(x) if kernel_isa() == "avx512-vnni"
                else int8_activations(x, 32)) @ w.T
    assert np.isfinite(y).all() and (y[20:30] == 0).all()
    np.testing.assert_allclose(y, modelled, rtol=1e-5, atol=1e-5 * np.abs(modelled[:10]).max())


def residual_matmul_session(tmp_path, weight, **attrs):
    node = helper.make_node("Q4MatMul", ["x", "tiles", "scales", "zeros", "norm", "residual",
                                         "next_norm"], ["y", "sum"], domain="gemma_nb", **attrs)
    return one_op_session(
        tmp_path, weight, node,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
         for n in ("x", "norm", "residual", "next_norm")],
        *(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "sum")))


def rms_normed(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * weight


@pytest.mark.parametrize("isa", ["exact", "avx512-vnni"])
@pytest.mark.parametrize("rows", [1, 15, 16, 40])  # from 16 rows, the rows run on the pool
def test_a_residual_matmul_adds_its_normalized_product_and_normalizes_the_sum(
        tmp_path, weight, monkeypatch, isa, rows):
    """With norm, residual and next_norm (a Gemma block's o or down projection), the op gives
    sum = residual + rms_norm(y) * norm and rms_norm(sum) * next_norm, y its plain product."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, K)).astype(np.float32)
    residual = rng.standard_normal((rows, N)).astype(np.float32) * 5
    norm, next_norm = (rng.uniform(0.5, 2.0, N).astype(np.float32) for _ in range(2))
    plain = matmul_session(tmp_path, weight).run(None, {"x": x})[0]
    got, got_sum = residual_matmul_session(tmp_path, weight, norm_epsilon=1e-6).run(
        None, {"x": x, "norm": norm, "residual": residual, "next_norm": next_norm})
    expected_sum = residual + rms_normed(plain, norm, 1e-6)
    expected = rms_normed(expected_sum, next_norm, 1e-6)
    np.testing.assert_allclose(got_sum, expected_sum, rtol=1e-5, atol=1e-5 * np.abs(expected_sum).max())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("attrs,sizes,message", [
    ({}, (N, N, N), "needs the attribute norm_epsilon"),
    ({"norm_epsilon": 1e-6}, (N - 16, N, N), "each hold one value for each of the weight's 80"),
    ({"norm_epsilon": 1e-6}, (N, N - 16, N), "residual must have the output's shape"),
])
def test_a_bad_residual_matmul_fails_the_run_with_a_reason(tmp_path, weight, attrs, sizes,
                                                           message):
    session = residual_matmul_session(tmp_path, weight, **attrs)
    norm, residual, next_norm = (np.ones(n, np.float32) for n in sizes)
    with pytest.raises(Exception, match=message):
        session.run(None, {"x": np.ones((1, K), np.float32), "norm": norm,
                           "residual": residual[None], "next_norm": next_norm})


def test_a_residual_matmul_needs_all_its_parts(tmp_path, weight):
    node = helper.make_node("Q4MatMul", ["x", "tiles", "scales", "zeros", "norm"], ["y"],
                            domain="gemma_nb", norm_epsilon=1e-6)
    session = one_op_session(
        tmp_path, weight, node,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "norm")],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    with pytest.raises(Exception, match="norm, residual and next_norm come together"):
        session.run(None, {"x": np.ones((1, K), np.float32), "norm": np.ones(N, np.float32)})


def gelu_tanh(gate: np.ndarray) -> np.ndarray:
    gate = gate.astype(np.float64)
    return 0.5 * gate * (1 + np.tanh(np.sqrt(2 / np.pi) * (gate + 0.044715 * gate ** 3)))


def geglu_of_pairs(product: np.ndarray) -> np.ndarray:
    """gelu_tanh(gate) * up of a product whose outputs alternate 16 gate and the same 16 up."""
    pairs = product.reshape(*product.shape[:-1], -1, 2, 16)
    flat = (*product.shape[:-1], -1)
    return gelu_tanh(pairs[..., 0, :].reshape(flat)) * pairs[..., 1, :].reshape(flat)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("rows", [1, 7, 16, 19, 32, 40])
@pytest.mark.parametrize("n", [64, 96, 224])  # 2, 3 and 7 pairs of gate and up tile rows
def test_a_geglu_matmul_gives_gelu_tanh_of_each_gate_tile_row_times_the_up_one_after_it(
        tmp_path, monkeypatch, isa, rows, n):
    """With geglu=1 (the MLP's gate|up projection) a task computes pairs of tile rows (a prompt
    task 3 pairs, as 3 tile rows and 3 more) and writes their GeGLU; the products are the plain
    op's on the same path, whose arithmetic the tests above check."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
    weight = tiled_weight(n)
    x = np.random.default_rng(rows).standard_normal((rows, K)).astype(np.float32)
    plain = matmul_session(tmp_path, weight).run(None, {"x": x})[0]
    session = matmul_session(tmp_path, weight, geglu=1)
    session.run(None, {"x": -x})  # an output left unwritten then holds other numbers
    y = session.run(None, {"x": x})[0]
    expected = geglu_of_pairs(plain)
    assert y.shape == (rows, n // 2)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize("shape", [(3, K), (2, 5, K)])
def test_the_exporters_gate_up_weight_gives_the_mlps_gelu_tanh_of_gate_times_up(
        tmp_path, monkeypatch, shape):
    """alternate_tile_rows (the exporter's gate|up weight) against gate and up quantized apart
    (blocks are per row), on the exact path."""
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "exact")
    rng = np.random.default_rng(8)
    gate, up = (rng.standard_normal((48, K)).astype(np.float32) for _ in range(2))
    weight = dict(zip(("tiles", "scales", "zeros"),
                      quantize_to_tiles(alternate_tile_rows(gate, up))))
    x = rng.standard_normal(shape).astype(np.float32)
    y = matmul_session(tmp_path, weight, geglu=1).run(None, {"x": x})[0]
    gate_q, up_q = (dequantize_tiles(*quantize_to_tiles(w)) for w in (gate, up))
    expected = gelu_tanh(x @ gate_q.T) * (x @ up_q.T)
    assert y.shape == (*shape[:-1], 48)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_a_geglu_matmul_needs_gate_and_up_of_one_size(tmp_path, weight):
    session = matmul_session(tmp_path, weight, geglu=1)  # N = 80: 5 tile rows
    with pytest.raises(Exception, match="geglu needs a weight of tile rows in gate and up pairs"):
        session.run(None, {"x": np.ones((1, K), np.float32)})


def test_a_geglu_matmul_takes_no_residual(tmp_path, weight):
    session = residual_matmul_session(tmp_path, weight, norm_epsilon=1e-6, geglu=1)
    ones = np.ones(N, np.float32)
    with pytest.raises(Exception, match="geglu and the residual inputs do not go together"):
        session.run(None, {"x": np.ones((1, K), np.float32), "norm": ones,
                           "residual": ones[None], "next_norm": ones})


def test_sessions_made_under_different_caps_keep_their_own_paths(tmp_path, weight, monkeypatch):
    sessions = {}
    for isa in ("exact", "generic"):
        monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", isa)
        (tmp_path / isa).mkdir()
        sessions[isa] = matmul_session(tmp_path / isa, weight)
    x = np.random.default_rng(2).standard_normal((3, K)).astype(np.float32)
    w = dequantize_tiles(weight["tiles"], weight["scales"], weight["zeros"])
    scale = np.abs(x @ w.T).max()
    for isa, activations in (("exact", x), ("generic", int8_activations(x, 32))):
        y = sessions[isa].run(None, {"x": x})[0]
        assert np.abs(y - activations @ w.T).max() < 1e-5 * scale, isa


def weight_inputs_session(tmp_path):
    """Q4MatMul with its weight given at run time, as graph inputs, not initializers."""
    node = helper.make_node("Q4MatMul", ["x", "tiles", "scales", "zeros"], ["y"], domain="gemma_nb")
    kinds = {"x": TensorProto.FLOAT, "tiles": TensorProto.UINT8, "scales": TensorProto.FLOAT16,
             "zeros": TensorProto.UINT8}
    return one_op_session(
        tmp_path, {}, node, [helper.make_tensor_value_info(n, t, None) for n, t in kinds.items()],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None))


def test_a_weight_given_at_run_time_is_read_and_checked_each_run(tmp_path, weight):
    """The kernel reads an initializer weight once, as the session is made; one that is a graph
    input is read, and its shapes checked, on every run."""
    x = np.random.default_rng(3).standard_normal((2, K)).astype(np.float32)
    expected = matmul_session(tmp_path, weight).run(None, {"x": x})[0]
    session = weight_inputs_session(tmp_path)  # writes over model.onnx: the first session is made
    np.testing.assert_array_equal(session.run(None, {"x": x, **weight})[0], expected)
    other = tiled_weight(112)
    assert session.run(None, {"x": x, **other})[0].shape == (2, 112)
    with pytest.raises(Exception, match="not \\[N/16, K/32, 256\\] tiles"):
        session.run(None, {"x": x, **weight, "zeros": weight["zeros"][:, :4]})


def test_a_norm_initializer_of_the_wrong_size_fails_each_run(tmp_path, weight):
    node = helper.make_node("Q4MatMul", ["x", "tiles", "scales", "zeros", "norm", "residual",
                                         "next_norm"], ["y", "sum"], domain="gemma_nb",
                            norm_epsilon=1e-6)
    norms = {"norm": np.ones(N - 16, np.float32), "next_norm": np.ones(N, np.float32)}
    session = one_op_session(
        tmp_path, {**weight, **norms}, node,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", "residual")],
        *(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "sum")))
    for _ in range(2):
        with pytest.raises(Exception, match="each hold one value for each of the weight's 80"):
            session.run(None, {"x": np.ones((1, K), np.float32),
                               "residual": np.ones((1, N), np.float32)})


def test_batched_input_keeps_its_leading_dimensions(tmp_path, weight):
    session = matmul_session(tmp_path, weight)
    x = np.random.default_rng(1).standard_normal((2, 20, K)).astype(np.float32)
    y = session.run(None, {"x": x})[0]
    assert y.shape == (2, 20, N)
    flat = session.run(None, {"x": x.reshape(40, K)})[0]  # the same rows, the same paths
    np.testing.assert_array_equal(y.reshape(40, N), flat)


def gather_session(tmp_path, weight):
    node = helper.make_node("Q4Gather", ["tiles", "scales", "zeros", "ids"], ["rows"],
                            domain="gemma_nb")
    return one_op_session(
        tmp_path, weight, node, [helper.make_tensor_value_info("ids", TensorProto.INT64, None)],
        helper.make_tensor_value_info("rows", TensorProto.FLOAT, None))


def test_gather_gives_the_dequantized_rows(tmp_path, weight):
    session = gather_session(tmp_path, weight)
    ids = np.array([[0, 17, N - 1], [5, 5, 64]], np.int64)
    rows = session.run(None, {"ids": ids})[0]
    w = dequantize_tiles(weight["tiles"], weight["scales"], weight["zeros"])
    np.testing.assert_allclose(rows, w[ids], rtol=1e-6, atol=0)


def test_a_token_id_outside_the_table_fails_the_run_not_the_process(tmp_path, weight):
    session = gather_session(tmp_path, weight)
    with pytest.raises(Exception, match=f"token id {N} is outside 0..{N - 1}"):
        session.run(None, {"ids": np.array([3, N], np.int64)})
    assert session.run(None, {"ids": np.array([3], np.int64)})[0].shape == (1, K)


def test_tiles_hold_the_int4_codes_and_zero_points():
    """Against int4's own codes and zero points (quant.py), with the scales rounded to fp16."""
    w = np.random.default_rng(6).standard_normal((N, K)).astype(np.float32) - 0.4
    packed = quantize_asymmetric(w, 4, 32)
    codes, zero = unpacked_codes(packed)
    assert len(np.unique(zero)) > 4  # the zero points vary, so their nibbles are checked
    scale = packed.scales.reshape(N, -1).astype(np.float16).astype(np.float32)[..., None]
    expected = ((codes.reshape(N, -1, 32) - zero[..., None].astype(np.float32)) * scale)
    tiled = dequantize_tiles(*tiles_from_packed(packed))
    np.testing.assert_allclose(tiled, expected.reshape(N, K), rtol=0, atol=1e-6 * np.abs(w).max())


def test_a_folder_of_the_first_tile_layout_asks_to_be_exported_again(tmp_path,
                                                                    tiny_gemma2_int4_cpu):
    old = tmp_path / "old"
    shutil.copytree(tiny_gemma2_int4_cpu, old)
    info = json.loads((old / CONFIG_FILE).read_text())
    del info["quantization"]["tile_layout"]  # what the first layout's exports wrote
    (old / CONFIG_FILE).write_text(json.dumps(info))
    with pytest.raises(gemma_nb.ModelFolderError, match="tiles of layout 1.*export it again"):
        gemma_nb.load(old)


def test_a_weight_that_is_not_tiles_is_refused(tmp_path, weight):
    bad = {**weight, "zeros": weight["zeros"][:, :4]}
    session = matmul_session(tmp_path, bad)
    with pytest.raises(Exception, match="not \\[N/16, K/32, 256\\] tiles"):
        session.run(None, {"x": np.zeros((1, K), np.float32)})


# A key or value within float32 noise of a float16 rounding boundary may round either way in two
# implementations; these deliberately sharp models (logits up to ~37) turn such one-step
# differences into up to ~0.04 of a logit (median ~0.003-0.007, against ~0.11-0.13 for a
# reference on unrounded keys and values).
FP16_CACHE_TOLERANCE = 0.05


@pytest.mark.parametrize("fixture", ["tiny_gemma2_hf", "tiny_gemma3_hf"])
def test_int4_cpu_model_matches_transformers_on_the_same_weights(request, export_once,
                                                                   monkeypatch, fixture):
    """The whole graph on the exact path against transformers running the tiled weights on keys
    and values rounded to float16, as the graph's cache holds them. The same weights with fp32
    scales and zero points (plain int4), or on unrounded keys and values, are 10x further off,
    so the layout's fp16 scales and zero points and the float16 cache are what is checked. The
    graph runs the kernel's own ops: a DecoderLayer a block (with the MLP's gelu * up and Gemma
    3's q/k norms in it), Q4Gather and the Q4MatMul head."""
    hf_dir = request.getfixturevalue(fixture)
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "exact")
    model = gemma_nb.load(export_once(hf_dir, fixture, "int4-cpu"))
    assert model.info["quantization"] == {"block_size": 32, "tile_rows": 16, "embedding_bits": 4,
                                          "tile_layout": 2}
    graph = load_model(model.path / GRAPH_FILE, load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("DecoderLayer") == model.config.num_layers
    assert set(ops) == {"Q4Gather", "Mul", "SimplifiedLayerNormalization", "DecoderLayer", "Gather",
                        "Q4MatMul"} | ({"Tanh", "Div"} if model.config.final_softcap else set())
    norms = [node.name for node in graph.node if "LayerNormalization" in node.op_type]
    assert norms == ["layers.0.input_norm_1"]  # the rest in the DecoderLayers
    source = open_source(hf_dir)

    def tiled(name: str) -> np.ndarray:
        return dequantize_tiles(*quantize_to_tiles(source.tensor(name)))

    ids = prompt_ids(model)
    got = model.logits(ids)
    assert model.cache_dtype == np.float16
    error = np.abs(got - reference_logits(hf_dir, ids, tiled, torch.float16)).max(-1)
    assert error.max() < FP16_CACHE_TOLERANCE, error
    for other in (reference_logits(hf_dir, ids, source.tensor, torch.float16),
                  reference_logits(hf_dir, ids, tiled)):
        assert np.median(np.abs(got - other).max(-1)) > 10 * np.median(error)


def test_int4_cpu_fast_paths_prefill_and_decode_near_the_exact_path(tiny_gemma2_int4_cpu,
                                                                     monkeypatch):
    """A prefill (AMX where the CPU has it, the leftover rows on AVX-512 VNNI) and decode steps
    through the KV cache, against the exact path's logits for the whole sequence: within what
    int8/bf16 activations cost on this deliberately sharp model (logits up to ~25; the paths
    differ by ~1.4 in the median position, test_parity explains why the model is so sharp)."""
    folder = tiny_gemma2_int4_cpu
    ids = list(range(4, 44))
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "exact")
    expected = gemma_nb.load(folder).logits(ids)[-4:]
    monkeypatch.delenv("GEMMA_NB_KERNEL_ISA")
    model = gemma_nb.load(folder)
    cache = model.new_cache(len(ids))
    got = [model.prefill(cache, ids[:-3])] + [model.decode_one(cache, t) for t in ids[-3:]]
    error = np.abs(np.array(got) - expected).max(-1)
    assert error.max() < 0.5 * np.abs(expected).max(), error


@pytest.mark.slow
def test_real_model_int4_cpu_scores_like_its_int4_export(export_once, real_gguf, real_int4_dir):
    """The Gemma 3 270M: int4-cpu holds the int4 export's codes (with fp16 scales), so
    both give nearly the same log-likelihood to real text, and the same greedy answer."""
    cpu = gemma_nb.load(export_once(real_gguf, "gemma3-270m", "int4-cpu"))
    int4 = gemma_nb.load(real_int4_dir)
    text = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, "
            "France. It is named after the engineer Gustave Eiffel, whose company designed and "
            "built the tower from 1887 to 1889.")
    ids = [cpu.tokenizer.bos_id, *cpu.tokenizer.encode(text)]

    def mean_nll(model: gemma_nb.Model) -> float:
        logits = model.logits(ids)[:-1].astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return float(-log_probs[np.arange(len(ids) - 1), ids[1:]].mean())

    assert abs(mean_nll(cpu) - mean_nll(int4)) < 0.05 * mean_nll(int4)
    prompt = "The capital of France is"
    assert (cpu.generate(prompt, max_new_tokens=8, temperature=0).text
            == int4.generate(prompt, max_new_tokens=8, temperature=0).text)


def test_tiles_need_outputs_in_sixteens(tiny_gemma2_hf):
    import dataclasses

    cfg = open_source(tiny_gemma2_hf).config
    check_tiles(cfg)
    with pytest.raises(QuantizationError, match="vocab_size = 390; use --dtype int4"):
        check_tiles(dataclasses.replace(cfg, vocab_size=390))


@pytest.mark.parametrize("kwargs,message", [
    ({"block_size": 64}, "blocks of 32"),
    ({"embedding_bits": 8}, "embedding bits apply to --dtype int4 only"),
])
def test_bad_int4_cpu_options_fail_before_any_work(tiny_gemma2_hf, tmp_path, kwargs, message):
    with pytest.raises(QuantizationError, match=message):
        export(tiny_gemma2_hf, tmp_path / "out", dtype="int4-cpu", progress=False, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_int4_cpu_folders_refuse_gpu_providers(tiny_gemma2_int4_cpu):
    with pytest.raises(ProviderError, match="run on the CPU only; export the model with --dtype "
                                            "int4 for cuda"):
        gemma_nb.load(tiny_gemma2_int4_cpu, provider="cuda")


def test_a_missing_library_says_how_to_build_it(tmp_path, monkeypatch, tiny_gemma2_int4_cpu):
    monkeypatch.setattr(kernels, "library_dirs", lambda: [tmp_path / "package", tmp_path / "cache"])
    folder = tiny_gemma2_int4_cpu
    with pytest.raises(KernelUnavailableError, match="not built in this install. Build it with "
                                                     "`gemma-nb build-kernel`"):
        gemma_nb.load(folder)
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "build-error.txt").write_text("no C++ compiler (c++ or g++) on PATH\n")
    with pytest.raises(KernelUnavailableError, match="the install's build failed: no C\\+\\+ comp"):
        gemma_nb.load(folder)


def test_build_kernel_compiles_the_library_into_a_folder(tmp_path):
    library = build(tmp_path)
    assert library == tmp_path / library_name()
    assert [p.name for p in tmp_path.iterdir()] == [library.name]  # no scratch left behind
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(library))  # loads into this onnxruntime


def test_the_build_kernel_command_prints_the_library_and_its_path_or_one_error_line(
        tmp_path, monkeypatch, capsys):
    from gemma_nb.cli import main

    assert main(["build-kernel", "--out", str(tmp_path / "built")]) == 0
    assert capsys.readouterr().out.strip() == (f"{tmp_path / 'built' / library_name()} "
                                               f"(path on this CPU: {kernel_isa()})")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert main(["build-kernel", "--out", str(tmp_path / "other")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("gemma-nb: error: the CPU kernel was not built: no C++ compiler")
    assert len(error.strip().splitlines()) == 1


def test_build_errors_are_one_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(KernelBuildError, match="no C\\+\\+ compiler"):
        build(tmp_path)
    monkeypatch.setenv("GEMMA_NB_ORT_INCLUDE", str(tmp_path))
    with pytest.raises(KernelBuildError, match="has no onnxruntime_c_api.h"):
        ort_headers()
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_isa_cap_is_refused(monkeypatch):
    monkeypatch.setenv("GEMMA_NB_KERNEL_ISA", "avx9000")
    with pytest.raises(gemma_nb.GemmaError, match="must be exact, generic, avx2, avx512-vnni or amx"):
        kernel_isa()
