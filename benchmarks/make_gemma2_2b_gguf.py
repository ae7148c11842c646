"""Write a random-weight GGUF with the exact Gemma-2-2B shape (for export and speed benchmarks).

26 layers, hidden 2304, FFN 9216, 8 heads, 4 KV heads, head_dim 256, vocab 256000, sliding
window 4096, softcaps 50/30: the tensors, metadata and tokenizer fields that llama.cpp's
converter writes for Gemma-2, so llama.cpp, gemma-nb and transformers' GGUF loader all read it.
Weights are random (no real Gemma-2 weights exist on this machine), so the file measures speed
and memory, not quality. Tensors stream to disk one at a time.

    python benchmarks/make_gemma2_2b_gguf.py /tmp/gemma2-2b-random-f16.gguf [--type F16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, TokenType
from gguf.quants import quant_shape_to_byte_shape, quantize

SHAPE = dict(layers=26, hidden=2304, ffn=9216, heads=8, kv_heads=4, head_dim=256, vocab=256000,
             context=8192, window=4096)
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
TURNS = ["<start_of_turn>", "<end_of_turn>"]


def vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """A synthetic SentencePiece vocabulary: Gemma's special ids, 256 byte pieces, then words."""
    tokens = SPECIALS + TURNS + [f"<0x{b:02X}>" for b in range(256)]
    types = ([TokenType.CONTROL] * len(SPECIALS) + [TokenType.CONTROL] * len(TURNS)
             + [TokenType.BYTE] * 256)
    types[3] = TokenType.UNKNOWN
    letters = "abcdefghijklmnopqrstuvwxyz"
    n = size - len(tokens)
    words = ["\u2581" * (i % 2) + letters[i % 26] + letters[(i // 26) % 26] + str(i // 676)
             for i in range(n)]
    tokens += words
    types += [TokenType.NORMAL] * n
    scores = [0.0] * (len(tokens) - n) + [-float(i) for i in range(n)]
    return tokens, scores, [int(t) for t in types]


def tensors(s: dict[str, int]) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, numpy shape [rows, cols], kind) in the converter's order."""
    h, f, q, kv = s["hidden"], s["ffn"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    out = [("token_embd.weight", (s["vocab"], h), "matrix")]
    for i in range(s["layers"]):
        p = f"blk.{i}."
        out += [(p + "attn_norm.weight", (h,), "norm"), (p + "attn_q.weight", (q, h), "matrix"),
                (p + "attn_k.weight", (kv, h), "matrix"), (p + "attn_v.weight", (kv, h), "matrix"),
                (p + "attn_output.weight", (h, q), "matrix"),
                (p + "post_attention_norm.weight", (h,), "norm"),
                (p + "ffn_norm.weight", (h,), "norm"), (p + "ffn_gate.weight", (f, h), "matrix"),
                (p + "ffn_up.weight", (f, h), "matrix"), (p + "ffn_down.weight", (h, f), "matrix"),
                (p + "post_ffw_norm.weight", (h,), "norm")]
    return out + [("output_norm.weight", (h,), "norm")]


def random_tensor(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    if kind == "norm":  # stored as 1 + w, as llama.cpp's converter writes it
        return (1.0 + 0.1 * rng.standard_normal(shape, np.float32)).astype(np.float32)
    return (0.02 * rng.standard_normal(shape, np.float32)).astype(np.float32)


def write(path: Path, qtype: GGMLQuantizationType, seed: int = 0) -> Path:
    s = SHAPE
    writer = GGUFWriter(path, "gemma2")
    writer.add_name("Gemma-2-2B shape, random weights")
    writer.add_context_length(s["context"])
    writer.add_embedding_length(s["hidden"])
    writer.add_block_count(s["layers"])
    writer.add_feed_forward_length(s["ffn"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_key_length(s["head_dim"])
    writer.add_value_length(s["head_dim"])
    writer.add_sliding_window(s["window"])
    writer.add_attn_logit_softcapping(50.0)
    writer.add_final_logit_softcapping(30.0)
    writer.add_file_type(int(qtype) if qtype != GGMLQuantizationType.F32 else 0)
    tokens, scores, types = vocabulary(s["vocab"])
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)

    plan = tensors(s)
    for name, shape, kind in plan:
        tq = qtype if kind == "matrix" else GGMLQuantizationType.F32
        dtype = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16}
        stored = shape if tq in dtype else quant_shape_to_byte_shape(shape, tq)  # bytes per row
        itemsize = np.dtype(dtype.get(tq, np.uint8)).itemsize
        writer.add_tensor_info(name, stored, np.dtype(dtype.get(tq, np.uint8)),
                               int(np.prod(stored)) * itemsize, raw_dtype=tq)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for name, shape, kind in plan:
        values = random_tensor(rng, shape, kind)
        if kind == "matrix" and qtype == GGMLQuantizationType.F16:
            values = values.astype(np.float16)
        elif kind == "matrix" and qtype != GGMLQuantizationType.F32:
            values = quantize(values, qtype)
        writer.write_tensor_data(values)
    writer.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--type", default="F16", choices=["F32", "F16", "Q8_0"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write(args.output, GGMLQuantizationType[args.type], args.seed))


if __name__ == "__main__":
    main()
