"""How weight matrices become ONNX initializers and the ops that read them (`--dtype`).

The graph builder calls only `linear`, `fused_linear`, `embed` and `tied_head`, or, where a packing
makes a whole block in one op, `decoder_layer` in place of the first two; each packing fetches
its own weights from the source, so one that re-encodes GGUF blocks can read them raw.

| dtype | projections | embedding / lm_head (one shared table) |
|---|---|---|
| fp32 | MatMul | Gather / Gemm(transB) |
| fp16 | fp16 weights, Cast to fp32, MatMul | same, from an fp16 table |
| int4 | MatMulNBits 4-bit with zero points (block-wise, accuracy_level) | GatherBlockQuantized / MatMulNBits, 4-bit (or `embedding_bits=8`) |
| int8 | MatMulNBits 8-bit (block-wise, accuracy_level) | GatherBlockQuantized / MatMulNBits |
| gguf | MatMulNBits re-encoding each GGUF block exactly where possible | same |
| int4-cpu | gemma_nb.DecoderLayer (a block) on 4-bit tiles (`tiles.py`), gemma-nb's own CPU kernel | gemma_nb.Q4Gather / Q4MatMul on the same tiles |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType

from .errors import ExportError
from .quant import (PackedWeight, QuantizationError, quantize_asymmetric, quantize_symmetric,
                    reencode_gguf, stack_rows)
from .sources import WeightsSource
from .tape import Tape
from .tiles import BLOCK, alternate_tile_rows, quantize_to_tiles

__all__ = ["Packing", "packing_for", "table_bits", "DTYPES", "DEFAULT_BLOCK_SIZE",
           "DEFAULT_ACCURACY_LEVEL"]

MS = "com.microsoft"
GEMMA_NB = "gemma_nb"  # the custom ops of gemma_nb/kernels/ (q4_matmul.cc, attention.cc, geglu.cc)
DTYPES = ("fp32", "fp16", "int8", "int4", "gguf", "int4-cpu")
NBITS = {"int4": 4, "int8": 8}  # the block-quantized dtypes and their layers' bits
DEFAULT_BLOCK_SIZE = 32
# 4: int8 activations, the fast CPU path (level 0 is exact fp32 arithmetic, far slower for int8).
DEFAULT_ACCURACY_LEVEL = 4

TensorFn = Callable[[str], np.ndarray]
_FLOAT_TYPES = frozenset({GGMLQuantizationType.F32, GGMLQuantizationType.F16,
                          GGMLQuantizationType.BF16})


class Packing:
    """Float weights (fp32, or fp16 on disk cast back to fp32 for CPU activations)."""

    # Whether `decoder_layer` makes a whole block in one op; if not, the graph builds it from
    # `linear` and `fused_linear`, onnxruntime's norms and GroupQueryAttention.
    fuses_layer = False
    cache_dtype = np.float32  # of the KV cache (past and present), as the attention op takes it

    def __init__(self, tensor: TensorFn, dtype: str = "fp32"):
        self.tensor = tensor
        self._storage = np.float16 if dtype == "fp16" else np.float32
        self._table = ""

    def _float_weight(self, tape: Tape, name: str, values: np.ndarray) -> str:
        stored = tape.weight(name, values.astype(self._storage, copy=False))
        return stored if self._storage == np.float32 else tape.op("Cast", [stored], to=1)

    def linear(self, tape: Tape, x: str, name: str) -> str:
        """y = x @ W^T for W stored [out, in]; kept transposed so MatMul reads rows."""
        return tape.op("MatMul", [x, self._float_weight(tape, name, self.tensor(name).T)],
                       name=name)

    def fused_linear(self, tape: Tape, x: str, names: list[str], name: str) -> str:
        """The projections `names` side by side in one output (q|k|v, gate|up): one MatMul over
        the stacked weights, so one kernel launch and one pass over x instead of several."""
        stacked = np.concatenate([self.tensor(n) for n in names])
        return tape.op("MatMul", [x, self._float_weight(tape, name, stacked.T)], name=name)

    def embed(self, tape: Tape, ids: str) -> str:
        self._table = self._float_weight(tape, "embed", self.tensor("embed"))
        return tape.op("Gather", [self._table, ids], name="embed")

    def tied_head(self, tape: Tape, hidden: str, output: str | None = None) -> str:
        """logits [batch, positions, vocab] = h @ E^T on the embedding's own table, h [batch,
        positions, hidden]; `output`: the name of the result (a graph output), if fixed.
        Gemm (transB: no transposed copy) takes 2-D rows, hence the Flatten and the Reshape back."""
        logits2d = tape.op("Gemm", [tape.op("Flatten", [hidden], axis=2), self._table], transB=1,
                           name="lm_head")
        shape = tape.op("Concat", [tape.op("Shape", [hidden], start=0, end=2),
                                   tape.op("Shape", [logits2d], start=1)], axis=0)
        return tape.op("Reshape", [logits2d, shape], allowzero=1,  # 0 positions: 0, not copied
                       output_names=[output])


class NBitsPacking(Packing):
    """Block-quantized weights for MatMulNBits; `quantize` decides the blocks per tensor."""

    def __init__(self, tensor: TensorFn, dtype: str, accuracy_level: int,
                 quantize: Callable[[str], PackedWeight | None]):
        super().__init__(tensor, dtype)
        self.accuracy_level = accuracy_level
        self.quantize = quantize  # None for a tensor kept as floats
        self._packed: tuple[PackedWeight, list[str]] | None = None

    def _initializers(self, tape: Tape, name: str, p: PackedWeight) -> list[str]:
        names = [tape.weight(f"{name}.q", p.B), tape.weight(f"{name}.scales", p.scales)]
        if p.zero_points is not None:
            names.append(tape.weight(f"{name}.zero_points", p.zero_points))
        return names

    def _matmul(self, tape: Tape, x: str, name: str, p: PackedWeight, inputs: list[str],
                output: str | None = None) -> str:
        return tape.op("MatMulNBits", [x, *inputs], domain=MS, name=name, K=p.K, N=p.N,
                       bits=p.bits, block_size=p.block_size,
                       accuracy_level=self.accuracy_level, output_names=[output])

    def linear(self, tape: Tape, x: str, name: str) -> str:
        p = self.quantize(name)
        if p is None:
            return super().linear(tape, x, name)
        return self._matmul(tape, x, name, p, self._initializers(tape, name, p))

    def fused_linear(self, tape: Tape, x: str, names: list[str], name: str) -> str:
        parts = [self.quantize(n) for n in names]
        if all(p is None for p in parts):
            return super().fused_linear(tape, x, names, name)
        stacked = None if None in parts else stack_rows(parts)  # type: ignore[arg-type]
        if stacked is None:  # GGUF tensors of different types: one MatMulNBits each
            return tape.op("Concat", [self.linear(tape, x, n) for n in names], axis=-1)
        return self._matmul(tape, x, name, stacked, self._initializers(tape, name, stacked))

    def embed(self, tape: Tape, ids: str) -> str:
        """GatherBlockQuantized over the same bytes MatMulNBits reads for the lm_head."""
        p = self.quantize("embed")
        if p is None:
            return super().embed(tape, ids)
        inputs = self._initializers(tape, "embed", p)
        self._packed = (p, inputs)
        blocks = p.K // p.block_size
        data = tape.alias("embed.rows", inputs[0], (p.N, p.K * p.bits // 8))
        scales = tape.alias("embed.row_scales", inputs[1], (p.N, blocks))
        gather_inputs = [data, ids, scales]
        if p.zero_points is not None:
            gather_inputs.append(tape.alias("embed.row_zero_points", inputs[2],
                                            (p.N, -(-blocks * p.bits // 8))))
        return tape.op("GatherBlockQuantized", gather_inputs, domain=MS, name="embed",
                       gather_axis=0, quantize_axis=1, block_size=p.block_size, bits=p.bits)

    def tied_head(self, tape: Tape, hidden: str, output: str | None = None) -> str:
        if self._packed is None:  # a float table (GGUF stored it as F16/F32)
            return super().tied_head(tape, hidden, output)
        p, inputs = self._packed
        return self._matmul(tape, hidden, "lm_head", p, inputs, output)


class TiledPacking(Packing):
    """`--dtype int4-cpu`: the int4 codes and zero points (scales in fp16) in the tiles that
    gemma-nb's CPU kernel reads in place; the tied table is one copy for Q4Gather and the head.
    A block is one DecoderLayer node: the kernel's q|k|v product, its attention (with
    GroupQueryAttention's inputs and attributes, on a float16 cache as llama.cpp's default: half
    the bytes a decode step reads from it; Gemma 3's q/k norms applied in it), the o product with
    its norms and residual add, gate|up with gelu_tanh(gate) * up, and down with its norms and
    residual add, one after another in one node."""

    fuses_layer = True
    cache_dtype = np.float16

    def __init__(self, tensor: TensorFn):
        super().__init__(tensor)
        self._tiles: list[str] = []

    def _tiled(self, tape: Tape, name: str, w: np.ndarray) -> list[str]:
        return [tape.weight(f"{name}.{part}", a)
                for part, a in zip(("tiles", "tile_scales", "tile_zeros"), quantize_to_tiles(w))]

    def decoder_layer(self, tape: Tape, p: str, normed: str, x: str, norms: list[str],
                      attention_inputs: list[str], presents: list[str],
                      **attrs: Any) -> tuple[str, str]:
        """(next_norm(out), out) of block p from one DecoderLayer node (gemma_nb/kernels/
        decoder_layer.cc): the q|k|v, o, gate|up (geglu) and down weights tiled as the separate
        Q4MatMuls take them; norms: post_attn, pre_ffw, post_ffw and next, weight names;
        attention_inputs: Attention's from past_key on."""
        stacked_qkv = np.concatenate([self.tensor(f"{p}.{n}") for n in ("q", "k", "v")])
        gate_up = alternate_tile_rows(self.tensor(f"{p}.gate"), self.tensor(f"{p}.up"))
        weights = [*self._tiled(tape, f"{p}.qkv", stacked_qkv),
                   *self._tiled(tape, f"{p}.o", self.tensor(f"{p}.o")),
                   *self._tiled(tape, f"{p}.gate_up", gate_up),
                   *self._tiled(tape, f"{p}.down", self.tensor(f"{p}.down"))]
        outputs = [tape.fresh(f"{p}/out"), tape.fresh(f"{p}/sum"), *presents]
        out, total, *_ = tape.op("DecoderLayer", [normed, x, *weights, *norms, *attention_inputs],
                                 domain=GEMMA_NB, name=f"{p}.layer", output_names=outputs, **attrs)
        return out, total

    def embed(self, tape: Tape, ids: str) -> str:
        self._tiles = self._tiled(tape, "embed", self.tensor("embed"))
        return tape.op("Q4Gather", [*self._tiles, ids], domain=GEMMA_NB, name="embed")

    def tied_head(self, tape: Tape, hidden: str, output: str | None = None) -> str:
        return tape.op("Q4MatMul", [hidden, *self._tiles], domain=GEMMA_NB, name="lm_head",
                       output_names=[output])


def table_bits(dtype: str, embedding_bits: int | None) -> int:
    """Bits of the tied embedding/lm_head table for int4/int8: `embedding_bits`, or the
    layers' width."""
    return embedding_bits or NBITS[dtype]


def packing_for(dtype: str, source: WeightsSource, *, block_size: int = DEFAULT_BLOCK_SIZE,
                accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
                embedding_bits: int | None = None) -> Packing:
    """The packing for `--dtype`; checks its options before any work starts.

    `embedding_bits` (int4 only; default 4) stores the tied embedding/lm_head table at 4 bits
    with zero points, like the layers, or at 8 bits, symmetric: on the Gemma 3 270M the 8-bit
    table lowers perplexity by ~4 % and costs 33 % more file and lm_head time per token
    (docs/quantization.md).
    """
    tensor = source.tensor
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if not 0 <= accuracy_level <= 4:
        raise QuantizationError(f"accuracy level must be 0..4, got {accuracy_level}")
    if embedding_bits is not None and (dtype != "int4" or embedding_bits not in (4, 8)):
        raise QuantizationError(f"embedding bits apply to --dtype int4 only, as 4 or 8; got "
                                f"{embedding_bits} for {dtype}")
    if dtype in ("fp32", "fp16"):
        return Packing(tensor, dtype)
    if dtype == "int4-cpu":
        if block_size != BLOCK:
            raise QuantizationError(f"--dtype int4-cpu has blocks of {BLOCK}; got block size "
                                    f"{block_size}")
        return TiledPacking(tensor)
    if dtype == "gguf":
        source.raw_tensor("embed")  # raises at once for a source without GGUF blocks
        return NBitsPacking(tensor, dtype, accuracy_level,
                            lambda name: _gguf_blocks(*source.raw_tensor(name)))
    bits, table = NBITS[dtype], table_bits(dtype, embedding_bits)
    quantize_symmetric(np.zeros((1, block_size), np.float32), bits, block_size)  # validates

    def quantize(name: str) -> PackedWeight:
        # 4-bit codes get zero points: a one-sided block wastes none of its 16 codes. 8-bit
        # stays symmetric: already within 0.04 % of fp32, and a zero point costs 0.25 bit/weight.
        width = table if name == "embed" else bits
        scheme = quantize_asymmetric if width == 4 else quantize_symmetric
        return scheme(tensor(name), width, block_size)

    return NBitsPacking(tensor, dtype, accuracy_level, quantize)


def _gguf_blocks(qtype: GGMLQuantizationType, data: np.ndarray) -> PackedWeight | None:
    """The MatMulNBits form of a GGUF block type (exact where one exists); None for floats."""
    if qtype in _FLOAT_TYPES:
        return None  # kept as floats: nothing to gain from blocks the file never had
    packed, _exact = reencode_gguf(qtype, data)
    return packed
