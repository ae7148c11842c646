"""The layout of `--dtype int4-cpu`: gemma-nb's own 4-bit CPU kernel (gemma_nb/kernels/q4_matmul.cc,
whose header says why it is so) reads these arrays straight from the mapped weights file.

A weight [N, K] becomes tiles [N/16, K/32, 256] uint8 (16 rows by one block of 32 inputs each)
with an fp16 scale per row and block, [N/16, K/32, 16], and a 4-bit zero point per row and block,
[N/16, K/32, 8] uint8 (byte j: row j in the low nibble, row j + 8 in the high one): a weight is
`scale * (code - zero)`, codes 0..15 (4.625 bits a weight in all).
"""

from __future__ import annotations

import numpy as np

from .quant import PackedWeight, QuantizationError, quantize_asymmetric, unpacked_codes

__all__ = ["BLOCK", "TILE", "to_tiles", "tiles_from_packed", "quantize_to_tiles",
           "dequantize_tiles", "alternate_tile_rows"]

BLOCK, TILE = 32, 16


def to_tiles(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codes [N, K] and zero points [N, K/32] (0..15), scale [N, K/32] -> tiles, scales and
    zeros."""
    n, k = codes.shape
    if n % TILE or k % BLOCK:
        raise QuantizationError(f"a [{n}, {k}] weight does not cut into {TILE} x {BLOCK} tiles "
                                f"(--dtype int4-cpu needs outputs a multiple of {TILE} and "
                                f"inputs a multiple of {BLOCK}); use --dtype int4")
    # k = 32 b + 8 L + 4 half + j; byte L*64 + 4r + j holds half 0 low, half 1 high
    t = codes.reshape(n // TILE, TILE, k // BLOCK, 4, 2, 4).transpose(0, 2, 3, 1, 4, 5)
    tiles = (t[..., 0, :] | (t[..., 1, :] << 4)).reshape(n // TILE, k // BLOCK, 256)

    def per_tile(a: np.ndarray) -> np.ndarray:  # [N/16, K/32, 16]
        return a.reshape(n // TILE, TILE, k // BLOCK).transpose(0, 2, 1)

    z = per_tile(zero.astype(np.uint8))
    zeros = z[..., : TILE // 2] | (z[..., TILE // 2:] << 4)
    return (np.ascontiguousarray(tiles, dtype=np.uint8),
            np.ascontiguousarray(per_tile(scale).astype(np.float16)),
            np.ascontiguousarray(zeros, dtype=np.uint8))


def tiles_from_packed(p: PackedWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4-bit, block-32 weight with zero points in the tile layout: the same codes and zero
    points, the scales rounded to fp16."""
    if p.bits != 4 or p.block_size != BLOCK:
        raise QuantizationError(f"only 4-bit, block-{BLOCK} weights tile (got {p.bits}-bit, "
                                f"block {p.block_size})")
    codes, zero = unpacked_codes(p)
    scale = p.scales.reshape(p.N, p.n_blocks)
    return to_tiles(codes, scale, zero)


def alternate_tile_rows(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
    """The rows of gate and up [F, K] as Q4MatMul's geglu takes them: 16 gate rows, the same 16
    up rows, the next 16 gate rows, ... (a decode step reads both halves in one stream)."""
    f, k = gate.shape
    return np.stack([gate.reshape(f // TILE, TILE, k), up.reshape(f // TILE, TILE, k)],
                    axis=1).reshape(2 * f, k)


def quantize_to_tiles(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float weight [N, K] as `--dtype int4-cpu` stores it: int4's codes (zero-point grid,
    block 32), tiled."""
    return tiles_from_packed(quantize_asymmetric(w, 4, BLOCK))


def dequantize_tiles(tiles: np.ndarray, scales: np.ndarray, zeros: np.ndarray) -> np.ndarray:
    """The fp32 weight [N, K] the kernel computes with, scale * code + (-scale * zero) (the
    inverse of `to_tiles`)."""
    n_tiles, blocks, _ = tiles.shape
    t = tiles.reshape(n_tiles, blocks, 4, TILE, 4)  # [tile, block, L, r, j]
    codes = np.stack([t & 15, t >> 4], axis=4)  # [tile, block, L, r, half, j]
    codes = codes.transpose(0, 3, 1, 2, 4, 5).reshape(n_tiles * TILE, blocks, BLOCK)

    def per_row(a: np.ndarray) -> np.ndarray:
        return a.astype(np.float32).transpose(0, 2, 1).reshape(n_tiles * TILE, blocks, 1)

    zero = np.concatenate([zeros & 15, zeros >> 4], axis=2)  # [tile, block, r]
    scale = per_row(scales)
    minimum = -scale * per_row(zero)
    return (codes * scale + minimum).reshape(n_tiles * TILE, blocks * BLOCK)
