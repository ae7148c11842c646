"""The KV cache: one buffer per layer and kind, shared by GroupQueryAttention's past and present.

Binding the same OrtValue as `past_key_values.i.*` input and `present.i.*` output lets the op
write each new token's key/value in place: no copy and no allocation per token.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .config import GemmaConfig

__all__ = ["KVCache"]


class KVCache:
    def __init__(self, cfg: GemmaConfig, capacity: int, batch: int = 1, device: str = "cpu"):
        self.capacity = capacity
        self.batch = batch
        shape = (batch, cfg.num_kv_heads, capacity, cfg.head_dim)
        self.buffers = {
            f"{i}.{kind}": ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, device)
            for i in range(cfg.num_layers)
            for kind in ("key", "value")
        }
        self.lengths = np.zeros(batch, np.int32)  # tokens cached in each row

    def bind(self, binding: ort.IOBinding) -> None:
        for name, value in self.buffers.items():
            binding.bind_ortvalue_input(f"past_key_values.{name}", value)
            binding.bind_ortvalue_output(f"present.{name}", value)
