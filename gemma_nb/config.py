"""The model configuration shared by the exporter and the runtime.

One frozen dataclass describes Gemma-2 and Gemma-3 text models. It is built only by
`from_gguf` (GGUF metadata), `from_hf` (a Hugging Face `config.json`) or `from_json` (our own
model folder). References: transformers' `Gemma2Config`/`Gemma3TextConfig` and llama.cpp's
`llama-model.cpp` (which hard-codes what GGUF files leave out).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import GemmaError

__all__ = ["GemmaConfig", "ConfigError", "UnsupportedArchitectureError", "SUPPORTED_ARCHITECTURES"]

SUPPORTED_ARCHITECTURES = ("gemma2", "gemma3")
SLIDING, FULL = "sliding", "full"


class ConfigError(GemmaError):
    """A configuration is missing a field or is inconsistent."""


class UnsupportedArchitectureError(ConfigError):
    """The weights are not a Gemma-2 or Gemma-3 text model."""


@dataclass(frozen=True)
class GemmaConfig:
    architecture: str  # "gemma2" (softcaps) or "gemma3" (QK-norm, two RoPE bases)
    vocab_size: int  # rows of the (tied) embedding
    hidden_size: int
    intermediate_size: int  # MLP width
    num_layers: int
    num_heads: int  # query heads
    num_kv_heads: int  # key/value heads (grouped-query attention)
    head_dim: int  # not always hidden/heads (Gemma-2 9B: 3584/16 = 224 but head_dim 256)
    context_length: int  # the longest sequence the model was trained for
    rms_norm_eps: float
    query_pre_attn_scalar: float  # scores are scaled by this ** -0.5 (27B: hidden/heads)
    sliding_window: int  # a local layer's query at q sees keys q - W < k <= q
    layer_types: tuple[str, ...]  # "sliding" or "full", one per layer
    rope_base_global: float  # RoPE theta of full-attention layers
    rope_base_local: float  # RoPE theta of sliding layers (Gemma-3: 10000, global 1e6)
    rope_scale_global: float  # linear position scaling on full layers (Gemma-3 4B+: 8)
    attn_softcap: float | None  # Gemma-2: 50 * tanh(s / 50); None = no cap
    final_softcap: float | None  # Gemma-2: 30 * tanh(z / 30) on the logits

    def __post_init__(self) -> None:
        if self.architecture not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"unsupported architecture {self.architecture!r}: gemma-nb handles "
                f"{', '.join(SUPPORTED_ARCHITECTURES)} text models"
            )
        if len(self.layer_types) != self.num_layers:
            raise ConfigError(f"{len(self.layer_types)} layer types for {self.num_layers} layers")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"{self.num_heads} heads is not a multiple of {self.num_kv_heads}")

    @property
    def qk_norm(self) -> bool:
        """Gemma-3 normalises q and k per head before RoPE."""
        return self.architecture == "gemma3"

    @property
    def embed_scale(self) -> float:
        # We multiply by sqrt(hidden) in fp32, as llama.cpp and transformers at fp32 do.
        # (transformers in bf16 rounds it: sqrt(640) = 25.298 becomes 25.25 for the 270M.)
        return math.sqrt(self.hidden_size)

    def is_sliding(self, layer: int) -> bool:
        return self.layer_types[layer] == SLIDING

    # ---- builders -------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GemmaConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise ConfigError(f"model config lacks {', '.join(sorted(missing))}")
        values = {k: data[k] for k in names}
        values["layer_types"] = tuple(values["layer_types"])
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layer_types"] = list(self.layer_types)
        return data

    @classmethod
    def from_hf(cls, config: Mapping[str, Any]) -> GemmaConfig:
        """From a transformers `config.json` (`gemma2` or `gemma3_text`, 4.x or 5.x layout)."""
        model_type = config.get("model_type")
        if model_type == "gemma3" and "text_config" in config:
            config = {**config["text_config"], "model_type": "gemma3_text"}
            model_type = "gemma3_text"
        arch = {"gemma2": "gemma2", "gemma3_text": "gemma3"}.get(str(model_type))
        if arch is None:
            raise UnsupportedArchitectureError(
                f"config.json describes a {model_type!r} model; gemma-nb exports gemma2 and "
                "gemma3_text models"
            )
        try:
            layers = int(config["num_hidden_layers"])
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            head_dim = int(config.get("head_dim") or hidden // heads)
            local_base, global_base, global_scale = _hf_rope(config, arch)
            return cls(
                architecture=arch,
                vocab_size=int(config["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(config["intermediate_size"]),
                num_layers=layers,
                num_heads=heads,
                num_kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=head_dim,
                context_length=int(config.get("max_position_embeddings", 8192)),
                rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
                query_pre_attn_scalar=float(config.get("query_pre_attn_scalar") or head_dim),
                sliding_window=int(config.get("sliding_window") or 4096),
                layer_types=_hf_layer_types(config, arch, layers),
                rope_base_global=global_base,
                rope_base_local=local_base,
                rope_scale_global=global_scale,
                attn_softcap=_optional_float(config.get("attn_logit_softcapping")),
                final_softcap=_optional_float(config.get("final_logit_softcapping")),
            )
        except KeyError as exc:
            raise ConfigError(f"config.json lacks {exc.args[0]!r}") from None

    @classmethod
    def from_gguf(cls, fields: Mapping[str, Any], vocab_size: int) -> GemmaConfig:
        """From GGUF metadata (plain values), filling in what GGUF leaves out as llama.cpp does.

        - Gemma-2: query_pre_attn_scalar = head_dim, except the 27B shape (46 layers) where it
          is hidden/heads (144); layers 0, 2, 4, ... are sliding; softcaps default to 50/30.
        - Gemma-3: layer i is full when (i + 1) % 6 == 0; sliding layers use RoPE base 10000;
          query_pre_attn_scalar = head_dim, except the 27B shape (62 layers): hidden/heads.
        """
        arch = str(fields.get("general.architecture"))
        if arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(
                f"the GGUF holds a {arch!r} model; gemma-nb exports gemma2 and gemma3 models"
            )

        def get(key: str, default: Any = None) -> Any:
            value = fields.get(f"{arch}.{key}", default)
            if value is None:
                raise ConfigError(f"GGUF metadata lacks {arch}.{key}")
            return value

        layers = int(get("block_count"))
        heads = int(get("attention.head_count"))
        hidden = int(get("embedding_length"))
        head_dim = int(get("attention.key_length", hidden // heads))
        is_27b = layers == (46 if arch == "gemma2" else 62)
        if arch == "gemma2":
            layer_types = tuple(SLIDING if i % 2 == 0 else FULL for i in range(layers))
            local_base = global_base = float(get("rope.freq_base", 10000.0))
            attn_cap = float(get("attn_logit_softcapping", 50.0))
            final_cap = float(get("final_logit_softcapping", 30.0))
        else:
            layer_types = tuple(FULL if (i + 1) % 6 == 0 else SLIDING for i in range(layers))
            local_base, global_base = 10000.0, float(get("rope.freq_base", 1e6))
            attn_cap = final_cap = None
        scaling = fields.get(f"{arch}.rope.scaling.type")
        global_scale = float(get("rope.scaling.factor", 1.0)) if scaling == "linear" else 1.0
        return cls(
            architecture=arch,
            vocab_size=vocab_size,
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=int(get("attention.head_count_kv", heads)),
            head_dim=head_dim,
            context_length=int(get("context_length")),
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-6)),
            query_pre_attn_scalar=float(hidden // heads if is_27b else head_dim),
            sliding_window=int(get("attention.sliding_window", 4096)),
            layer_types=layer_types,
            rope_base_global=global_base,
            rope_base_local=local_base,
            rope_scale_global=global_scale,
            attn_softcap=attn_cap,
            final_softcap=final_cap,
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _hf_layer_types(config: Mapping[str, Any], arch: str, layers: int) -> tuple[str, ...]:
    names = {"sliding_attention": SLIDING, "full_attention": FULL}
    if config.get("layer_types"):
        return tuple(names[t] for t in config["layer_types"])
    if arch == "gemma2":  # transformers: layer i is sliding when (i + 1) % 2 == 1
        return tuple(SLIDING if i % 2 == 0 else FULL for i in range(layers))
    pattern = int(config.get("sliding_window_pattern", 6))
    return tuple(FULL if (i + 1) % pattern == 0 else SLIDING for i in range(layers))


def _hf_rope(config: Mapping[str, Any], arch: str) -> tuple[float, float, float]:
    """(local base, global base, global linear scale) from either transformers layout."""
    params = config.get("rope_parameters")
    if isinstance(params, Mapping) and "full_attention" in params:  # transformers 5, per type
        full, local = params["full_attention"], params["sliding_attention"]
        scale = float(full.get("factor", 1.0)) if full.get("rope_type") == "linear" else 1.0
        return float(local["rope_theta"]), float(full["rope_theta"]), scale
    if isinstance(params, Mapping) and "rope_theta" in params:  # transformers 5, shared
        base = float(params["rope_theta"])
        scale = float(params.get("factor", 1.0)) if params.get("rope_type") == "linear" else 1.0
        return (base if arch == "gemma2" else 10000.0), base, scale
    base = float(config.get("rope_theta", 10000.0))  # transformers 4 layout
    local = float(config.get("rope_local_base_freq", base if arch == "gemma2" else 10000.0))
    scaling = config.get("rope_scaling") or {}
    scale = float(scaling.get("factor", 1.0)) if scaling.get("rope_type") == "linear" else 1.0
    return local, base, scale
