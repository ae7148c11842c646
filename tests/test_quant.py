"""MatMulNBits blocks (`gemma_export.quant`) against independent references.

- GGUF re-encoding: bit-exact against `gguf.quants.dequantize` (llama.cpp's numpy reference),
  on blocks from `gguf.quants.quantize` and on raw random blocks (every code, valid fp16 scales);
- the layout (nibble order, scales, zero points): against ONNX Runtime's own MatMulNBits;
- float weights: error bounds of the round-to-nearest searches (symmetric, and with zero
  points).
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize, quantize
from onnx import TensorProto, helper, numpy_helper

from gemma_export import ExportError
from gemma_export.quant import (
    REENCODINGS,
    PackedWeight,
    QuantizationError,
    dequantize_packed,
    pack_zero_points,
    quantize_asymmetric,
    quantize_symmetric,
    reencode_gguf,
    stack_rows,
)

Q = GGMLQuantizationType
EXACT = (Q.Q4_0, Q.Q8_0, Q.Q5_0, Q.Q6_K)
REQUANTIZED = (Q.Q4_1, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K)
QUANTIZABLE_BY_GGUF = (Q.Q4_0, Q.Q8_0, Q.Q5_0, Q.Q4_1, Q.Q5_1)  # gguf 0.19 has no K quantizers
# Byte offsets of the fp16 fields (d, dmin / m) in each block (gguf/quants.py).
FP16_FIELDS = {Q.Q4_0: (0,), Q.Q8_0: (0,), Q.Q5_0: (0,), Q.Q4_1: (0, 2), Q.Q5_1: (0, 2),
               Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def random_blocks(qtype: GGMLQuantizationType, rows: int, blocks: int, seed: int = 0) -> np.ndarray:
    """Raw GGUF bytes [rows, blocks * type_size]: random codes, finite fp16 scales (some 0)."""
    rng = np.random.default_rng(seed)
    type_size = GGML_QUANT_SIZES[qtype][1]
    data = rng.integers(0, 256, (rows, blocks, type_size), dtype=np.uint8)
    for offset in FP16_FIELDS[qtype]:
        d = (rng.standard_normal((rows, blocks)) * 0.01).astype(np.float16)
        d[0, 0] = 0
        data[..., offset : offset + 2] = d.view(np.uint8).reshape(rows, blocks, 2)
    return data.reshape(rows, -1)


def weights(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Gaussian weights with a few outliers, as in real checkpoints."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(shape).astype(np.float32) * 0.02
    w.flat[rng.integers(0, w.size, w.size // 500)] *= 20
    return w


# ---------------------------------------------------------------- GGUF: exact types

@pytest.mark.parametrize("qtype", EXACT, ids=lambda t: t.name)
def test_exact_types_reproduce_gguf_bit_for_bit_on_random_blocks(qtype):
    data = random_blocks(qtype, rows=6, blocks=3 if qtype == Q.Q6_K else 8)
    p, exact = reencode_gguf(qtype, data)
    assert exact and p.zero_points is None
    assert np.array_equal(dequantize_packed(p), dequantize(data, qtype))


@pytest.mark.parametrize("qtype", [t for t in EXACT if t in QUANTIZABLE_BY_GGUF],
                         ids=lambda t: t.name)
def test_exact_types_reproduce_gguf_bit_for_bit_on_quantized_weights(qtype):
    data = quantize(weights((16, 512)), qtype)
    p, exact = reencode_gguf(qtype, data)
    assert exact
    assert np.array_equal(dequantize_packed(p), dequantize(data, qtype))


@pytest.mark.parametrize(("qtype", "bits", "block_size"),
                         [(Q.Q4_0, 4, 32), (Q.Q8_0, 8, 32), (Q.Q5_0, 8, 32), (Q.Q6_K, 8, 16)],
                         ids=lambda v: getattr(v, "name", str(v)))
def test_exact_types_use_the_documented_blocks(qtype, bits, block_size):
    data = random_blocks(qtype, rows=4, blocks=2)
    p, _ = reencode_gguf(qtype, data)
    k = 2 * GGML_QUANT_SIZES[qtype][0]
    assert (p.bits, p.block_size, p.N, p.K) == (bits, block_size, 4, k)
    assert p.B.shape == (4, k // block_size, block_size * bits // 8) and p.B.dtype == np.uint8
    assert p.scales.shape == (4 * k // block_size,) and p.scales.dtype == np.float32


# ---------------------------------------------------------------- GGUF: requantized types

def assert_within_half_a_step(p: PackedWeight, reference: np.ndarray) -> float:
    """Every value within 0.5 * |scale| of its block (plus fp32 rounding); returns max err/step."""
    err = np.abs(dequantize_packed(p) - reference).reshape(p.N, p.n_blocks, p.block_size)
    step = np.abs(p.scales).reshape(p.N, p.n_blocks, 1)
    assert np.all(err <= 0.5 * step * (1 + 1e-5))
    return float((err / np.where(step == 0, 1, step)).max())


@pytest.mark.parametrize("qtype", REQUANTIZED, ids=lambda t: t.name)
def test_min_offset_types_requantize_within_half_an_8bit_step(qtype):
    data = random_blocks(qtype, rows=8, blocks=2 if GGML_QUANT_SIZES[qtype][0] == 256 else 16)
    p, exact = reencode_gguf(qtype, data)
    assert not exact and (p.bits, p.block_size, p.zero_points) == (8, 32, None)
    ratio = assert_within_half_a_step(p, dequantize(data, qtype))
    print(f"{qtype.name}: max error {ratio:.4f} of an 8-bit step")


def test_q4_1_from_gguf_quantizer_requantizes_within_half_a_step():
    data = quantize(weights((16, 512)), Q.Q4_1)
    assert_within_half_a_step(reencode_gguf(Q.Q4_1, data)[0], dequantize(data, Q.Q4_1))


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, Q.BF16, Q.IQ4_NL], ids=lambda t: t.name)
def test_unsupported_gguf_types_raise(qtype):
    with pytest.raises(QuantizationError, match="supported: Q4_0"):
        reencode_gguf(qtype, np.zeros((2, 64), np.uint8))


def test_truncated_block_rows_raise():
    with pytest.raises(QuantizationError, match="18-byte blocks"):
        reencode_gguf(Q.Q4_0, np.zeros((2, 35), np.uint8))


def test_registry_lists_every_type_once_and_exactness_is_data():
    assert set(REENCODINGS) == set(EXACT) | set(REQUANTIZED)
    assert {t for t, enc in REENCODINGS.items() if enc.decode is not None} == set(EXACT)


# ---------------------------------------------------------------- the real model's tensors

@pytest.fixture(scope="module")
def real_tensors(real_gguf):
    """The smallest tensor of each block type in the Gemma 3 270M Q4_K_M GGUF."""
    smallest = {}
    for t in GGUFReader(real_gguf).tensors:
        if t.tensor_type not in smallest or t.data.size < smallest[t.tensor_type].data.size:
            smallest[t.tensor_type] = t
    return smallest


@pytest.mark.slow
@pytest.mark.parametrize("qtype", [Q.Q4_K, Q.Q5_0, Q.Q6_K, Q.Q8_0], ids=lambda t: t.name)
def test_real_model_tensor_reencodes(real_tensors, qtype):
    t = real_tensors[qtype]
    data = np.asarray(t.data)
    p, exact = reencode_gguf(qtype, data)
    reference = dequantize(data, qtype)
    assert exact == (qtype in EXACT)
    if exact:
        assert np.array_equal(dequantize_packed(p), reference)
    else:
        ratio = assert_within_half_a_step(p, reference)
        err = np.abs(dequantize_packed(p) - reference)
        print(f"{t.name} {qtype.name}: max error {err.max():.3g} ({ratio:.3f} step), "
              f"rmse/rms {np.sqrt((err**2).mean() / (reference**2).mean()):.4f}")


# ---------------------------------------------------------------- ONNX Runtime agreement

def matmul_nbits(p: PackedWeight, x: np.ndarray, accuracy_level: int = 0) -> np.ndarray:
    """One MatMulNBits node over p's initializers, run by ONNX Runtime on CPU."""
    inits = [numpy_helper.from_array(p.B, "B"), numpy_helper.from_array(p.scales, "scales")]
    if p.zero_points is not None:
        inits.append(numpy_helper.from_array(p.zero_points, "zero_points"))
    node = helper.make_node("MatMulNBits", ["x", *[i.name for i in inits]], ["y"],
                            domain="com.microsoft", K=p.K, N=p.N, bits=p.bits,
                            block_size=p.block_size, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, p.K])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, p.N])], inits)
    model = helper.make_model(graph, ir_version=10,  # onnx writes 14; ORT 1.31 reads <= 13
                              opset_imports=[helper.make_opsetid("", 21),
                                             helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def random_packed(bits: int, block_size: int, with_zero_points: bool, n: int = 24,
                  k: int = 384) -> PackedWeight:
    """Every code and zero point value, signed scales: nothing that a wrong layout could hide."""
    rng = np.random.default_rng(bits * 1000 + block_size + with_zero_points)
    blocks, levels = k // block_size, 1 << bits
    codes = rng.integers(0, levels, (n, blocks, block_size), dtype=np.uint8)
    b = codes if bits == 8 else codes[..., 0::2] | (codes[..., 1::2] << np.uint8(4))
    scales = (rng.standard_normal(n * blocks) / levels).astype(np.float32)
    zp = (pack_zero_points(rng.integers(0, levels, (n, blocks), dtype=np.uint8), bits)
          if with_zero_points else None)
    return PackedWeight(bits, block_size, b, scales, zp, n, k)


@pytest.mark.parametrize("block_size", [16, 32, 128])
@pytest.mark.parametrize("with_zero_points", [False, True], ids=["default_zp", "zp"])
@pytest.mark.parametrize("bits", [4, 8])
def test_dequantize_packed_matches_onnxruntime(bits, with_zero_points, block_size):
    p = random_packed(bits, block_size, with_zero_points)  # K=384: 3 blocks of 128, odd
    x = np.random.default_rng(1).standard_normal((3, p.K)).astype(np.float32)
    expected = x @ dequantize_packed(p).T
    np.testing.assert_allclose(matmul_nbits(p, x), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("qtype", EXACT, ids=lambda t: t.name)
def test_onnxruntime_reproduces_gguf_matmul(qtype):
    data = random_blocks(qtype, rows=16, blocks=2 if qtype == Q.Q6_K else 16, seed=3)
    p, _ = reencode_gguf(qtype, data)
    x = np.random.default_rng(2).standard_normal((3, p.K)).astype(np.float32)
    np.testing.assert_allclose(matmul_nbits(p, x), x @ dequantize(data, qtype).T,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scheme", [quantize_symmetric, quantize_asymmetric])
@pytest.mark.parametrize("bits", [4, 8])
def test_onnxruntime_runs_float_quantization(bits, scheme):
    w = weights((32, 256))
    p = scheme(w, bits, 32)
    x = np.random.default_rng(2).standard_normal((3, 256)).astype(np.float32)
    np.testing.assert_allclose(matmul_nbits(p, x), x @ dequantize_packed(p).T,
                               rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- float weights

@pytest.mark.parametrize("block_size", [16, 32, 128, 256])
@pytest.mark.parametrize("bits", [4, 8])
def test_symmetric_round_trip_error_is_bounded(bits, block_size):
    w = weights((64, 1024))
    w[0, :block_size] = 0  # an all-zero block: scale 0, exact zeros
    p = quantize_symmetric(w, bits, block_size)
    assert p.zero_points is None and p.B.shape == (64, 1024 // block_size, block_size * bits // 8)
    blocks = w.reshape(64, -1, block_size)
    err = dequantize_packed(p).reshape(blocks.shape) - blocks
    step = np.abs(p.scales).reshape(64, -1, 1)
    assert np.all(np.abs(err) <= 1.5 * step * (1 + 1e-5))  # a clipped value: at most 1.5 steps
    assert np.all(err[0, 0] == 0) and p.scales[0] == 0
    # Never worse, per block, than plain absmax / (2^(b-1) - 1) rounding (one of the candidates).
    half = 1 << (bits - 1)
    absmax_step = np.abs(blocks).max(-1, keepdims=True) / (half - 1)
    with np.errstate(invalid="ignore"):
        absmax_err = np.nan_to_num(np.rint(blocks / absmax_step)) * absmax_step - blocks
    sse, absmax_sse = (np.square(e).sum(-1) for e in (err, absmax_err))
    assert np.all(sse <= absmax_sse * (1 + 1e-5) + 1e-12)
    rel = np.sqrt(sse.sum() / np.square(w).sum())
    print(f"int{bits} block {block_size}: rmse/rms {rel:.4f} "
          f"(absmax {np.sqrt(absmax_sse.sum() / np.square(w).sum()):.4f})")


@pytest.mark.parametrize("block_size", [16, 32, 128, 256])
@pytest.mark.parametrize("bits", [4, 8])
def test_asymmetric_round_trip_is_never_worse_than_the_min_max_grid(bits, block_size):
    w = weights((64, 1024))
    w[0, :block_size] = 0  # an all-zero block: exact zeros
    w[1, :block_size] = np.abs(w[1, :block_size])  # one-sided blocks: zero point at an end
    w[2, :block_size] = -np.abs(w[2, :block_size])
    p = quantize_asymmetric(w, bits, block_size)
    n_blocks = 1024 // block_size
    assert p.B.shape == (64, n_blocks, block_size * bits // 8)
    assert p.zero_points.shape == (64 * -(-n_blocks * bits // 8),)
    blocks = w.reshape(64, -1, block_size)
    err = dequantize_packed(p).reshape(blocks.shape) - blocks
    assert np.all(err[0, 0] == 0)
    # The plain grid over [min(w, 0), max(w, 0)] in 2^b - 1 steps, zero point rounded: one of
    # the candidates, computed here independently.
    top = (1 << bits) - 1
    low = np.minimum(blocks.min(-1, keepdims=True), 0)
    step = (np.maximum(blocks.max(-1, keepdims=True), 0) - low) / top
    step[step == 0] = 1
    zp = np.clip(np.rint(-low / step), 0, top)
    grid_err = (np.clip(np.rint(blocks / step) + zp, 0, top) - zp) * step - blocks
    sse, grid_sse = (np.square(e.astype(np.float64)).sum(-1) for e in (err, grid_err))
    assert np.all(sse <= grid_sse + 1e-5 * np.square(blocks.astype(np.float64)).sum(-1))
    rel = np.sqrt(sse.sum() / np.square(w).sum())
    print(f"int{bits} block {block_size}: rmse/rms {rel:.4f} "
          f"(min/max grid {np.sqrt(grid_sse.sum() / np.square(w).sum()):.4f})")


def test_zero_points_beat_symmetric_int4_on_one_sided_blocks():
    """What the zero point is for: a block of positive weights uses all 16 codes, not 8."""
    w = np.abs(weights((64, 1024)))
    errors = [np.square(dequantize_packed(q(w, 4, 32)) - w).sum()
              for q in (quantize_symmetric, quantize_asymmetric)]
    assert errors[1] < 0.5 * errors[0], errors


def test_asymmetric_quantization_of_an_int4_grid_is_exact():
    codes = np.arange(16, dtype=np.float32).repeat(2)
    w = np.stack([(codes - zp) * 0.25 for zp in (0, 3, 15)])  # zero point at 0, inside, top
    p = quantize_asymmetric(w, 4, 32)
    assert np.array_equal(dequantize_packed(p), w)


def test_stacked_rows_keep_their_zero_points():
    """q|k|v fused into one MatMulNBits: stacking must equal quantizing the stacked matrix."""
    a, b = weights((48, 96), seed=1), weights((40, 96), seed=2)
    stacked = stack_rows([quantize_asymmetric(a, 4, 32), quantize_asymmetric(b, 4, 32)])
    whole = quantize_asymmetric(np.concatenate([a, b]), 4, 32)
    for field in ("B", "scales", "zero_points"):
        assert np.array_equal(getattr(stacked, field), getattr(whole, field)), field
    assert stack_rows([quantize_asymmetric(a, 4, 32), quantize_symmetric(b, 4, 32)]) is None


@pytest.mark.parametrize("scheme", [quantize_symmetric, quantize_asymmetric])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_raise(bad, scheme):
    w = weights((4, 64))
    w[2, 40] = bad
    with pytest.raises(QuantizationError, match=r"\(4, 64\) tensor holding NaN or infinite"):
        scheme(w, 4, 32)


def test_symmetric_quantization_of_an_int4_grid_is_exact():
    w = (np.arange(-8, 8, dtype=np.float32) * 0.25).repeat(2).reshape(1, 32)
    assert np.array_equal(dequantize_packed(quantize_symmetric(w, 4, 32)), w)


@pytest.mark.parametrize(("shape", "bits", "block_size", "message"), [
    ((4, 64), 3, 32, r"\(4, 64\) tensor to 3 bits.*\(4, 8\)"),
    ((4, 64), 2, 32, r"bits in \(4, 8\)"),
    ((4, 96), 4, 24, r"\(4, 96\) tensor with block size 24.*\(16, 32, 64, 128, 256\)"),
    ((4, 512), 4, 512, r"block size 512"),
    ((4, 64), 4, 8, r"block size 8"),
    ((4, 80), 4, 32, r"\(4, 80\) tensor.*multiple of the block size 32"),
    ((64,), 4, 32, r"must be 2-D"),
])
@pytest.mark.parametrize("scheme", [quantize_symmetric, quantize_asymmetric])
def test_bad_quantization_options_raise(shape, bits, block_size, message, scheme):
    with pytest.raises(QuantizationError, match=message) as info:
        scheme(np.zeros(shape, np.float32), bits, block_size)
    assert isinstance(info.value, ExportError)


@pytest.mark.parametrize("scheme", [quantize_symmetric, quantize_asymmetric])
def test_int4_quantization_of_a_large_matrix_is_fast(scheme):
    w = np.random.default_rng(0).standard_normal((2304, 9216), dtype=np.float32)
    start = time.perf_counter()
    scheme(w, 4, 32)
    print(f"{scheme.__name__} int4 2304x9216: {time.perf_counter() - start:.2f} s")


@pytest.mark.parametrize("scheme", [quantize_symmetric, quantize_asymmetric])
def test_large_tensors_are_quantized_in_row_chunks_with_the_same_result(scheme):
    """Chunking bounds export memory (a 256000-row embedding); it must not change a bit."""
    w = np.random.default_rng(11).standard_normal((2100, 4096)).astype(np.float32)  # 2+ chunks
    whole = scheme(w, 4, 32)
    rows = [scheme(w[i : i + 700], 4, 32) for i in range(0, 2100, 700)]
    assert np.array_equal(whole.B, np.concatenate([p.B for p in rows]))
    assert np.array_equal(whole.scales, np.concatenate([p.scales for p in rows]))
    if whole.zero_points is not None:
        assert np.array_equal(whole.zero_points, np.concatenate([p.zero_points for p in rows]))
