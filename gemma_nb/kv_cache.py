"""The KV cache: one buffer per layer and kind, shared by the attention op's past and present.

Binding the same OrtValue as `past_key_values.i.*` input and `present.i.*` output lets the op
write each new token's key/value in place: no copy and no allocation per token. The buffers are
bound once, into an IOBinding the cache keeps, so a decode step rebinds only its small inputs.
A one-token step's small inputs (`StepInputs`) are arrays the cache keeps, bound once too and
written in place. A cache is sized to its request and grows (one copy, to twice its capacity) if
a caller runs past it. Its element type is the graph's: float32, or float16 in `int4-cpu`
folders (make one with `Model.new_cache`, which knows).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from .config import GemmaConfig

__all__ = ["KVCache", "StepInputs", "graph_cache_dtype"]


def graph_cache_dtype(session: ort.InferenceSession) -> np.dtype:
    """The element type of the cache `session`'s graph takes as past and gives as present."""
    types = {arg.name: arg.type for arg in session.get_inputs()}
    return np.dtype(np.float16 if types.get("past_key_values.0.key") == "tensor(float16)" else np.float32)


class StepInputs:
    """A one-token step's inputs for every row of a cache, and an output array for its logits,
    bound into the cache's binding and written in place: binding new arrays (and a fresh 1 MB
    logits array) each step cost the 270M's decode ~3%, Python's work around a run being cold
    after the step's weights stream through the caches."""

    def __init__(self, batch: int, vocab_size: int):
        self.ids = np.zeros((batch, 1), np.int64)
        self.seqlens = np.zeros(batch, np.int32)  # each row's last position
        self.total = np.zeros((), np.int32)       # the longest row's length
        self.logits = np.empty((batch, 1, vocab_size), np.float32)  # overwritten by each step
        inputs = {"input_ids": self.ids, "seqlens_k": self.seqlens,
                  "total_sequence_length": self.total, "logits_index": np.zeros(1, np.int64)}
        # OrtValues over the arrays, kept alive here for as long as a binding refers to them
        self._inputs = {name: ort.OrtValue.ortvalue_from_numpy(a) for name, a in inputs.items()}
        self._logits = ort.OrtValue.ortvalue_from_numpy(self.logits)

    def bind(self, binding: ort.IOBinding) -> None:
        for name, value in self._inputs.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_ortvalue_output("logits", self._logits)


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
        self._step: StepInputs | None = None  # made by the first one-token step
        self._step_bound = False  # whether the binding holds _step's arrays

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
        """`session`'s IOBinding with these buffers bound as past and present (bound once), for
        a caller that binds the other inputs and the logits itself."""
        self._step_bound = False
        return self._cache_binding(session)

    def step_inputs(self, session: ort.InferenceSession) -> tuple[ort.IOBinding, StepInputs]:
        """`session`'s IOBinding with a one-token step's arrays bound as its other inputs and
        its logits (bound once while no other caller rebinds them)."""
        binding = self._cache_binding(session)
        if self._step is None:
            self._step = StepInputs(self.batch, self.config.vocab_size)
        if not self._step_bound:
            self._step.bind(binding)
            self._step_bound = True
        return binding, self._step

    def _cache_binding(self, session: ort.InferenceSession) -> ort.IOBinding:
        if self._binding is None or self._binding[0] is not session:
            binding = session.io_binding()
            for name, value in self.buffers.items():
                binding.bind_ortvalue_input(f"past_key_values.{name}", value)
                binding.bind_ortvalue_output(f"present.{name}", value)
            self._binding = (session, binding)
            self._step_bound = False
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
