"""The trial kernel's weight layout (q4_matmul.cc's header says why it is so)."""

from __future__ import annotations

import numpy as np
from gemma_export.quant import PackedWeight, unpacked_codes

BLOCK, TILE = 32, 16


def to_tiles(codes: np.ndarray, scale: np.ndarray, minimum: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """codes [N, K] (0..15), scale and minimum [N, K/32] (weight = scale * code + minimum) ->
    tiles [N/16, K/32, 256] uint8, scales and mins [N/16, K/32, 16] fp16."""
    n, k = codes.shape
    if n % TILE or k % BLOCK:
        raise ValueError(f"a [{n}, {k}] weight does not cut into 16 x 32 tiles")
    # k = 32 b + 8 L + 4 half + j; byte L*64 + 4r + j holds half 0 low, half 1 high
    t = codes.reshape(n // TILE, TILE, k // BLOCK, 4, 2, 4).transpose(0, 2, 3, 1, 4, 5)
    tiles = (t[..., 0, :] | (t[..., 1, :] << 4)).reshape(n // TILE, k // BLOCK, 256)

    def per_tile(a: np.ndarray) -> np.ndarray:
        return a.reshape(n // TILE, TILE, k // BLOCK).transpose(0, 2, 1).astype(np.float16)

    return (np.ascontiguousarray(tiles, dtype=np.uint8), np.ascontiguousarray(per_tile(scale)),
            np.ascontiguousarray(per_tile(minimum)))


def tiles_from_packed(p: PackedWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 4-bit, block-32 MatMulNBits weight (B, scales, zero points) in the trial's layout: the
    same codes; scale * (code - zero) becomes scale * code + minimum."""
    if p.bits != 4 or p.block_size != BLOCK:
        raise ValueError(f"only 4-bit, block-{BLOCK} weights convert (got {p.bits}-bit, "
                         f"block {p.block_size})")
    codes, zero = unpacked_codes(p)
    scale = p.scales.reshape(p.N, p.n_blocks)
    return to_tiles(codes, scale, -scale * zero)
