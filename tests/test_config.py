"""GemmaConfig: what each builder reads, and what it fills in the way llama.cpp / transformers do.

GGUF metadata is passed as plain dicts (what `GGUFSource.fields` hands over); HF configs as the
parsed `config.json` of each transformers layout.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from gemma_nb.config import ConfigError, GemmaConfig, UnsupportedArchitectureError
from gemma_nb.errors import GemmaError

SLIDING, FULL = "sliding", "full"


def gguf_fields(arch: str, **overrides: Any) -> dict[str, Any]:
    """GGUF metadata of a small model as llama.cpp's converter writes it; None drops a key."""
    fields: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.block_count": 12,
        f"{arch}.embedding_length": 64,
        f"{arch}.feed_forward_length": 128,
        f"{arch}.attention.head_count": 4,
        f"{arch}.attention.head_count_kv": 2,
        f"{arch}.attention.key_length": 16,
        f"{arch}.attention.value_length": 16,
        f"{arch}.context_length": 256,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.attention.sliding_window": 8,
    }
    for key, value in overrides.items():
        full_key = f"{arch}.{key.replace('__', '.')}"
        if value is None:
            fields.pop(full_key, None)
        else:
            fields[full_key] = value
    return fields


# ------------------------------------------------------------------------------ from_gguf: Gemma-2


def test_gguf_gemma2_even_layers_are_sliding():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma2", block_count=6), vocab_size=100)
    assert cfg.layer_types == (SLIDING, FULL, SLIDING, FULL, SLIDING, FULL)
    assert [i for i in range(6) if cfg.is_sliding(i)] == [0, 2, 4]


def test_gguf_gemma2_reads_shapes_and_vocab():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma2"), vocab_size=384)
    assert (cfg.architecture, cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size) == (
        "gemma2", 384, 64, 128)
    assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (12, 4, 2, 16)
    assert (cfg.context_length, cfg.sliding_window, cfg.rms_norm_eps) == (256, 8, 1e-6)
    assert not cfg.qk_norm


def test_gguf_gemma2_scales_queries_by_head_dim():
    # 9B shape: hidden / heads = 3584 / 16 = 224, but head_dim (key_length) is 256.
    fields = gguf_fields("gemma2", block_count=42, embedding_length=3584, attention__head_count=16,
                         attention__head_count_kv=8, attention__key_length=256)
    assert GemmaConfig.from_gguf(fields, vocab_size=100).query_pre_attn_scalar == 256


def test_gguf_gemma2_27b_shape_scales_queries_by_hidden_over_heads():
    # llama.cpp: LLM_TYPE_27B (46 layers) uses n_embd / n_head = 4608 / 32 = 144, not 128.
    fields = gguf_fields("gemma2", block_count=46, embedding_length=4608, attention__head_count=32,
                         attention__head_count_kv=16, attention__key_length=128)
    cfg = GemmaConfig.from_gguf(fields, vocab_size=100)
    assert cfg.head_dim == 128
    assert cfg.query_pre_attn_scalar == 144


def test_gguf_gemma2_softcaps_default_to_50_and_30_when_absent():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma2"), vocab_size=100)
    assert (cfg.attn_softcap, cfg.final_softcap) == (50.0, 30.0)


def test_gguf_gemma2_softcaps_are_read_when_present():
    fields = gguf_fields("gemma2", attn_logit_softcapping=40.0, final_logit_softcapping=20.0)
    cfg = GemmaConfig.from_gguf(fields, vocab_size=100)
    assert (cfg.attn_softcap, cfg.final_softcap) == (40.0, 20.0)


def test_gguf_gemma2_uses_one_rope_base_for_both_layer_types():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma2", rope__freq_base=20000.0), vocab_size=100)
    assert cfg.rope_base_local == cfg.rope_base_global == 20000.0
    assert cfg.rope_scale_global == 1.0


def test_gguf_head_dim_defaults_to_hidden_over_heads():
    fields = gguf_fields("gemma2", attention__key_length=None)
    assert GemmaConfig.from_gguf(fields, vocab_size=100).head_dim == 16


# ------------------------------------------------------------------------------ from_gguf: Gemma-3


def test_gguf_gemma3_every_sixth_layer_is_global():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma3", block_count=13), vocab_size=100)
    assert [i for i in range(13) if not cfg.is_sliding(i)] == [5, 11]
    assert cfg.qk_norm
    assert cfg.attn_softcap is None and cfg.final_softcap is None


def test_gguf_gemma3_local_rope_base_is_10000_and_global_comes_from_freq_base():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma3", rope__freq_base=1_000_000.0),
                                vocab_size=100)
    assert cfg.rope_base_local == 10000.0
    assert cfg.rope_base_global == 1_000_000.0
    assert cfg.rope_scale_global == 1.0


def test_gguf_gemma3_reads_linear_rope_scaling_factor():
    fields = gguf_fields("gemma3", rope__freq_base=1_000_000.0, rope__scaling__type="linear",
                         rope__scaling__factor=8.0)
    assert GemmaConfig.from_gguf(fields, vocab_size=100).rope_scale_global == 8.0


def test_gguf_gemma3_ignores_scaling_factor_without_linear_type():
    fields = gguf_fields("gemma3", rope__scaling__factor=8.0)
    assert GemmaConfig.from_gguf(fields, vocab_size=100).rope_scale_global == 1.0


def test_gguf_gemma3_27b_shape_scales_queries_by_hidden_over_heads():
    # llama.cpp: Gemma-3 27B (62 layers) uses n_embd / n_head = 5376 / 32 = 168, not 128.
    fields = gguf_fields("gemma3", block_count=62, embedding_length=5376, attention__head_count=32,
                         attention__head_count_kv=16, attention__key_length=128)
    assert GemmaConfig.from_gguf(fields, vocab_size=100).query_pre_attn_scalar == 168


# ------------------------------------------------------------------------------ from_gguf: errors


def test_gguf_unsupported_architecture_raises():
    fields = {k.replace("gemma2.", "llama."): v for k, v in gguf_fields("gemma2").items()}
    fields["general.architecture"] = "llama"
    with pytest.raises(UnsupportedArchitectureError, match="llama"):
        GemmaConfig.from_gguf(fields, vocab_size=100)


def test_gguf_without_architecture_raises_unsupported():
    fields = gguf_fields("gemma2")
    del fields["general.architecture"]
    with pytest.raises(UnsupportedArchitectureError):
        GemmaConfig.from_gguf(fields, vocab_size=100)


@pytest.mark.parametrize("key", ["block_count", "feed_forward_length", "context_length",
                                 "attention.head_count", "embedding_length"])
def test_gguf_missing_key_raises_config_error_naming_it(key):
    fields = gguf_fields("gemma2")
    del fields[f"gemma2.{key}"]
    with pytest.raises(ConfigError, match=f"gemma2.{key}"):
        GemmaConfig.from_gguf(fields, vocab_size=100)


def test_config_errors_are_gemma_errors():
    assert issubclass(UnsupportedArchitectureError, ConfigError)
    assert issubclass(ConfigError, GemmaError)


# ------------------------------------------------------------------------------------- from_hf


def hf_gemma2(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "model_type": "gemma2",
        "vocab_size": 384,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-6,
        "query_pre_attn_scalar": 24,
        "sliding_window": 8,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    }
    config.update(overrides)
    return config


def hf_gemma3_text(**overrides: Any) -> dict[str, Any]:
    config = hf_gemma2(model_type="gemma3_text", num_hidden_layers=7, num_key_value_heads=1,
                       query_pre_attn_scalar=32, attn_logit_softcapping=None,
                       final_logit_softcapping=None)
    config.update(overrides)
    return config


def test_hf_gemma2_reads_shapes_scalar_and_softcaps():
    cfg = GemmaConfig.from_hf(hf_gemma2(
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}))
    assert (cfg.architecture, cfg.vocab_size, cfg.num_layers, cfg.head_dim) == (
        "gemma2", 384, 4, 16)
    assert cfg.query_pre_attn_scalar == 24
    assert (cfg.attn_softcap, cfg.final_softcap) == (50.0, 30.0)
    assert cfg.layer_types == (SLIDING, FULL, SLIDING, FULL)
    assert cfg.sliding_window == 8


def test_hf_transformers5_shared_rope_parameters():
    cfg = GemmaConfig.from_hf(hf_gemma2(
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0}))
    assert cfg.rope_base_local == cfg.rope_base_global == 20000.0
    assert cfg.rope_scale_global == 1.0


def test_hf_transformers5_rope_parameters_per_layer_type():
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                   for i in range(7)]
    cfg = GemmaConfig.from_hf(hf_gemma3_text(
        layer_types=layer_types,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
        }))
    assert cfg.architecture == "gemma3" and cfg.qk_norm
    assert (cfg.rope_base_local, cfg.rope_base_global, cfg.rope_scale_global) == (
        10000.0, 1_000_000.0, 8.0)
    assert [i for i in range(7) if not cfg.is_sliding(i)] == [5]
    assert cfg.attn_softcap is None and cfg.final_softcap is None


def test_hf_transformers4_layout():
    config = hf_gemma3_text(
        num_hidden_layers=8,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0},
        sliding_window_pattern=4,
    )
    cfg = GemmaConfig.from_hf(config)
    assert (cfg.rope_base_local, cfg.rope_base_global, cfg.rope_scale_global) == (
        10000.0, 1_000_000.0, 8.0)
    # No layer_types: layer i is global when (i + 1) % sliding_window_pattern == 0.
    assert [i for i in range(8) if not cfg.is_sliding(i)] == [3, 7]


def test_hf_transformers4_gemma2_uses_rope_theta_for_both_layer_types():
    cfg = GemmaConfig.from_hf(hf_gemma2(rope_theta=10000.0, rope_scaling=None))
    assert cfg.rope_base_local == cfg.rope_base_global == 10000.0
    assert cfg.rope_scale_global == 1.0


def test_hf_multimodal_gemma3_reads_text_config():
    text = hf_gemma3_text(rope_theta=1_000_000.0, rope_local_base_freq=10000.0)
    del text["model_type"]
    config = {"model_type": "gemma3", "architectures": ["Gemma3ForConditionalGeneration"],
              "text_config": text, "vision_config": {"model_type": "siglip_vision_model"}}
    cfg = GemmaConfig.from_hf(config)
    assert cfg.architecture == "gemma3"
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_kv_heads) == (64, 7, 1)
    assert (cfg.rope_base_local, cfg.rope_base_global) == (10000.0, 1_000_000.0)


def test_hf_unsupported_model_type_raises():
    with pytest.raises(UnsupportedArchitectureError, match="llama"):
        GemmaConfig.from_hf(hf_gemma2(model_type="llama"))


def test_hf_missing_key_raises_config_error_naming_it():
    config = hf_gemma2()
    del config["intermediate_size"]
    with pytest.raises(ConfigError, match="intermediate_size"):
        GemmaConfig.from_hf(config)


# ------------------------------------------------------------------------------------ our JSON


def test_json_round_trip_through_text():
    cfg = GemmaConfig.from_gguf(gguf_fields("gemma3", rope__scaling__type="linear",
                                            rope__scaling__factor=8.0), vocab_size=100)
    again = GemmaConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert again == cfg
    assert isinstance(again.layer_types, tuple)


def test_to_json_has_every_field():
    cfg = GemmaConfig.from_hf(hf_gemma2())
    assert set(cfg.to_json()) == {f.name for f in dataclasses.fields(GemmaConfig)}


def test_from_json_missing_field_raises_config_error_naming_it():
    data = GemmaConfig.from_hf(hf_gemma2()).to_json()
    del data["sliding_window"]
    with pytest.raises(ConfigError, match="sliding_window"):
        GemmaConfig.from_json(data)


def test_config_is_frozen():
    cfg = GemmaConfig.from_hf(hf_gemma2())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_layers = 3  # type: ignore[misc]
