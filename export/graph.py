"""The Gemma decoder as an ONNX graph (ONNX Runtime contrib ops for attention).

Each block mirrors its equation (Gemma-2 report, transformers' `modeling_gemma2.py`):
    h   = x + post_attn_norm(attention(input_norm(x)))
    out = h + post_ffw_norm(mlp(pre_ffw_norm(h)))
`GroupQueryAttention` (com.microsoft) applies RoPE (split halves), the score scale, the softcap,
the causal/sliding mask and a KV cache whose past and present may share one buffer; `int4-cpu`
graphs run gemma-nb's `DecoderLayer` (gemma_nb/kernels/decoder_layer.cc), whose attention takes
the same inputs and attributes, plus Gemma-3's q/k norm weights (in place of a Split and per-head
RMSNorms).

Fewer, larger kernels for speed (a decode step is ~15 ops a layer, each with a fixed cost):
q|k|v and gate|up are each one matmul over stacked weights, and each residual Add is fused with
the RMSNorm that reads its sum (SkipSimplifiedLayerNormalization, the next block's input norm
or the final norm), so a block hands the next one its output and that output normalized.
`int4-cpu` graphs run each block as one op, gemma-nb's DecoderLayer: its matmuls make the o and
down projections' post-norms, residual adds and the norms after them, and the MLP's
gelu_tanh(gate) * up (a block was 5 ops before, each with onnxruntime's ~2 us between ops).

Graph inputs: input_ids [batch, seq] int64; seqlens_k [batch] int32 (= total length - 1);
total_sequence_length [] int32; logits_index [n] int64 (the positions whose logits we want, so
generation computes one row and scoring all); past_key_values.{i}.key/value.
Outputs: logits [batch, n, vocab] float32; present.{i}.key/value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from gemma_nb.config import GemmaConfig

from .packing import Packing, TensorFn
from .tape import Tape

__all__ = ["build_decoder", "OPSET", "rope_cache"]

OPSET = 21  # Gelu with approximate="tanh" needs opset 20+
MS = "com.microsoft"



def rms_norm(t: Tape, x: str, weight: np.ndarray, name: str, eps: float) -> str:
    """x * rsqrt(mean(x^2) + eps) * (1 + w), in fp32; `weight` already holds 1 + w."""
    return t.op("SimplifiedLayerNormalization", [x, t.weight(name, weight)],
                axis=-1, epsilon=eps, stash_type=1, name=name)


def add_rms_norm(t: Tape, x: str, delta: str, weight: np.ndarray, name: str,
                 eps: float) -> tuple[str, str]:
    """(rms_norm(x + delta), x + delta), both from one SkipSimplifiedLayerNormalization."""
    normed, total = t.fresh(f"{name}/out"), t.fresh(f"{name}/sum")
    t.op("SkipSimplifiedLayerNormalization", [delta, x, t.weight(name, weight)], domain=MS,
         name=name, output_names=[normed, "", "", total], epsilon=eps)
    return normed, total


def residual_projection(t: Tape, cfg: GemmaConfig, pack: Packing, tensor: TensorFn, x: str,
                        name: str, norm: str, residual: str, next_norm: str) -> tuple[str, str]:
    """(next_norm(h), h) for h = residual + norm(x @ W^T): a block's o or down projection, its
    post-norm, the residual add and the norm that reads the sum (the next one's input)."""
    eps = cfg.rms_norm_eps
    delta = rms_norm(t, pack.linear(t, x, name), tensor(norm), norm, eps)
    return add_rms_norm(t, residual, delta, tensor(next_norm), next_norm, eps)


def head_norm(t: Tape, x: str, weight: np.ndarray, name: str, heads: int, cfg: GemmaConfig) -> str:
    """Gemma-3 QK-norm: RMSNorm over head_dim of each head, before RoPE."""
    per_head = t.op("Reshape", [x, t.constant("heads_shape", [0, 0, heads, cfg.head_dim])])
    normed = rms_norm(t, per_head, weight, name, cfg.rms_norm_eps)
    return t.op("Reshape", [normed, t.constant("flat_shape", [0, 0, heads * cfg.head_dim])])


def rope_cache(cfg: GemmaConfig, base: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables [positions, head_dim/2] for GroupQueryAttention's rotary."""
    inv_freq = 1.0 / base ** (np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim)
    angles = np.outer(np.arange(cfg.context_length, dtype=np.float64) / scale, inv_freq)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def attention(t: Tape, cfg: GemmaConfig, pack: Packing, tensor: TensorFn, x: str, i: int,
              rope: tuple[str, str], seqlens_k: str, total_len: str) -> str:
    """The heads' outputs, before the o projection."""
    p = f"layers.{i}"
    qkv = pack.fused_linear(t, x, [f"{p}.q", f"{p}.k", f"{p}.v"], f"{p}.qkv")
    qkv_inputs = [qkv, "", ""]  # GroupQueryAttention splits a packed q|k|v itself
    if cfg.qk_norm:
        q_size, kv_size = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        q, k, v = t.op("Split", [qkv, t.constant("qkv_sizes", [q_size, kv_size, kv_size])],
                       axis=-1, outputs=3)
        q = head_norm(t, q, tensor(f"{p}.q_norm"), f"{p}.q_norm", cfg.num_heads, cfg)
        k = head_norm(t, k, tensor(f"{p}.k_norm"), f"{p}.k_norm", cfg.num_kv_heads, cfg)
        qkv_inputs = [q, k, v]
    return t.op("GroupQueryAttention", [*qkv_inputs, *past_names(i), seqlens_k, total_len, *rope],
                domain=MS, name=f"{p}.attn",
                output_names=[t.fresh(f"{p}.attn_out"), *present_names(i)],
                **attention_attributes(cfg, i))[0]


def past_names(i: int) -> list[str]:
    return [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]


def present_names(i: int) -> list[str]:
    return [f"present.{i}.key", f"present.{i}.value"]


def attention_attributes(cfg: GemmaConfig, i: int) -> dict[str, Any]:
    """GroupQueryAttention's attributes for block i (gemma-nb's Attention and DecoderLayer take
    the same)."""
    return {"num_heads": cfg.num_heads, "kv_num_heads": cfg.num_kv_heads,
            "scale": cfg.query_pre_attn_scalar**-0.5, "softcap": cfg.attn_softcap or 0.0,
            "local_window_size": cfg.sliding_window if cfg.is_sliding(i) else -1,
            "do_rotary": 1, "rotary_interleaved": 0}


def mlp(t: Tape, cfg: GemmaConfig, pack: Packing, x: str, i: int) -> str:
    """gelu_tanh(gate(x)) * up(x), before the down projection."""
    p, size = f"layers.{i}", cfg.intermediate_size
    gate_up = pack.fused_linear(t, x, [f"{p}.gate", f"{p}.up"], f"{p}.gate_up")
    gate, up = t.op("Split", [gate_up, t.constant("ffn_sizes", [size, size])], axis=-1,
                    outputs=2)
    return t.op("Mul", [t.op("Gelu", [gate], approximate="tanh"), up])


def decoder_layer(t: Tape, cfg: GemmaConfig, pack: Packing, tensor: TensorFn, normed: str,
                  x: str, i: int, rope: tuple[str, str], seqlens_k: str, total_len: str,
                  next_norm: str) -> tuple[str, str]:
    """One block on its input x (`normed`: x through its input norm); returns its output
    through `next_norm` (the next block's input norm, or the final norm), and its output."""
    p = f"layers.{i}"
    if pack.fuses_layer:
        return fused_decoder_layer(t, cfg, pack, tensor, normed, x, i, rope, seqlens_k, total_len,
                                   next_norm)
    heads = attention(t, cfg, pack, tensor, normed, i, rope, seqlens_k, total_len)
    normed, h = residual_projection(t, cfg, pack, tensor, heads, f"{p}.o", f"{p}.post_attn_norm",
                                    x, f"{p}.pre_ffw_norm")
    return residual_projection(t, cfg, pack, tensor, mlp(t, cfg, pack, normed, i), f"{p}.down",
                               f"{p}.post_ffw_norm", h, next_norm)


def fused_decoder_layer(t: Tape, cfg: GemmaConfig, pack: Packing, tensor: TensorFn, normed: str,
                        x: str, i: int, rope: tuple[str, str], seqlens_k: str, total_len: str,
                        next_norm: str) -> tuple[str, str]:
    """decoder_layer as one op of the packing's: the norms, the attention's inputs after q|k|v
    and its attributes are the same as the separate ops take."""
    p = f"layers.{i}"
    norms = [t.weight(n, tensor(n)) for n in (f"{p}.post_attn_norm", f"{p}.pre_ffw_norm",
                                              f"{p}.post_ffw_norm", next_norm)]
    qk_norms, qk_attrs = [], {}
    if cfg.qk_norm:
        qk_norms = [t.weight(f"{p}.{n}", tensor(f"{p}.{n}")) for n in ("q_norm", "k_norm")]
        qk_attrs = {"qk_norm_epsilon": cfg.rms_norm_eps}
    attention_inputs = [*past_names(i), seqlens_k, total_len, *rope, *qk_norms]
    return pack.decoder_layer(t, p, normed, x, norms, attention_inputs, present_names(i),
                              norm_epsilon=cfg.rms_norm_eps, **attention_attributes(cfg, i),
                              **qk_attrs)


def softcap(t: Tape, x: str, cap: float, output: str) -> str:
    """cap * tanh(x / cap): keeps the argmax, changes every logit value."""
    c = t.constant("final_softcap", np.float32(cap))
    return t.op("Mul", [t.op("Tanh", [t.op("Div", [x, c])]), c], output_names=[output])


def lm_head(t: Tape, cfg: GemmaConfig, pack: Packing, normed: str, logits_index: str) -> str:
    """The tied (unscaled) embedding on the final-normed hidden states, only at the positions
    in logits_index. The last op writes the graph output `logits` itself: an op after it that
    only reshaped would copy the whole vocabulary's logits into the caller's bound buffer."""
    picked = t.op("Gather", [normed, logits_index], axis=1)  # [batch, positions, hidden]
    if not cfg.final_softcap:
        return pack.tied_head(t, picked, "logits")
    return softcap(t, pack.tied_head(t, picked), cfg.final_softcap, "logits")


def build_decoder(cfg: GemmaConfig, pack: Packing, tensor: TensorFn, tape: Tape,
                  progress: Callable[[], None] = lambda: None) -> onnx.ModelProto:
    """Build the whole decoder; `tensor(name)` yields float32 weights one at a time."""
    t = tape
    embedded = pack.embed(t, "input_ids")
    x = t.op("Mul", [embedded, t.constant("embed_scale", np.float32(cfg.embed_scale))])
    ropes: dict[tuple[float, float], tuple[str, str]] = {}
    normed = rms_norm(t, x, tensor("layers.0.input_norm"), "layers.0.input_norm", cfg.rms_norm_eps)
    for i in range(cfg.num_layers):
        base, scale = ((cfg.rope_base_local, 1.0) if cfg.is_sliding(i)
                       else (cfg.rope_base_global, cfg.rope_scale_global))
        if (base, scale) not in ropes:
            cos, sin = rope_cache(cfg, base, scale)
            ropes[(base, scale)] = (t.weight(f"cos_{base:g}", cos), t.weight(f"sin_{base:g}", sin))
        next_norm = f"layers.{i + 1}.input_norm" if i + 1 < cfg.num_layers else "final_norm"
        normed, x = decoder_layer(t, cfg, pack, tensor, normed, x, i, ropes[(base, scale)],
                                  "seqlens_k", "total_sequence_length", next_norm)
        progress()
    lm_head(t, cfg, pack, normed, "logits_index")

    kv_shape = ["batch", cfg.num_kv_heads, "past_sequence_length", cfg.head_dim]
    present_shape = ["batch", cfg.num_kv_heads, "total_sequence_length", cfg.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("logits_index", TensorProto.INT64, ["positions"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                             ["batch", "positions", cfg.vocab_size])]
    cache_type = helper.np_dtype_to_tensor_dtype(np.dtype(pack.cache_dtype))
    for i in range(cfg.num_layers):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(
                f"past_key_values.{i}.{kind}", cache_type, kv_shape))
            outputs.append(helper.make_tensor_value_info(
                f"present.{i}.{kind}", cache_type, present_shape))
    graph = helper.make_graph(t.nodes, "gemma_decoder", inputs, outputs, t.initializers)
    custom = sorted({n.domain for n in t.nodes} - {"", MS})  # gemma_nb: int4-cpu's kernel
    return helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1),
                       *(helper.make_opsetid(domain, 1) for domain in custom)],
        producer_name="gemma-nb",
        ir_version=10,
    )
