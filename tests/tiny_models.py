"""Tiny random Gemma-2 / Gemma-3 models: the independent reference for the ONNX exporter.

Everything here comes from transformers, sentencepiece and gguf (llama.cpp's own package), never
from gemma_nb: a test comparing our ONNX output to these helpers checks it against others' code.

The weights are random but *rescaled* so that each Gemma quirk changes the numbers visibly:
- Gemma-2 attention scores reach well past the 50 softcap and final logits well past the 30 softcap,
  so a missing or misplaced ``c * tanh(x / c)`` shows up in logit values (tanh keeps the argmax).
- Every RMSNorm weight ``w`` is clearly nonzero, so ``* w`` instead of ``* (1 + w)`` shows up.
- ``query_pre_attn_scalar`` differs from ``head_dim``, so scaling by ``head_dim ** -0.5`` shows up.
- The sliding window is tiny (8): a wrong window or local/global parity shows up past 8 tokens.
- Gemma-3 local and global layers use different RoPE bases (10000 / 1e6), set explicitly.

Heavy imports (torch, transformers, sentencepiece, gguf) happen inside the functions, so importing
this module stays cheap for test collection.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# Gemma's fixed special ids (pad 0, eos 1, bos 2, unk 3); the chat markers come right after.
PAD_ID, EOS_ID, BOS_ID, UNK_ID = 0, 1, 2, 3
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
# "<table>" is a non-special user-defined piece, like Gemma's HTML-tag pieces: it ends up
# USER_DEFINED in the GGUF while the two chat markers end up CONTROL, so both types are exercised.
SLIDING_WINDOW = 8  # of the tiny fixtures: sequences run to 8x it
USER_SYMBOLS = [START_OF_TURN, END_OF_TURN, "<table>"]
# Pieces HF's Gemma tokenizer_config marks "special": llama.cpp's converter types them CONTROL.
SPECIAL_ADDED = frozenset({START_OF_TURN, END_OF_TURN})

# English prose, code with indentation (whitespace-run pieces), digits (split_digits), chat markers
# and a little non-ASCII; rarer characters fall outside character_coverage and go to byte fallback.
_CORPUS_LINES = [
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "Once upon a time there was a small model that learned to speak in short, simple sentences.",
    "She said that the weather would be better tomorrow, and everyone went home happy.",
    "In 2024 the team trained 3 models on 128 machines for 17 days and measured 99.5 percent.",
    "Questions: what is the capital of France? Paris is the capital of France.",
    "Please write a function that returns the sum of two numbers and explain how it works.",
    "The history of computing starts with mechanical calculators and ends with modern processors.",
    "<start_of_turn>user\nHello, how are you today?<end_of_turn>",
    "<start_of_turn>model\nI am fine, thank you!<end_of_turn>",
    "<start_of_turn>user\nWrite a poem about the sea.<end_of_turn>",
    "<table><tr><td>name</td><td>value</td></tr></table>",
    "def add(a, b):\n    return a + b\n",
    'def main() -> None:\n    for i in range(10):\n        print(f"value {i} = {i * i}")\n',
    "class Counter:\n    def __init__(self) -> None:\n        self.count = 0\n",
    "    def inc(self) -> int:\n        self.count += 1\n        return self.count\n",
    'if __name__ == "__main__":\n    main()\n',
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape, x.sum())\n",
    "for (int i = 0; i < n; ++i) { total += values[i]; }",
    "Café, naïve, résumé, Straße, über, señor, déjà vu.",
    "Ελληνικά, русский, 日本語, 한국어, emoji 🙂.",
    "    indented line with four spaces\n\ttab indented line\n        eight spaces here",
    "Numbers like 1234567890 and 3.14159 and -42 are split into single digits.",
]


def train_tiny_tokenizer(out_dir: Path, vocab_size: int = 384) -> Path:
    """Train a Gemma-like SentencePiece BPE model into ``out_dir/tokenizer.model``; return its path.

    Settings copy Gemma's trainer spec (byte fallback, identity normalizer, no dummy prefix,
    whitespace kept, digits split) so our tokenizer code meets the piece kinds of the real 256k
    vocabulary (BYTE, CONTROL, USER_DEFINED, UNKNOWN, whitespace-only pieces). One thread, no
    shuffling, fixed seed, no paths recorded: the same arguments give the same bytes (cacheable).
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(0)
    # One sentence per line; repeated so merges have counts to rank by. Fed from memory, not from a
    # temp file: the .model records its input path and prefix, and temp names broke byte equality.
    lines = [part for line in _CORPUS_LINES for part in line.split("\n") if part] * 3
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        split_digits=True,
        # Below 1 so rare scripts (Greek, CJK, emoji) go to byte pieces and leave room for merges.
        character_coverage=0.98,
        pad_id=PAD_ID,
        eos_id=EOS_ID,
        bos_id=BOS_ID,
        unk_id=UNK_ID,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        user_defined_symbols=USER_SYMBOLS,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    target = out_dir / "tokenizer.model"
    target.write_bytes(model.getvalue())
    return target


def _vocab_size(tokenizer_model: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tokenizer_model)).get_piece_size()


def _fill_(
    model: torch.nn.Module,
    seed: int,
    stds: dict[str, float],
    norms: dict[str, tuple[float, float]],
) -> None:
    """Overwrite every parameter with seeded normal noise, scaled per role.

    ``stds`` maps a name fragment (e.g. "q_proj") to a weight std; ``norms`` maps a norm-name
    fragment to the (mean, std) of its ``w``. Unlisted norms get (0, 0.5): ``w`` is clearly nonzero.
    A private generator keeps the weights a function of ``seed`` alone.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        # named_parameters() lists the tied lm_head / embed_tokens Parameter once.
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                mean, std = next((ms for key, ms in norms.items() if key in name), (0.0, 0.5))
                p.copy_(mean + std * noise)
            else:
                p.copy_(next(s for key, s in stds.items() if key in name) * noise)


# Shared by both models. With a tied random embedding, a residual stream dominated by the input
# embedding makes greedy decoding repeat the last token forever; post-norm means of 2 (|1 + w| ~ 3)
# let the layers outweigh the embedding (std 0.25, times sqrt(64) = 8); a final-norm mean of 6
# spreads the logits.
_STDS = {
    "v_proj": 0.125,
    "o_proj": 0.125,
    "gate_proj": 0.15,
    "up_proj": 0.15,
    "down_proj": 0.09,
    "embed_tokens": 0.25,
}
_NORMS = {
    "post_attention_layernorm": (2.0, 1.0),
    "post_feedforward_layernorm": (2.0, 1.0),
    "model.norm.": (3.5, 0.5),
}


def _save(model: Any, tokenizer_model: Path, out_dir: Path, shards: int) -> None:
    """``save_pretrained`` with the max_shard_size that gives exactly ``shards`` safetensors."""
    from huggingface_hub import split_torch_state_dict_into_shards

    # lm_head is tied to embed_tokens: save_pretrained does not write it.
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    total = sum(t.numel() * t.element_size() for t in state.values())

    def count(limit: int) -> int:
        return len(
            split_torch_state_dict_into_shards(state, max_shard_size=limit).filename_to_tensors
        )

    # Shards are filled greedily in key order, so the count only falls as the limit grows: bisect.
    lo, hi = 1, total + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if count(mid) <= shards:
            hi = mid
        else:
            lo = mid + 1
    if count(lo) != shards:
        raise ValueError(f"cannot split {len(state)} tensors into exactly {shards} shards")
    model.save_pretrained(out_dir, max_shard_size=lo)
    n = len(list(out_dir.glob("*.safetensors")))
    assert n == shards, f"expected {shards} safetensors files, got {n}"
    if tokenizer_model.parent != out_dir:
        (out_dir / "tokenizer.model").write_bytes(tokenizer_model.read_bytes())


# What both tiny models share besides their shapes.
_COMMON = dict(
    rms_norm_eps=1e-6,
    hidden_activation="gelu_pytorch_tanh",
    tie_word_embeddings=True,
    pad_token_id=PAD_ID,
    eos_token_id=EOS_ID,
    bos_token_id=BOS_ID,
    attn_implementation="eager",
)


def _build(model: Any, tok: Path, out_dir: Path, shards: int, seed: int,
           stds: dict[str, float], norms: dict[str, tuple[float, float]]) -> Path:
    """Rescale a freshly built model's weights (seeded), then save it with its tokenizer."""
    _fill_(model.eval(), seed, stds=stds, norms=norms)
    _save(model, tok, out_dir, shards)
    return out_dir


def make_tiny_gemma2(
    out_dir: Path, *, sliding_window: int = 8, shards: int = 2, seed: int = 0,
    query_pre_attn_scalar: int = 24,
) -> Path:
    """Build, rescale, save a 4-layer Gemma-2: config.json, safetensors shards, tokenizer.model."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    out_dir = Path(out_dir)
    tok = train_tiny_tokenizer(out_dir)
    config = Gemma2Config(
        vocab_size=_vocab_size(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,  # layers 0, 2 local (sliding), 1, 3 global
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=sliding_window,
        # 24 != head_dim: scaling by head_dim**-0.5 would be caught. A model meant for GGUF
        # passes head_dim (16): GGUF cannot store the scalar, readers derive it as llama.cpp does.
        query_pre_attn_scalar=query_pre_attn_scalar,
        attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **_COMMON,
    )
    return _build(
        Gemma2ForCausalLM(config), tok, out_dir, shards, seed,
        # Large q/k: scores (after the 24**-0.5 scale) run well past the attention softcap (50);
        # the final-norm mean of 3.5 takes the logits past the final softcap (30). Larger scales
        # make the model so ill-conditioned that fp32 rounding alone nears the 2e-3 tolerance.
        stds={"q_proj": 0.5, "k_proj": 0.5, **_STDS},
        norms=_NORMS,
    )


def make_tiny_gemma3(
    out_dir: Path, *, sliding_window: int = 8, seed: int = 0, shards: int = 2,
    query_pre_attn_scalar: int = 32,
) -> Path:
    """Build, rescale and save a 7-layer Gemma-3 text model (layer 5 global, the rest local)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    out_dir = Path(out_dir)
    tok = train_tiny_tokenizer(out_dir)
    # 5:1 pattern: layer i is global when (i + 1) % 6 == 0, so only layer 5; layer 6 is local again.
    n_layers = 7
    config = Gemma3TextConfig(
        vocab_size=_vocab_size(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=256,
        sliding_window=sliding_window,
        layer_types=[
            "full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n_layers)
        ],
        # transformers 5.x: one RoPE dict per layer type (Gemma-3: local 10k, global 1M).
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
        query_pre_attn_scalar=query_pre_attn_scalar,  # 32 != head_dim (16); GGUF: pass 16
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        **_COMMON,
    )
    return _build(
        Gemma3ForCausalLM(config), tok, out_dir, shards, seed,
        # QK-norm fixes |q|, |k| near |1 + w| whatever q_proj/k_proj do: a q/k-norm mean of 2
        # makes attention sharp rather than uniform (and a missing "+1" obvious).
        stds={"q_proj": 0.15, "k_proj": 0.15, **_STDS},
        norms={"q_norm": (2.0, 0.5), "k_norm": (2.0, 0.5), **_NORMS},
    )


# --------------------------------------------------------------------------------------------- GGUF

_TENSOR_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q5_0")


def _load_hf_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of a (possibly sharded) safetensors checkpoint, in the index's file order."""
    from safetensors.numpy import load_file

    index = hf_dir / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.is_file()
        else ["model.safetensors"]
    )
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(load_file(hf_dir / f))
    return tensors


def _sentencepiece_vocab(tokenizer_model: Path) -> tuple[list[bytes], list[float], list[int]]:
    """Tokens, scores and types as llama.cpp's ``_create_vocab_sentencepiece`` builds them.

    The converter types pieces from the .model (UNKNOWN / CONTROL / UNUSED / BYTE, else NORMAL: a
    USER_DEFINED piece of the .model is NORMAL at this stage), then overrides the entries that HF's
    tokenizer_config.json lists in ``added_tokens_decoder``: "special" ones become CONTROL, others
    USER_DEFINED, score -1000. For Gemma: the user-defined pieces, with the chat markers special.
    """
    import sentencepiece as spm
    from gguf import TokenType

    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_model))
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        kind = TokenType.NORMAL
        if sp.is_unknown(i):
            kind = TokenType.UNKNOWN
        elif sp.is_control(i):
            kind = TokenType.CONTROL
        elif sp.is_unused(i):
            kind = TokenType.UNUSED
        elif sp.is_byte(i):
            kind = TokenType.BYTE
        score = sp.get_score(i)
        if piece in USER_SYMBOLS:  # the tokenizer_config.json added_tokens_decoder pass
            kind = TokenType.CONTROL if piece in SPECIAL_ADDED else TokenType.USER_DEFINED
            score = -1000.0
        tokens.append(piece.encode("utf-8"))
        scores.append(float(score))
        types.append(int(kind))
    return tokens, scores, types


def hf_to_gguf(hf_dir: Path, gguf_path: Path, *, tensor_type: str = "F32") -> Path:
    """Write ``hf_dir`` as a GGUF the way llama.cpp's convert_hf_to_gguf.py does for Gemma-2/3.

    Same metadata keys, same tensor names (gguf's own TensorNameMap), every ``*norm.weight`` stored
    as ``1 + w``, no Q/K permutation, no output.weight (tied), 1-D tensors in F32 and 2-D ones in
    ``tensor_type``. Returns ``gguf_path``.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q

    if tensor_type not in _TENSOR_TYPES:
        raise ValueError(f"tensor_type must be one of {_TENSOR_TYPES}, got {tensor_type!r}")
    hf_dir, gguf_path = Path(hf_dir), Path(gguf_path)
    cfg = json.loads((hf_dir / "config.json").read_text())
    arch = {"gemma2": gguf.MODEL_ARCH.GEMMA2, "gemma3_text": gguf.MODEL_ARCH.GEMMA3}[
        cfg["model_type"]
    ]
    qtype = Q[tensor_type]
    ftype = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "BF16": gguf.LlamaFileType.MOSTLY_BF16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
        "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
    }[tensor_type]

    w = gguf.GGUFWriter(gguf_path, gguf.MODEL_ARCH_NAMES[arch])
    w.add_type("model")
    w.add_name(hf_dir.name)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_key_length(cfg["head_dim"])
    w.add_value_length(cfg["head_dim"])
    w.add_file_type(ftype)
    if arch == gguf.MODEL_ARCH.GEMMA2:
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    else:
        # Only the global base is stored; llama.cpp hard-codes the local 10000 and the 5:1 pattern.
        rope = cfg["rope_parameters"]
        w.add_rope_freq_base(rope.get("full_attention", rope).get("rope_theta", 1_000_000.0))
        if cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    w.add_sliding_window(cfg["sliding_window"])

    # _set_vocab_sentencepiece + SpecialVocab + add_add_space_prefix(False)
    tokens, scores, types = _sentencepiece_vocab(hf_dir / "tokenizer.model")
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_unk_token_id(UNK_ID)
    w.add_pad_token_id(PAD_ID)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)

    names = gguf.TensorNameMap(arch, cfg["num_hidden_layers"])
    for hf_name, data in _load_hf_tensors(hf_dir).items():
        if hf_name == "lm_head.weight":  # tied; the converter skips it
            continue
        data = data.astype(np.float32)
        if hf_name.endswith(
            "norm.weight"
        ):  # Gemma's RMSNorm scales by 1 + w: llama.cpp stores that
            data = data + np.float32(1.0)
        name = names.get_name(hf_name, try_suffixes=(".weight",))
        if name is None:
            raise ValueError(f"no GGUF name for {hf_name}")
        t = Q.F32 if data.ndim <= 1 else qtype
        w.add_tensor(name, gguf.quants.quantize(data, t), raw_dtype=t)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return gguf_path


# ---------------------------------------------------------------------------------------- reference


@functools.lru_cache(maxsize=8)
def _load(hf_dir: str, config_mtime_ns: int, dtype: str) -> Any:
    """Eager model, cached per directory and dtype (the mtime key drops it when rebuilt)."""
    import torch
    from transformers import AutoModelForCausalLM

    del config_mtime_ns
    model = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=getattr(torch, dtype), attn_implementation="eager"
    )
    return model.eval()


def _model(hf_dir: Path, dtype: str = "float32") -> Any:
    hf_dir = Path(hf_dir).resolve()
    return _load(str(hf_dir), (hf_dir / "config.json").stat().st_mtime_ns, dtype)


def reference_logits(hf_dir: Path, ids: list[int], *, dtype: str = "float32") -> np.ndarray:
    """float32 [len(ids), vocab] logits of one forward (after any final softcap, as HF returns).

    ``dtype="float64"`` runs the model in double precision: with these rescaled weights the fp32
    reference itself is off by ~1e-3 at 64 tokens, so parity tests can compare against fp64 to
    count only their own rounding.
    """
    import torch

    # One intra-op thread: the matmuls are tiny, and on a busy 2-core box OpenMP's barriers made the
    # forwards 5-10x slower (30 greedy steps: 0.1-0.25 s on one thread, 0.9-2.8 s on two).
    # Denormals flushed: Gemma-2's capped scores span ~100, so softmax makes exp(-100)-sized fp32
    # denormals (slow on x86); flushing changed no logit (max diff 0.0). Both settings are
    # process-wide, so they are restored (torch has no getter for the flag; False is its default).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    try:
        with torch.no_grad():
            out = _model(hf_dir, dtype)(torch.tensor([ids], dtype=torch.long), use_cache=False)
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(threads)
    return out.logits[0].float().numpy()


def reference_greedy(hf_dir: Path, ids: list[int], n_new: int) -> list[int]:
    """``n_new`` greedy tokens, full recompute per step: no KV cache, no stop token ends it."""
    seq = list(ids)
    for _ in range(n_new):
        seq.append(int(np.argmax(reference_logits(hf_dir, seq)[-1])))
    return seq[len(ids) :]
