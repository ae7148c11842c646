"""Block-quantized weights in the layout of ONNX Runtime's `com.microsoft.MatMulNBits`.

A weight W is stored [N, K] (N outputs, K inputs, y = x @ W.T) and cut along K into blocks of
`block_size`. MatMulNBits reads, per block, `w = (q - zero_point) * scale`:

- `B`: uint8 [N, n_blocks, block_size * bits // 8]; 4-bit packs two codes a byte, element 2i
  in the low nibble, 2i+1 in the high one (pinned against ORT in `tests/test_quant.py`);
- `scales`: float32 [N * n_blocks] (row-major over [N, n_blocks]);
- `zero_points`: optional uint8 [N * ceil(n_blocks / 2)] (4-bit, two a byte, padded per row) or
  [N * n_blocks] (8-bit); when absent ORT uses 2^(bits-1). Only `quantize_asymmetric` emits
  them; the other encoders land on that default (float zero points are ORT's slow path).

Three sources of blocks:

- `quantize_symmetric`: float weights, round to nearest. The scale of each block is the one of
  five candidates with the smallest squared error: absmax / (2^(b-1) - 1) (no clipping) and
  llama.cpp's Q4_0 trick, signed max / -(2^(b-1) + t) for t in (-0.5, 0, 0.25, 0.5), which uses
  the extra negative code. Measured rmse / rms, 4-bit block 32, on five Gemma 3 270M weights
  (dequantized from its GGUF): absmax alone 0.101-0.105, the -8 trick alone 0.087-0.112 (worse
  than absmax on Q5_0-born tensors), the search 0.079-0.093: 10-22 % below absmax on every
  tensor (block 128: 9-16 %; 8-bit: 5-17 %). Cost: ~0.8 s for a 2304x9216 matrix.
- `quantize_asymmetric`: float weights onto codes 0..2^b-1 with a uint8 zero point per block
  (`--dtype int4`). The grid covers [min, max] of the block (widened to hold 0, which the
  integer zero point must represent) instead of [-absmax, absmax], so a one-sided block wastes
  no codes. The step is the best of six candidates (max - min) / (2^b - 1 + t), t in
  (-0.5, 0, 0.5, 1, 1.5, 2), each also refitted by least squares to its codes (llama.cpp's
  make_qkx2_quants idea). On the Gemma 3 270M this took the int4 export's perplexity from
  +39 % to +26 % of fp32 (benchmarks/quant_accuracy.py). ONNX Runtime's int8-activation kernel
  reads zero points at no measurable cost (2304x9216, M=1: 0.79 ms with, 0.83 without).
- `reencode_gguf`: GGUF blocks (layouts from `gguf.quants`, llama.cpp's numpy reference).
  Q4_0, Q8_0, Q5_0 and Q6_K are integers times one fp32 scale per block, so they map exactly.
  Types with a per-block minimum (Q4_1, Q5_1, Q2_K..Q5_K) would need float zero points; they are
  dequantized and requantized to 8-bit, block 32, with absmax / 127 (never clipped, so every
  value is within half a step, 0.5 * |scale|, of the GGUF value; on the 270M's Q4_K tensor
  rmse / rms 0.0055, small beside the 4-bit grid it came from).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize

from .errors import ExportError

__all__ = ["PackedWeight", "QuantizationError", "quantize_symmetric", "quantize_asymmetric",
           "dequantize_packed", "unpacked_codes",
           "reencode_gguf", "pack_zero_points", "stack_rows", "REENCODINGS"]

Q = GGMLQuantizationType
BITS = (4, 8)
BLOCK_SIZES = (16, 32, 64, 128, 256)


class QuantizationError(ExportError):
    """Weights or options that MatMulNBits blocks cannot hold."""


@dataclass(frozen=True, eq=False)  # eq would compare arrays elementwise
class PackedWeight:
    """The MatMulNBits inputs of one [N, K] weight (shapes in the module docstring)."""

    bits: int
    block_size: int
    B: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray | None
    N: int
    K: int

    @property
    def n_blocks(self) -> int:
        return self.K // self.block_size


def _pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 codes [..., 2m] -> bytes: 8-bit as is; 4-bit element 2i low nibble, 2i+1 high."""
    if bits == 8:
        return codes
    return codes[..., 0::2] | (codes[..., 1::2] << np.uint8(4))


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return packed
    return np.stack([packed & np.uint8(0x0F), packed >> np.uint8(4)], axis=-1).reshape(
        *packed.shape[:-1], -1)


def pack_zero_points(zp: np.ndarray, bits: int) -> np.ndarray:
    """uint8 zero points [N, n_blocks] -> ORT's flat layout (4-bit rows padded to a byte)."""
    zp = np.asarray(zp, np.uint8)
    if bits == 4 and zp.shape[1] % 2:
        zp = np.pad(zp, ((0, 0), (0, 1)))
    return _pack(zp, bits).reshape(-1)


def _packed(codes: np.ndarray, scales: np.ndarray, bits: int, block_size: int,
            zero_points: np.ndarray | None = None) -> PackedWeight:
    """uint8 codes [N, K], fp32 scales [N, n_blocks] and uint8 zero points [N, n_blocks] (None:
    2^(bits-1)) -> PackedWeight."""
    n, k = codes.shape
    b = _pack(codes, bits).reshape(n, k // block_size, block_size * bits // 8)
    zp = None if zero_points is None else pack_zero_points(zero_points, bits)
    return PackedWeight(bits, block_size, np.ascontiguousarray(b),
                        np.ascontiguousarray(scales, np.float32).reshape(-1), zp, n, k)


def unpacked_codes(p: PackedWeight) -> tuple[np.ndarray, np.ndarray]:
    """uint8 codes [N, K] and zero points [N, n_blocks] (2^(bits-1) where p has none)."""
    codes = _unpack(p.B, p.bits).reshape(p.N, p.K)
    if p.zero_points is None:
        return codes, np.full((p.N, p.n_blocks), 1 << (p.bits - 1), np.uint8)
    return codes, _unpack(p.zero_points.reshape(p.N, -1), p.bits)[:, : p.n_blocks]


def dequantize_packed(p: PackedWeight) -> np.ndarray:
    """float32 [N, K]: what MatMulNBits computes from B, scales and zero points."""
    codes, zp = unpacked_codes(p)
    blocks = codes.reshape(p.N, p.n_blocks, p.block_size).astype(np.float32)
    scales = p.scales.reshape(p.N, p.n_blocks, 1)
    return ((blocks - zp[..., None].astype(np.float32)) * scales).reshape(p.N, p.K)


# ---------------------------------------------------------------- float weights -> blocks

def _check(shape: tuple[int, ...], bits: int, block_size: int) -> None:
    if bits not in BITS:
        raise QuantizationError(f"cannot quantize a {shape} tensor to {bits} bits; "
                                f"MatMulNBits takes bits in {BITS}")
    if block_size not in BLOCK_SIZES:
        raise QuantizationError(f"cannot quantize a {shape} tensor with block size {block_size}; "
                                f"choose a power of two in {BLOCK_SIZES}")
    if len(shape) != 2 or shape[1] % block_size:
        raise QuantizationError(f"cannot quantize a {shape} tensor: it must be 2-D [N, K] with "
                                f"K a multiple of the block size {block_size}")


def _round_to_grid(blocks: np.ndarray, scale: np.ndarray, bits: int, out: np.ndarray) -> np.ndarray:
    """Signed codes rint(w / scale) clipped to [-2^(b-1), 2^(b-1) - 1], written into `out`;
    0 where the scale is 0 (an all-zero block)."""
    half = 1 << (bits - 1)
    inv = np.divide(1, scale, out=np.zeros_like(scale), where=scale != 0)
    np.rint(np.multiply(blocks, inv, out=out), out=out)
    return np.clip(out, -half, half - 1, out=out)


def _quantize(w: np.ndarray, bits: int, block_size: int,
              divisors: tuple[float, ...]) -> PackedWeight:
    """Round to nearest with, per block, the scale signed_max / d (d in `divisors`) that
    gives the smallest squared error. In-place passes over one buffer: ~2x faster."""
    n, k = w.shape
    blocks = _finite_blocks(w, block_size)
    signed_max = np.take_along_axis(blocks, np.abs(blocks).argmax(-1)[..., None], axis=-1)
    q = np.empty_like(blocks)
    best_scale = best_err = None
    for d in divisors:  # a handful of candidates, each a whole-array pass
        scale = signed_max / np.float32(d)
        diff = _round_to_grid(blocks, scale, bits, out=q)
        diff *= scale
        diff -= blocks
        err = np.square(diff, out=diff).sum(-1, keepdims=True)
        if best_err is None:
            best_scale, best_err = scale, err
        else:
            better = err < best_err
            best_scale, best_err = np.where(better, scale, best_scale), np.minimum(err, best_err)
    q = _round_to_grid(blocks, best_scale, bits, out=q) + np.float32(1 << (bits - 1))
    return _packed(q.astype(np.uint8).reshape(n, k), best_scale[..., 0], bits, block_size)


def _finite_blocks(w: np.ndarray, block_size: int) -> np.ndarray:
    """float32 [N, n_blocks, block_size]; raises for NaN or infinite weights."""
    if not np.isfinite(w).all():
        raise QuantizationError(f"cannot quantize a {w.shape} tensor holding NaN or infinite "
                                f"values; fix the weights")
    n, k = w.shape
    return w.astype(np.float32, copy=False).reshape(n, k // block_size, block_size)


def _quantize_min_max(w: np.ndarray, bits: int, block_size: int) -> PackedWeight:
    """Codes 0..2^b-1 and a zero point per block; per block, the step (of the candidates in the
    module docstring) with the smallest squared error."""
    n, k = w.shape
    top = np.float32((1 << bits) - 1)
    blocks = _finite_blocks(w, block_size)
    low = np.minimum(blocks.min(-1, keepdims=True), 0)  # the grid must hold 0: zp is an integer
    span = np.maximum(blocks.max(-1, keepdims=True), 0) - low
    span[span == 0] = 1  # an all-zero block: codes = zero point = 0, exact
    sum_w2 = np.einsum("nbk,nbk->nb", blocks, blocks).astype(np.float64)[..., None]
    centred = np.empty_like(blocks)  # code - zero point, one candidate at a time
    best_step = best_zp = best_err = None
    for t in (0, -0.5, 0.5, 1, 1.5, 2):
        step = span / (top + np.float32(t))
        zp = np.clip(np.rint(-low / step), 0, top)
        np.multiply(blocks, 1 / step, out=centred)
        np.rint(centred, out=centred)
        centred += zp
        np.clip(centred, 0, top, out=centred)
        centred -= zp
        # Squared error of step s on these codes: s^2 sum(c^2) - 2 s sum(c w) + sum(w^2), so
        # the least-squares step sum(c w) / sum(c^2) costs two dot products, not a pass.
        cw = np.einsum("nbk,nbk->nb", centred, blocks).astype(np.float64)[..., None]
        cc = np.einsum("nbk,nbk->nb", centred, centred).astype(np.float64)[..., None]
        fitted = np.divide(cw, cc, out=np.zeros_like(cw), where=cc > 0)
        for s in (step.astype(np.float64), np.where(fitted > 0, fitted, step)):
            err = s * s * cc - 2 * s * cw + sum_w2
            if best_err is None:
                best_step, best_zp, best_err = s, zp, err
            else:
                better = err < best_err
                best_step = np.where(better, s, best_step)
                best_zp = np.where(better, zp, best_zp)
                best_err = np.minimum(err, best_err)
    # Rounding to the nearest code under the chosen step is never worse than the codes it was
    # scored with, so each block's error is at most its best candidate's.
    step = best_step.astype(np.float32)
    np.multiply(blocks, 1 / step, out=centred)
    codes = np.clip(np.rint(centred, out=centred) + best_zp, 0, top)
    return _packed(codes.astype(np.uint8).reshape(n, k), step[..., 0], bits, block_size,
                   best_zp[..., 0].astype(np.uint8))


_CHUNK_VALUES = 1 << 22  # values quantized per pass (the search keeps ~4 float copies of them)


def _search_divisors(bits: int) -> tuple[float, ...]:
    half = 1 << (bits - 1)
    return (half - 1, -(half - 0.5), -half, -(half + 0.25), -(half + 0.5))


def quantize_symmetric(w: np.ndarray, bits: int, block_size: int) -> PackedWeight:
    """float weights [N, K] -> `bits`-bit blocks with the default zero point (no zero_points).

    Error: per block, the squared error is at most that of absmax / (2^(b-1) - 1) (one of the
    candidates), and no value is off by more than 1.5 * |scale| (a clipped one).
    """
    return _in_row_chunks(w, bits, block_size,
                          lambda part: _quantize(part, bits, block_size, _search_divisors(bits)))


def quantize_asymmetric(w: np.ndarray, bits: int, block_size: int) -> PackedWeight:
    """float weights [N, K] -> `bits`-bit blocks with a zero point each (module docstring).

    Error: per block, the squared error is at most that of the plain min/max grid, step
    (max - min) / (2^b - 1) with min <= 0 <= max (one of the candidates).
    """
    return _in_row_chunks(w, bits, block_size,
                          lambda part: _quantize_min_max(part, bits, block_size))


def _in_row_chunks(w: np.ndarray, bits: int, block_size: int,
                   quantize: Callable[[np.ndarray], PackedWeight]) -> PackedWeight:
    """Validate, then quantize a few rows at a time: bounded temporaries, so a 256000-row
    embedding stays cheap; the rows are independent, so the result is the same."""
    w = np.asarray(w)
    _check(w.shape, bits, block_size)
    rows = max(1, _CHUNK_VALUES // w.shape[1])
    parts = [quantize(w[i : i + rows]) for i in range(0, w.shape[0], rows)]
    return stack_rows(parts)  # type: ignore[return-value]  # same bits, block and zero points


def stack_rows(parts: list[PackedWeight]) -> PackedWeight | None:
    """The weights of `parts` one above the other ([sum N, K]), as one MatMulNBits can read
    them; None when their bits, blocks or K differ, or only some have zero points. (Packed zero
    points are padded per row, so rows concatenate.)"""
    first = parts[0]
    if len(parts) == 1:
        return first
    if any((p.bits, p.block_size, p.K, p.zero_points is None)
           != (first.bits, first.block_size, first.K, first.zero_points is None) for p in parts):
        return None
    zero_points = (None if first.zero_points is None
                   else np.concatenate([p.zero_points for p in parts]))  # type: ignore[misc]
    return PackedWeight(first.bits, first.block_size, np.concatenate([p.B for p in parts]),
                        np.concatenate([p.scales for p in parts]), zero_points,
                        sum(p.N for p in parts), first.K)


# ---------------------------------------------------------------- GGUF blocks -> blocks
# Each decoder takes raw blocks [N, n, type_size] and returns uint8 codes [N, n * block] on
# MatMulNBits' default zero point and fp32 scales [N, n * sub-blocks]. Layouts: gguf/quants.py.

def _fp16(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view(np.float16)[..., 0].astype(np.float32)


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """Q4_0/Q5_0 low bits: element i in byte i's low nibble, element i + 16 in its high one."""
    return np.concatenate([qs & np.uint8(0x0F), qs >> np.uint8(4)], axis=-1)


def _q4_0(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d fp16 | 16 bytes of nibbles; w = d * (q - 8): zero point 8, ORT's 4-bit default."""
    return _nibbles(b[..., 2:]).reshape(b.shape[0], -1), _fp16(b[..., :2])


def _q8_0(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d fp16 | 32 int8; int8 + 128 (ORT's 8-bit default) is the byte with its top bit flipped."""
    return (b[..., 2:] ^ np.uint8(0x80)).reshape(b.shape[0], -1), _fp16(b[..., :2])


def _q5_0(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d fp16 | qh uint32 (bit j: 5th bit of element j) | 16 bytes of nibbles; w = d * (q - 16)."""
    high = np.unpackbits(b[..., 2:6], axis=-1, bitorder="little")
    q = _nibbles(b[..., 6:]) | (high << np.uint8(4))
    return (q + np.uint8(128 - 16)).reshape(b.shape[0], -1), _fp16(b[..., :2])


def _q6_k(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ql[128] | qh[64] | int8 scales[16] | d fp16 per 256; w = (d * sc) * (q - 32) per 16."""
    n, m = b.shape[:2]
    ql = b[..., :128].reshape(n, m, 2, 1, 64) >> np.array([0, 4], np.uint8).reshape(2, 1)
    qh = b[..., 128:192].reshape(n, m, 2, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(4, 1)
    q = (ql & np.uint8(0x0F)).reshape(n, m, 8, 32) | ((qh & np.uint8(3)).reshape(n, m, 8, 32) << 4)
    scales = _fp16(b[..., 208:210])[..., None] * b[..., 192:208].view(np.int8).astype(np.float32)
    return (q + np.uint8(128 - 32)).reshape(n, -1), scales.reshape(n, -1)


class Reencoding(NamedTuple):
    """How one GGUF type becomes MatMulNBits blocks; `decode` None: requantize to 8-bit."""

    bits: int
    block_size: int
    decode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None


REENCODINGS: dict[GGMLQuantizationType, Reencoding] = {
    Q.Q4_0: Reencoding(4, 32, _q4_0),
    Q.Q8_0: Reencoding(8, 32, _q8_0),
    Q.Q5_0: Reencoding(8, 32, _q5_0),
    Q.Q6_K: Reencoding(8, 16, _q6_k),
    **{t: Reencoding(8, 32) for t in (Q.Q4_1, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K)},
}


def reencode_gguf(qtype: GGMLQuantizationType, data: np.ndarray) -> tuple[PackedWeight, bool]:
    """Raw GGUF tensor bytes (uint8 [rows, bytes_per_row], as `GGUFReader` gives them) ->
    (MatMulNBits blocks, whether they give back the GGUF values bit for bit)."""
    qtype = GGMLQuantizationType(qtype)
    enc = REENCODINGS.get(qtype)
    if enc is None:
        raise QuantizationError(f"cannot re-encode GGUF {qtype.name} blocks for MatMulNBits; "
                                f"supported: {', '.join(t.name for t in REENCODINGS)}")
    data = np.asarray(data)
    type_size = GGML_QUANT_SIZES[qtype][1]
    if data.dtype != np.uint8 or data.ndim == 0 or data.shape[-1] % type_size:
        raise QuantizationError(f"{qtype.name} data {data.shape} {data.dtype} is not uint8 rows "
                                f"of whole {type_size}-byte blocks")
    rows = data.reshape(-1, data.shape[-1])
    if enc.decode is None:
        # absmax / 127 only: never clipped, so within half a step of the GGUF value
        return _quantize(dequantize(rows, qtype), 8, 32, (127,)), False
    codes, scales = enc.decode(rows.reshape(rows.shape[0], -1, type_size))
    return _packed(codes, scales, enc.bits, enc.block_size), True
