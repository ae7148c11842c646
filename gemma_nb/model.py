"""Running an exported Gemma model folder: scoring, generation, streaming and chat.

The loop is a few small pieces in the style of gpt-fast: `_forward` runs the graph on a KV
cache, `prefill` and `decode_one` wrap it, `sample` picks a token, and `_tokens` is a generator,
so streaming is plain iteration.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chat import format_chat
from .config import GemmaConfig
from .errors import ContextLengthError
from .folder import GRAPH_FILE, TOKENIZER_FILE, read_model_info
from .kv_cache import KVCache
from .sampling import SamplingSettings, sample
from .session import create_session
from .stops import StopFilter
from .tokenizer import IncrementalDecoder, Tokenizer

__all__ = ["Model", "Generation", "Stream", "Timings", "load"]


@dataclass
class Timings:
    load_s: float = 0.0
    prefill_s: float = 0.0  # the prompt's forward pass
    time_to_first_token_s: float = 0.0  # from the call to the first generated token
    decode_s: float = 0.0  # every token after the first
    prompt_tokens: int = 0
    generated_tokens: int = 0

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        steps = self.generated_tokens - 1
        return steps / self.decode_s if self.decode_s and steps > 0 else 0.0


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" (end of turn, EOS or a stop string) or "length"
    timings: Timings = field(default_factory=Timings)

    def __str__(self) -> str:
        return self.text


@dataclass
class Stream:
    """An iterator of text pieces whose `result` is complete once iteration ends."""

    pieces: Iterator[str]
    result: Generation

    def __iter__(self) -> Iterator[str]:
        return self.pieces


def load(path: str | Path, provider: str = "cpu", threads: int | None = None) -> Model:
    """Load an exported model folder (see `gemma-nb export`)."""
    start = time.perf_counter()
    path = Path(path)
    info, cfg = read_model_info(path)
    tokenizer = Tokenizer.from_file(path / TOKENIZER_FILE)
    session = create_session(path / GRAPH_FILE, provider, threads)
    model = Model(path, cfg, tokenizer, session, info, provider)
    model.load_s = time.perf_counter() - start
    return model


class Model:
    def __init__(self, path: Path, config: GemmaConfig, tokenizer: Tokenizer, session: Any,
                 info: dict[str, Any], provider: str = "cpu"):
        self.path = path
        self.config = config
        self.tokenizer = tokenizer
        self.session = session
        self.info = info
        self.provider = provider
        self.load_s = 0.0
        self.stop_ids = frozenset(
            i for i in (tokenizer.eos_id, tokenizer.end_of_turn_id) if i is not None
        )

    def __repr__(self) -> str:
        c = self.config
        return (f"<gemma_nb.Model {self.path.name}: {c.architecture}, {c.num_layers} layers, "
                f"{self.info.get('dtype')}, {self.provider}>")

    # ---- the graph ------------------------------------------------------------------------

    def _forward(self, cache: KVCache, ids: np.ndarray, logits_index: np.ndarray) -> np.ndarray:
        """Run `ids` [batch, seq] after what `cache` holds; logits [batch, n, vocab]."""
        total = cache.length + ids.shape[1]
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("seqlens_k", np.full(ids.shape[0], total - 1, np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(total, np.int32))
        binding.bind_cpu_input("logits_index", logits_index)
        binding.bind_output("logits")
        cache.bind(binding)
        self.session.run_with_iobinding(binding)
        cache.length = total
        return binding.get_outputs()[0].numpy()

    def _check_fits(self, n_tokens: int) -> None:
        if n_tokens > self.config.context_length:
            raise ContextLengthError(
                f"the prompt has {n_tokens} tokens; this model's context is "
                f"{self.config.context_length} tokens"
            )

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """float32 logits for every position, shape [len(ids), vocab]."""
        self._check_fits(len(ids))
        cache = KVCache(self.config, capacity=len(ids))
        row = np.asarray(ids, dtype=np.int64)[None, :]
        return self._forward(cache, row, np.arange(len(ids), dtype=np.int64))[0]

    def prefill(self, cache: KVCache, ids: Sequence[int]) -> np.ndarray:
        """Run the prompt; the logits of its last position."""
        row = np.asarray(ids, dtype=np.int64)[None, :]
        return self._forward(cache, row, np.array([len(ids) - 1], np.int64))[0, 0]

    def decode_one(self, cache: KVCache, token: int) -> np.ndarray:
        return self._forward(cache, np.array([[token]], np.int64), np.zeros(1, np.int64))[0, 0]

    # ---- generation -----------------------------------------------------------------------

    def _tokens(self, prompt_ids: list[int], max_new_tokens: int, settings: SamplingSettings,
                seed: int | None, timings: Timings) -> Iterator[int]:
        """Generated token ids, stopping at EOS/<end_of_turn>, max_new_tokens or the context."""
        self._check_fits(len(prompt_ids))
        budget = min(max_new_tokens, self.config.context_length - len(prompt_ids))
        if budget <= 0:
            return
        rng = np.random.default_rng(seed)
        cache = KVCache(self.config, capacity=len(prompt_ids) + budget)
        start = time.perf_counter()
        logits = self.prefill(cache, prompt_ids)
        timings.prompt_tokens = len(prompt_ids)
        timings.prefill_s = time.perf_counter() - start
        for step in range(budget):
            token = sample(logits, settings, rng)
            now = time.perf_counter()
            if step == 0:
                timings.time_to_first_token_s = now - start
                decode_start = now
            else:
                timings.decode_s = now - decode_start
            timings.generated_tokens += 1
            if token in self.stop_ids:
                return
            yield token
            if step + 1 < budget:
                logits = self.decode_one(cache, token)

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def _run(self, prompt: str | Sequence[int], max_new_tokens: int, temperature: float,
             top_k: int, top_p: float, seed: int | None, stop: Sequence[str] | None,
             result: Generation) -> Iterator[str]:
        """Text pieces as they are produced; fills `result` as it goes."""
        settings = SamplingSettings(temperature, top_k, top_p)
        decoder = IncrementalDecoder(self.tokenizer)
        stops = StopFilter(list(stop or ()))
        for token in self._tokens(self._prompt_ids(prompt), max_new_tokens, settings, seed,
                                  result.timings):
            result.token_ids.append(token)
            piece = stops.push(decoder.push(token))
            result.text += piece
            if piece:
                yield piece
            if stops.stopped:
                break
        if not stops.stopped:  # release text held back for a split character or stop string
            tail = stops.push(decoder.flush())
            tail += "" if stops.stopped else stops.flush()
            result.text += tail
            if tail:
                yield tail
        stopped_by_token = len(result.token_ids) < result.timings.generated_tokens
        result.finish_reason = "stop" if stops.stopped or stopped_by_token else "length"

    def stream(self, prompt: str | Sequence[int], max_new_tokens: int = 256,
               temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
               seed: int | None = None, stop: Sequence[str] | None = None) -> Stream:
        """Text pieces as they are generated; `.result` holds the Generation once done."""
        result = Generation("", [], "length")
        result.timings.load_s = self.load_s
        return Stream(self._run(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop,
                                result), result)

    def generate(self, prompt: str | Sequence[int], max_new_tokens: int = 256,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None, stop: Sequence[str] | None = None) -> Generation:
        """Generate a continuation of `prompt` (text, or token ids with BOS first)."""
        stream = self.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, stop)
        for _ in stream:
            pass
        return stream.result

    def chat(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> Generation:
        """Answer OpenAI-style messages ({"role": ..., "content": ...}) in Gemma's chat format."""
        return self.generate(format_chat(list(messages)), **kwargs)
