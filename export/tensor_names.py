"""Where each of our tensors lives in each weights format: data, not code.

Our names: `embed`, `final_norm`, and `layers.{i}.{role}` for the roles below. Norm weights are
held as the multiplier `1 + w`: GGUF stores that already (llama.cpp's converter adds 1), HF
safetensors store `w`.
"""

LAYER_ROLES = (
    "input_norm",
    "q",
    "k",
    "v",
    "o",
    "post_attn_norm",
    "pre_ffw_norm",
    "gate",
    "up",
    "down",
    "post_ffw_norm",
)
QK_NORM_ROLES = ("q_norm", "k_norm")  # Gemma-3 only
NORMS = {"final_norm", "input_norm", "post_attn_norm", "pre_ffw_norm", "post_ffw_norm",
         "q_norm", "k_norm"}

GGUF_NAMES = {
    "embed": "token_embd.weight",
    "final_norm": "output_norm.weight",
    "input_norm": "blk.{i}.attn_norm.weight",
    "q": "blk.{i}.attn_q.weight",
    "k": "blk.{i}.attn_k.weight",
    "v": "blk.{i}.attn_v.weight",
    "o": "blk.{i}.attn_output.weight",
    "q_norm": "blk.{i}.attn_q_norm.weight",
    "k_norm": "blk.{i}.attn_k_norm.weight",
    "post_attn_norm": "blk.{i}.post_attention_norm.weight",
    "pre_ffw_norm": "blk.{i}.ffn_norm.weight",
    "gate": "blk.{i}.ffn_gate.weight",
    "up": "blk.{i}.ffn_up.weight",
    "down": "blk.{i}.ffn_down.weight",
    "post_ffw_norm": "blk.{i}.post_ffw_norm.weight",
}

HF_NAMES = {
    "embed": "model.embed_tokens.weight",
    "final_norm": "model.norm.weight",
    "input_norm": "model.layers.{i}.input_layernorm.weight",
    "q": "model.layers.{i}.self_attn.q_proj.weight",
    "k": "model.layers.{i}.self_attn.k_proj.weight",
    "v": "model.layers.{i}.self_attn.v_proj.weight",
    "o": "model.layers.{i}.self_attn.o_proj.weight",
    "q_norm": "model.layers.{i}.self_attn.q_norm.weight",
    "k_norm": "model.layers.{i}.self_attn.k_norm.weight",
    "post_attn_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "pre_ffw_norm": "model.layers.{i}.pre_feedforward_layernorm.weight",
    "gate": "model.layers.{i}.mlp.gate_proj.weight",
    "up": "model.layers.{i}.mlp.up_proj.weight",
    "down": "model.layers.{i}.mlp.down_proj.weight",
    "post_ffw_norm": "model.layers.{i}.post_feedforward_layernorm.weight",
}


def model_tensor_names(num_layers: int, qk_norm: bool) -> list[str]:
    """Every tensor a model of this shape needs, in graph order."""
    roles = LAYER_ROLES + (QK_NORM_ROLES if qk_norm else ())
    layers = [f"layers.{i}.{role}" for i in range(num_layers) for role in roles]
    return ["embed", *layers, "final_norm"]


def source_name(ours: str, table: dict[str, str]) -> str:
    """`layers.3.q` -> `blk.3.attn_q.weight` (GGUF table) or the HF name."""
    if ours.startswith("layers."):
        _, layer, role = ours.split(".")
        return table[role].format(i=layer)
    return table[ours]


def role_of(ours: str) -> str:
    return ours.rsplit(".", 1)[-1]
