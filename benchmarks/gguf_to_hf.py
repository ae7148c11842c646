"""Convert a Gemma-2 / Gemma-3 (text) GGUF into a Hugging Face folder, for peers that only read HF.

onnxruntime-genai's model builder needs a Hugging Face folder (config.json, safetensors,
tokenizer) for Gemma-3, and for quantized GGUFs of any architecture. This writes one from the
same weights llama.cpp and gemma-nb read, so all three runtimes are measured on one set of
weights. Not part of CI (benchmarks/compare.py calls it when it builds the peers' models).

    python benchmarks/gguf_to_hf.py /tmp/g2b-f16.gguf /tmp/peers/g2b-hf
    python benchmarks/gguf_to_hf.py gemma-3-270m-Q4_K_M.gguf /tmp/peers/g270-hf --dtype float32

- Tensors are read (and dequantized, for Q4_K/Q6_K/Q8_0/...) by gemma_export's GGUF reader, so
  the names follow export/tensor_names.py.
- Norm weights: llama.cpp's converter stores Gemma's RMSNorm multiplier 1 + w; HF stores w.
  We subtract 1 going back (the trap documented in docs/architecture.md).
- The output embedding is tied (Gemma), so there is no lm_head tensor.
- tokenizer.model is rebuilt from the GGUF's vocabulary by gemma_export's tokenizer module, and
  transformers' GemmaTokenizer turns it into tokenizer.json.
- config.json is written in the transformers 4.x layout (rope_theta, rope_local_base_freq),
  which transformers 5 also reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from gemma_export.gguf_source import GGUFSource
from gemma_export.tensor_names import HF_NAMES, NORMS, model_tensor_names, role_of, source_name
from safetensors.torch import save_file

SHARD_BYTES = 1 << 30  # keep at most ~1 GiB of converted tensors in memory at a time
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def hf_config(cfg, dtype: str) -> dict:
    """transformers config.json for a GemmaConfig (gemma_nb.config)."""
    full = {"sliding": "sliding_attention", "full": "full_attention"}
    common = {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": float(f"{cfg.rms_norm_eps:.7g}"),  # GGUF holds it as float32
        "query_pre_attn_scalar": _number(cfg.query_pre_attn_scalar),
        "sliding_window": cfg.sliding_window,
        "layer_types": [full[t] for t in cfg.layer_types],
        "attn_logit_softcapping": cfg.attn_softcap,
        "final_logit_softcapping": cfg.final_softcap,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_act": "gelu_pytorch_tanh",
        "attention_bias": False,
        "tie_word_embeddings": True,
        "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
        "torch_dtype": dtype,
    }
    if cfg.architecture == "gemma2":
        return dict(architectures=["Gemma2ForCausalLM"], model_type="gemma2",
                    rope_theta=cfg.rope_base_global, cache_implementation="hybrid", **common)
    scaling = None
    if cfg.rope_scale_global != 1.0:
        scaling = {"rope_type": "linear", "factor": cfg.rope_scale_global}
    return dict(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                rope_theta=cfg.rope_base_global, rope_local_base_freq=cfg.rope_base_local,
                rope_scaling=scaling, sliding_window_pattern=6, **common)


def _number(x: float) -> int | float:
    """transformers' strict config fields want an int where the value is integral."""
    return int(x) if float(x).is_integer() else x


def generation_config(src: GGUFSource) -> dict:
    """bos/eos/pad ids from the GGUF; <end_of_turn> also stops generation, as in Gemma's."""
    f = src.fields
    eos = [int(f["tokenizer.ggml.eos_token_id"])]
    tokens = f["tokenizer.ggml.tokens"]
    if "<end_of_turn>" in tokens:
        eos.append(tokens.index("<end_of_turn>"))
    return {"bos_token_id": int(f["tokenizer.ggml.bos_token_id"]), "eos_token_id": eos,
            "pad_token_id": int(f.get("tokenizer.ggml.padding_token_id", 0))}


def default_dtype(src: GGUFSource) -> str:
    """float16 for an all-F16 file (exact), else float32 (dequantized blocks are not fp16)."""
    kinds = {src.raw_tensor(n)[0].name for n in ("embed", "layers.0.q", "layers.0.down")}
    return "float16" if kinds == {"F16"} else "bfloat16" if kinds == {"BF16"} else "float32"


def hf_tensor(src: GGUFSource, ours: str, dtype: torch.dtype) -> torch.Tensor:
    values = torch.from_numpy(src.tensor(ours))
    if role_of(ours) in NORMS:
        values = values - 1.0  # GGUF holds 1 + w, HF holds w
    return values.to(dtype).contiguous()


def write_weights(src: GGUFSource, out: Path, dtype: torch.dtype) -> None:
    """Sharded model-0000k-of-0000n.safetensors plus the index transformers reads."""
    names = model_tensor_names(src.config.num_layers, src.config.qk_norm)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    files: list[Path] = []
    weight_map: dict[str, int] = {}
    total = 0
    for ours in names:
        hf_name = source_name(ours, HF_NAMES)
        t = hf_tensor(src, ours, dtype)
        if size and size + t.nbytes > SHARD_BYTES:
            files.append(_flush(shards[-1], out, len(files)))
            shards.append({})
            size = 0
        shards[-1][hf_name] = t
        weight_map[hf_name] = len(files)
        size += t.nbytes
        total += t.nbytes
    files.append(_flush(shards[-1], out, len(files)))
    final = [out / f"model-{i + 1:05d}-of-{len(files):05d}.safetensors" for i in range(len(files))]
    for tmp, dst in zip(files, final):
        tmp.rename(dst)
    index = {"metadata": {"total_size": total},
             "weight_map": {k: final[i].name for k, i in weight_map.items()}}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))


def _flush(shard: dict[str, torch.Tensor], out: Path, i: int) -> Path:
    path = out / f"shard-{i}.tmp.safetensors"
    save_file(shard, str(path), metadata={"format": "pt"})
    shard.clear()
    return path


def write_tokenizer(src: GGUFSource, out: Path, context: int) -> None:
    (out / "tokenizer.model").write_bytes(src.tokenizer_model())
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>",
        "pad_token": "<pad>", "unk_token": "<unk>", "add_bos_token": True,
        "add_eos_token": False, "model_max_length": context}, indent=1))
    from transformers import AutoTokenizer  # writes tokenizer.json from tokenizer.model
    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))


def convert(gguf: Path, out: Path, dtype: str | None = None) -> Path:
    src = GGUFSource(gguf)
    dtype = dtype or default_dtype(src)
    out.mkdir(parents=True, exist_ok=True)
    cfg = hf_config(src.config, dtype)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    (out / "generation_config.json").write_text(json.dumps(generation_config(src), indent=1))
    write_weights(src, out, DTYPES[dtype])
    write_tokenizer(src, out, src.config.context_length)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtype", choices=sorted(DTYPES),
                    help="safetensors dtype (default: float16 for an F16 GGUF, else float32)")
    args = ap.parse_args()
    print(convert(args.gguf, args.out, args.dtype))


if __name__ == "__main__":
    main()
