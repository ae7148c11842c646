"""Checks that the tiny reference models really exercise the Gemma quirks they exist for.

If one of these fails, exporter tests built on ``tests/tiny_models.py`` could pass for the wrong
reason (say, a missing softcap that never triggers): these pin properties, not particular values.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import tiny_models as tm

import gguf
import torch
import transformers  # noqa: F401 - the reference implementation

# 21 tokens: BOS, then spread-out ids (past the window of 8, away from the special ids).
PROMPT = [tm.BOS_ID] + [(37 * i + 11) % 370 + 10 for i in range(20)]
Measure = Callable[[Path], tuple[list[float], float]]


@pytest.fixture(scope="module")
def g2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tm.make_tiny_gemma2(tmp_path_factory.mktemp("g2"))


@pytest.fixture(scope="module")
def g3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tm.make_tiny_gemma3(tmp_path_factory.mktemp("g3"))


def _config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def _edited_logits(src: Path, dst: Path, **changes: object) -> np.ndarray:
    """Reference logits of a copy of ``src`` whose config.json has ``changes`` applied."""
    shutil.copytree(src, dst)
    (dst / "config.json").write_text(json.dumps(_config(dst) | changes))
    return tm.reference_logits(dst, PROMPT)


@pytest.fixture
def presoftcap(monkeypatch: pytest.MonkeyPatch) -> Iterator[Measure]:
    """Per-layer max |attention score| (scaled, before the softcap, visible positions only) and the
    max |logit| before the final softcap, read by wrapping transformers' own eager attention (looked
    up as a module global at call time) and hooking lm_head."""
    from transformers.models.gemma2 import modeling_gemma2
    from transformers.models.gemma3 import modeling_gemma3

    scores: list[float] = []
    for mod in (modeling_gemma2, modeling_gemma3):

        def wrapped(module, query, key, value, mask, *a, _orig=mod.eager_attention_forward, **kw):
            k = modeling_gemma2.repeat_kv(key, module.num_key_value_groups)
            s = (query @ k.transpose(2, 3)) * kw["scaling"]
            visible = (mask > -1).expand_as(s)  # additive mask: 0 where visible, very negative else
            scores.append(s.masked_select(visible).abs().max().item())
            return _orig(module, query, key, value, mask, *a, **kw)

        monkeypatch.setattr(mod, "eager_attention_forward", wrapped)

    def measure(d: Path) -> tuple[list[float], float]:
        scores.clear()
        raw: list[torch.Tensor] = []
        hook = tm._model(d).lm_head.register_forward_hook(lambda m, i, o: raw.append(o.detach()))
        try:
            tm.reference_logits(d, PROMPT)
        finally:
            hook.remove()
        return list(scores), raw[0].abs().max().item()

    yield measure


# ---------------------------------------------------------------------------------------- tokenizer


def test_tokenizer_gemma_ids_and_deterministic(tmp_path: Path) -> None:
    import sentencepiece as spm

    a = tm.train_tiny_tokenizer(tmp_path / "a")
    assert a.read_bytes() == tm.train_tiny_tokenizer(tmp_path / "b").read_bytes()
    sp = spm.SentencePieceProcessor(model_file=str(a))
    assert sp.get_piece_size() == 384
    first = [sp.id_to_piece(i) for i in range(7)]
    assert first == ["<pad>", "<eos>", "<bos>", "<unk>", *tm.USER_SYMBOLS]
    assert all(sp.is_control(i) for i in (0, 1, 2)) and sp.is_unknown(3)
    assert sum(sp.is_byte(i) for i in range(sp.get_piece_size())) == 256
    pieces = sp.encode("<start_of_turn>user\n    x = 42 日本<end_of_turn>", out_type=str)
    assert pieces[0] == tm.START_OF_TURN and pieces[-1] == tm.END_OF_TURN
    assert "▁▁▁▁" in pieces  # a whitespace-only piece
    assert "<0x0A>" in pieces and "<0xE6>" in pieces  # byte fallback
    assert [p for p in pieces if p.isdigit()] == ["4", "2"]  # split_digits
    text = "naïve 日本 🙂  two  spaces"
    assert sp.decode(sp.encode(text)) == text


# -------------------------------------------------------------------------------------------- files


@pytest.mark.parametrize("shards", [1, 3])
def test_shard_count(tmp_path: Path, shards: int) -> None:
    d = tm.make_tiny_gemma2(tmp_path, shards=shards)
    assert len(list(d.glob("*.safetensors"))) == shards
    assert (d / "model.safetensors.index.json").is_file() == (shards > 1)


def test_default_files_and_config(g2: Path, g3: Path) -> None:
    for d in (g2, g3):
        assert len(list(d.glob("model-*-of-00002.safetensors"))) == 2
        assert (d / "tokenizer.model").is_file()
        index = json.loads((d / "model.safetensors.index.json").read_text())
        assert "lm_head.weight" not in index["weight_map"]  # tied
    c2, c3 = _config(g2), _config(g3)
    assert c2["model_type"] == "gemma2" and c2["vocab_size"] == 384
    assert (c2["query_pre_attn_scalar"], c2["head_dim"], c2["sliding_window"]) == (24, 16, 8)
    assert (c2["attn_logit_softcapping"], c2["final_logit_softcapping"]) == (50.0, 30.0)
    assert c2["layer_types"] == ["sliding_attention", "full_attention"] * 2  # even layers local
    assert c3["model_type"] == "gemma3_text" and c3["query_pre_attn_scalar"] == 32
    assert c3["layer_types"] == ["sliding_attention"] * 5 + ["full_attention", "sliding_attention"]
    assert c3["rope_parameters"]["sliding_attention"]["rope_theta"] == 10000.0
    assert c3["rope_parameters"]["full_attention"]["rope_theta"] == 1_000_000.0
    assert c3["attn_logit_softcapping"] is None and c3["final_logit_softcapping"] is None


# ------------------------------------------------------------------------------- numeric properties


def test_gemma2_softcaps_are_exercised(g2: Path, presoftcap: Measure) -> None:
    scores, max_logit = presoftcap(g2)
    print(
        f"gemma2 max |pre-cap score| by layer {[round(s, 1) for s in scores]} logit {max_logit:.1f}"
    )
    assert len(scores) == 4
    # 50 * tanh(s / 50) bends scores of 40 by 8 and of 55 by 15: the cap shapes every layer.
    assert max(scores) > 50.0  # past the attention softcap (50)
    assert min(scores) > 40.0  # in every layer, local and global
    assert max_logit > 35.0  # past the final softcap (30)
    assert np.abs(tm.reference_logits(g2, PROMPT)).max() <= 30.0


def test_gemma3_attention_is_sharp(g3: Path, presoftcap: Measure) -> None:
    scores, max_logit = presoftcap(g3)
    print(f"gemma3 max |score| by layer {[round(s, 1) for s in scores]}, logit {max_logit:.1f}")
    assert len(scores) == 7 and min(scores) > 5.0  # far from uniform attention
    # No final softcap: the returned logits are lm_head's output.
    assert np.abs(tm.reference_logits(g3, PROMPT)).max() == pytest.approx(max_logit)


@pytest.mark.parametrize("which", ["g2", "g3"])
def test_not_degenerate(which: str, request: pytest.FixtureRequest) -> None:
    d: Path = request.getfixturevalue(which)
    logits = tm.reference_logits(d, PROMPT)
    assert logits.std(axis=-1).min() > 5.0  # a real spread at every position
    assert len(set(logits.argmax(-1).tolist())) > len(PROMPT) // 2
    new = tm.reference_greedy(d, [tm.BOS_ID, 50, 60, 70], 30)
    assert len(new) == 30 and len(set(new)) >= 8, new


@pytest.mark.parametrize("which", ["g2", "g3"])
def test_fp32_reference_noise_floor(which: str, request: pytest.FixtureRequest) -> None:
    """The fp32 reference vs fp64 over 64 tokens: the floor under any fp32 parity tolerance."""
    d: Path = request.getfixturevalue(which)
    ids = [tm.BOS_ID] + [(53 * i + 7) % 370 + 10 for i in range(63)]
    f32 = tm.reference_logits(d, ids)
    f64 = tm.reference_logits(d, ids, dtype="float64")
    assert f64.dtype == np.float32
    floor = float(np.abs(f32 - f64).max())
    print(f"{which} |fp32 - fp64| max over 64 tokens: {floor:.2e}")
    assert floor < 1e-2
    assert (f32.argmax(-1) == f64.argmax(-1)).all()


@pytest.mark.parametrize("which", ["g2", "g3"])
def test_norm_plus_one_matters(which: str, request: pytest.FixtureRequest) -> None:
    """Every norm weight is clearly nonzero, and ``w`` in place of Gemma's ``1 + w`` shows."""
    from transformers import AutoModelForCausalLM

    d: Path = request.getfixturevalue(which)
    model = AutoModelForCausalLM.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager"
    )
    norms = [p for n, p in model.named_parameters() if n.endswith("norm.weight")]
    assert len(norms) == (4 * 4 + 1 if which == "g2" else 6 * 7 + 1)
    assert all(p.abs().mean().item() > 0.3 for p in norms)
    with torch.no_grad():
        for p in norms:
            p.sub_(1.0)  # the model scales by (1 + w): now by w
        wrong = model.eval()(torch.tensor([PROMPT]), use_cache=False).logits[0].numpy()
    assert np.abs(wrong - tm.reference_logits(d, PROMPT)).max() > 1.0


@pytest.mark.parametrize("which", ["g2", "g3"])
def test_sliding_window_matters(which: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Window 8: a query at q sees keys q-7..q, so a huge window agrees up to position 7 only."""
    d: Path = request.getfixturevalue(which)
    ref = tm.reference_logits(d, PROMPT)
    wide = _edited_logits(d, tmp_path / "wide", sliding_window=100_000)
    diff = np.abs(wide - ref).max(axis=-1)
    assert diff[:8].max() < 1e-4, diff
    assert diff[8:].min() > 1e-3 and diff[8:].max() > 1.0, diff


_ROPE_10K = {"rope_type": "default", "rope_theta": 10000.0}


@pytest.mark.parametrize(
    ("which", "changes"),
    [
        ("g2", {"query_pre_attn_scalar": 16}),  # scaling by head_dim instead
        ("g2", {"attn_logit_softcapping": None}),
        ("g2", {"final_logit_softcapping": None}),
        ("g2", {"layer_types": ["full_attention", "sliding_attention"] * 2}),  # parity swapped
        ("g3", {"query_pre_attn_scalar": 16}),
        ("g3", {"rope_parameters": {"sliding_attention": _ROPE_10K, "full_attention": _ROPE_10K}}),
        ("g3", {"layer_types": ["full_attention"] + ["sliding_attention"] * 6}),  # pattern shifted
    ],
)
def test_each_quirk_changes_logits(
    which: str, changes: dict, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Each config detail, if got wrong, must move the logits: otherwise nothing could catch it."""
    d: Path = request.getfixturevalue(which)
    edited = _edited_logits(d, tmp_path / "edited", **changes)
    assert np.abs(edited - tm.reference_logits(d, PROMPT)).max() > 0.5


# --------------------------------------------------------------------------------------------- GGUF


def _expected_types(d: Path) -> list[int]:
    """Token types llama.cpp's converter writes for Gemma (see tiny_models._sentencepiece_vocab)."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    t = gguf.TokenType
    out = []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if i < 3 or piece in tm.SPECIAL_ADDED:
            out.append(t.CONTROL)
        elif i == 3:
            out.append(t.UNKNOWN)
        elif piece in tm.USER_SYMBOLS:
            out.append(t.USER_DEFINED)
        else:
            out.append(t.BYTE if sp.is_byte(i) else t.NORMAL)
    return [int(x) for x in out]


_PER_LAYER = {
    "attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "post_attention_norm",
    "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm",
}  # fmt: skip


@pytest.mark.parametrize(
    ("which", "tensor_type"),
    [("g2", "F32"), ("g2", "F16"), ("g2", "BF16"), ("g2", "Q8_0"), ("g3", "F32"), ("g3", "Q8_0")],
)
def test_gguf_round_trip(
    which: str, tensor_type: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from safetensors.numpy import load_file

    d: Path = request.getfixturevalue(which)
    cfg = _config(d)
    r = gguf.GGUFReader(tm.hf_to_gguf(d, tmp_path / "m.gguf", tensor_type=tensor_type))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}

    arch = {"g2": "gemma2", "g3": "gemma3"}[which]
    assert f["general.architecture"] == arch
    expect = {
        "context_length": 256,
        "embedding_length": 64,
        "block_count": cfg["num_hidden_layers"],
        "feed_forward_length": 128,
        "attention.head_count": 4,
        "attention.head_count_kv": cfg["num_key_value_heads"],
        "attention.key_length": 16,
        "attention.value_length": 16,
        "attention.sliding_window": 8,
        "attention.layer_norm_rms_epsilon": 1e-6,
    }
    if arch == "gemma2":
        expect |= {"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0}
    else:
        expect |= {"rope.freq_base": 1_000_000.0}  # the global base only
        assert not any("softcapping" in k for k in f)
    for k, v in expect.items():
        assert f[f"{arch}.{k}"] == pytest.approx(v), k

    assert f["tokenizer.ggml.model"] == "llama" and f["tokenizer.ggml.add_space_prefix"] is False
    assert (f["tokenizer.ggml.add_bos_token"], f["tokenizer.ggml.add_eos_token"]) == (True, False)
    ids = [f[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown", "padding")]
    assert ids == [2, 1, 3, 0]
    assert len(f["tokenizer.ggml.tokens"]) == cfg["vocab_size"]
    assert f["tokenizer.ggml.tokens"][:7] == ["<pad>", "<eos>", "<bos>", "<unk>", *tm.USER_SYMBOLS]
    assert f["tokenizer.ggml.token_type"] == _expected_types(d)

    hf: dict[str, np.ndarray] = {}
    for shard in d.glob("*.safetensors"):
        hf |= load_file(shard)
    names = gguf.TensorNameMap(getattr(gguf.MODEL_ARCH, arch.upper()), cfg["num_hidden_layers"])
    by_gguf = {names.get_name(k, try_suffixes=(".weight",)): v for k, v in hf.items()}
    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == set(by_gguf) and "output.weight" not in tensors
    per_layer = _PER_LAYER | ({"attn_q_norm", "attn_k_norm"} if arch == "gemma3" else set())
    assert {n.split(".")[2] for n in tensors if n.startswith("blk.")} == per_layer
    for name, t in tensors.items():
        ref = by_gguf[name].astype(np.float32)
        got = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        assert got.shape == ref.shape, name  # no transposition, no Q/K permutation
        if ref.ndim == 1:  # norms: F32, stored as 1 + w
            assert t.tensor_type == gguf.GGMLQuantizationType.F32 and name.endswith("norm.weight")
            np.testing.assert_allclose(got - 1.0, ref, atol=1e-6, err_msg=name)
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType[tensor_type], name
        amax = float(np.abs(ref).max())
        tol = {"F32": 0.0, "F16": amax / 1000, "BF16": amax / 100, "Q8_0": amax / 127}[tensor_type]
        assert np.abs(got - ref).max() <= tol, name
