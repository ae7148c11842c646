"""The KV cache: one buffer per layer and kind, shared by the attention op's past and present.

Binding the same OrtValue as `past_key_values.i.*` input and `present.i.*` output lets the op
write each new token's key/value in place: no copy and no allocation per token. The buffers are
bound once, into an IOBinding the cache keeps, so a decode step rebinds only its small inputs.
A cache is sized to its request and grows (one copy, to twice its capacity) if a caller runs
past it. Its element type is the graph's: float32, or float16 in `int4-cpu` folders (make one
with `Model.new_cache`, which knows).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .config import GemmaConfig

__all__ = ["KVCache", "graph_cache_dtype"]


def graph_cache_dtype(session: ort.InferenceSession) -> np.dtype:
    """The element type of the cache `session`'s graph takes as past and gives as present."""
    types = {arg.name: arg.type for arg in session.get_inputs()}
    return np.dtype(np.float16 if types.get("past_key_values.0.key") == "tensor(float16)" else np.float32)


class KVCache:
    def __init__(self, cfg: GemmaConfig, capacity: int, batch: int = 1, device: str = "cpu",
                 dtype: type = np.float32):
        self.config = cfg
        self.batch = batch
        self.device = device
        self.dtype = np.dtype(dtype)
        self.lengths = np.zeros(batch, np.int32)  # tokens cached in each row
        self.buffers = self._allocate(capacity)
        self._binding: tuple[ort.InferenceSession, ort.IOBinding] | None = None

    @property
    def capacity(self) -> int:
        return next(iter(self.buffers.values())).shape()[2]

    def _allocate(self, capacity: int) -> dict[str, ort.OrtValue]:
        cfg = self.config
        shape = (self.batch, cfg.num_kv_heads, capacity, cfg.head_dim)
        return {
            f"{i}.{kind}": ort.OrtValue.ortvalue_from_shape_and_type(shape, self.dtype,
                                                                     self.device)
            for i in range(cfg.num_layers)
            for kind in ("key", "value")
        }

    def binding(self, session: ort.InferenceSession) -> ort.IOBinding:
        """`session`'s IOBinding with these buffers bound as past and present (bound once)."""
        if self._binding is None or self._binding[0] is not session:
            binding = session.io_binding()
            for name, value in self.buffers.items():
                binding.bind_ortvalue_input(f"past_key_values.{name}", value)
                binding.bind_ortvalue_output(f"present.{name}", value)
            self._binding = (session, binding)
        return self._binding[1]

    def reserve(self, length: int) -> None:
        """Make room for `length` tokens a row: grow to max(length, 2 x capacity), capped at
        the model's context, keeping what is cached."""
        if length <= self.capacity:
            return
        grown = self._allocate(min(max(length, 2 * self.capacity), self.config.context_length))
        for name, old in self.buffers.items():
            contents = np.zeros(grown[name].shape(), self.dtype)
            contents[:, :, : self.capacity] = old.numpy()  # through the host: rare, small
            grown[name].update_inplace(contents)
        self.buffers = grown
        self._binding = None
