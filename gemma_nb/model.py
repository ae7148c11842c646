"""Running an exported Gemma model folder: scoring, generation, streaming and chat.

The loop is a few small pieces in the style of gpt-fast: `_forward` runs the graph on a KV
cache, `prefill` and `decode_one` wrap it, `sample` picks a token, and `_tokens` is a generator,
so streaming is plain iteration.
"""

from __future__ import annotations

import time
from contextlib import closing
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .chat import format_chat
from .config import GemmaConfig
from .errors import ContextLengthError, EmptyPromptError, GemmaError
from .folder import DATA_FILE, GRAPH_FILE, TOKENIZER_FILE, read_model_info
from .kernels import KERNEL_DTYPE
from .kv_cache import KVCache, graph_cache_dtype
from .mapped_pages import release_resident_pages
from .sampling import SamplingSettings, choose
from .session import create_session
from .assembler import TextAssembler
from .tokenizer import Tokenizer

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
    logprobs: list[float] = field(default_factory=list)  # of each token in token_ids

    def __str__(self) -> str:
        return self.text


@dataclass
class Stream:
    """An iterator of text pieces whose `result` is complete once iteration ends. A long prompt
    gives an empty piece after each of its chunks but the last, so that a consumer that stops
    between pieces can stop before the first token too."""

    pieces: Generator[str, None, None]
    result: Generation

    def __iter__(self) -> Iterator[str]:
        return self.pieces

    def close(self) -> None:
        """Stop generating now (a client left, the user pressed Stop); `result` keeps the text
        so far."""
        self.pieces.close()


def load(path: str | Path, provider: str = "cpu", threads: int | None = None) -> Model:
    """Load an exported model folder (see `gemma-nb export`)."""
    start = time.perf_counter()
    path = Path(path)
    info, cfg = read_model_info(path)
    tokenizer = Tokenizer.from_file(path / TOKENIZER_FILE)
    kernel = info.get("dtype") == KERNEL_DTYPE
    session = create_session(path / GRAPH_FILE, provider, threads, kernel=kernel)
    if not kernel:  # its weights are read in place, every token
        release_resident_pages(path / DATA_FILE)  # the packed weights' scales: read once, at load
    model = Model(path, cfg, tokenizer, session, info, provider)
    model.load_s = time.perf_counter() - start
    return model


# Prompt tokens a graph run: a run's working memory grows with its tokens (the 2B shape's MLP
# activations alone are 72 KB a token), while each run reads every weight once. 256 against 128:
# prefill-512 1.05x (2B shape, int4-cpu), 1.09x (270M int4-cpu), 1.15x (270M fp32), for +61 MiB;
# 512 against 256: 1.018x (2B shape, int4-cpu, +48 MiB), 1.030x (270M int4-cpu), 0.993x (270M
# int4). A stop asked for during a long prompt waits for the running chunk (the 2B shape: ~1.4 s).
PREFILL_CHUNK = 512


def prompt_chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[start:start + PREFILL_CHUNK] for start in range(0, len(ids), PREFILL_CHUNK)]


class Model:
    def __init__(self, path: Path, config: GemmaConfig, tokenizer: Tokenizer, session: Any,
                 info: dict[str, Any], provider: str = "cpu"):
        self.path = path
        self.config = config
        self.tokenizer = tokenizer
        self.session = session
        self.info = info
        self.provider = provider
        self.cache_dtype = graph_cache_dtype(session)
        self.load_s = 0.0
        self.stop_ids = frozenset(
            i for i in (tokenizer.eos_id, tokenizer.end_of_turn_id) if i is not None
        )

    def __repr__(self) -> str:
        c = self.config
        return (f"<gemma_nb.Model {self.path.name}: {c.architecture}, {c.num_layers} layers, "
                f"{self.info.get('dtype')}, {self.provider}>")

    # ---- the graph ------------------------------------------------------------------------

    def new_cache(self, capacity: int, batch: int = 1) -> KVCache:
        """An empty KV cache for `batch` rows of `capacity` tokens (it grows if run past), of
        the element type this model's graph keeps."""
        return KVCache(self.config, capacity, batch, dtype=self.cache_dtype)

    def _forward(self, cache: KVCache, ids: np.ndarray, logits_index: np.ndarray,
                 lengths: np.ndarray | None = None) -> np.ndarray:
        """Run `ids` [batch, seq] after what `cache` holds; logits [batch, n, vocab].

        `lengths`: each row's total length after this step, for right-padded batches (rows
        shorter than `seq` are padding at the end); by default every row grows by `seq`.
        """
        self._check_cache(cache)
        if lengths is None:
            lengths = cache.lengths + ids.shape[1]
        cache.reserve(int(lengths.max()))
        binding = cache.binding(self.session)
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("seqlens_k", (lengths - 1).astype(np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(lengths.max(), np.int32))
        binding.bind_cpu_input("logits_index", logits_index)
        # A fresh array each call (callers may keep it), written by the graph directly.
        logits = np.empty((ids.shape[0], len(logits_index), self.config.vocab_size), np.float32)
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        self.session.run_with_iobinding(binding)
        cache.lengths = lengths.astype(np.int32)
        return logits

    def _check_cache(self, cache: KVCache) -> None:
        if cache.dtype != self.cache_dtype:
            raise GemmaError(f"this cache holds {cache.dtype} keys and values and this model's "
                             f"graph keeps {self.cache_dtype}: make caches with model.new_cache()")

    def _check_prompt(self, n_tokens: int) -> None:
        if n_tokens == 0:
            raise EmptyPromptError("the prompt has no tokens; give text, or token ids that start "
                                   "with BOS")
        if n_tokens > self.config.context_length:
            raise ContextLengthError(
                f"the prompt has {n_tokens} tokens; this model's context is "
                f"{self.config.context_length} tokens"
            )

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """float32 logits for every position, shape [len(ids), vocab]."""
        self._check_prompt(len(ids))
        cache = self.new_cache(len(ids))
        row = np.asarray(ids, dtype=np.int64)[None, :]
        return self._forward(cache, row, np.arange(len(ids), dtype=np.int64))[0]

    def prefill(self, cache: KVCache, ids: Sequence[int]) -> np.ndarray:
        """Run the prompt, PREFILL_CHUNK tokens a graph run; the logits of its last position."""
        self._check_prompt(len(ids))
        chunks = prompt_chunks(ids)
        for chunk in chunks[:-1]:
            self._prefill_chunk(cache, chunk, last=False)
        return self._prefill_chunk(cache, chunks[-1], last=True)

    def _prefill_chunk(self, cache: KVCache, chunk: Sequence[int], last: bool) -> np.ndarray | None:
        """One graph run of a prompt; the logits of its last position after its last chunk only.
        The others ask for none: the lm_head reads the largest weight whole even for one row
        (prefill-512 1.004-1.011x on the 2B shape and the 270M; more with longer prompts)."""
        row = np.asarray(chunk, dtype=np.int64)[None, :]
        logits = self._forward(cache, row, np.array([len(chunk) - 1] if last else [], np.int64))
        return logits[0, 0] if last else None

    def decode_one(self, cache: KVCache, token: int, reuse: bool = False) -> np.ndarray:
        """The logits after `token`, one more token in `cache`. A fresh array; with `reuse`,
        an array the cache keeps and its next step overwrites (the generation loop's: no 1 MB
        array a step)."""
        logits = self._step(cache, np.array([token], np.int64))
        return logits[0, 0] if reuse else logits[0, 0].copy()

    def _step(self, cache: KVCache, tokens: np.ndarray) -> np.ndarray:
        """One token for each row of `cache` (tokens [batch]); logits [batch, 1, vocab] in the
        cache's step array."""
        self._check_cache(cache)
        longest = int(cache.lengths.max()) + 1
        cache.reserve(longest)
        binding, step = cache.step_inputs(self.session)
        step.ids[:, 0] = tokens
        step.seqlens[:] = cache.lengths
        step.total[...] = longest
        self.session.run_with_iobinding(binding)
        cache.lengths = cache.lengths + 1
        return step.logits

    # ---- generation -----------------------------------------------------------------------

    def _tokens(self, prompt_ids: list[int], max_new_tokens: int, settings: SamplingSettings,
                seed: int | None, result: Generation) -> Iterator[int | None]:
        """Generated token ids, stopping at EOS/<end_of_turn>, max_new_tokens or the context;
        None between two chunks of a long prompt, where the consumer may stop."""
        self._check_prompt(len(prompt_ids))
        budget = min(max_new_tokens, self.config.context_length - len(prompt_ids))
        if budget <= 0:
            return
        rng = np.random.default_rng(seed)
        cache = self.new_cache(len(prompt_ids) + budget)
        timings = result.timings
        start = time.perf_counter()
        chunks = prompt_chunks(prompt_ids)
        for i, chunk in enumerate(chunks):
            if i:
                yield None
            logits = self._prefill_chunk(cache, chunk, last=i == len(chunks) - 1)
        timings.prompt_tokens = len(prompt_ids)
        timings.prefill_s = time.perf_counter() - start
        for step in range(budget):
            token, logprob = choose(logits, settings, rng)
            now = time.perf_counter()
            if step == 0:
                timings.time_to_first_token_s = now - start
                decode_start = now
            else:
                timings.decode_s = now - decode_start
            timings.generated_tokens += 1
            if token in self.stop_ids:
                result.finish_reason = "stop"
                return
            result.logprobs.append(logprob)
            yield token
            if step + 1 < budget:
                logits = self.decode_one(cache, token, reuse=True)

    def _prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        return self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)

    def _run(self, prompt: str | Sequence[int], max_new_tokens: int, temperature: float,
             top_k: int, top_p: float, seed: int | None, stop: Sequence[str] | None,
             result: Generation) -> Iterator[str]:
        """Text pieces as they are produced; fills `result` as it goes."""
        settings = SamplingSettings(temperature, top_k, top_p)
        text = TextAssembler(self.tokenizer, list(stop or ()))
        for token in self._tokens(self._prompt_ids(prompt), max_new_tokens, settings, seed,
                                  result):
            if token is None:  # still reading the prompt: an empty piece, to stop at
                yield ""
                continue
            result.token_ids.append(token)
            piece = text.push(token)
            result.text = text.text
            if piece:
                yield piece
            if text.stopped:
                result.finish_reason = "stop"
                return
        tail = text.finish()
        result.text = text.text
        if tail:
            yield tail

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

    # ---- batches ----------------------------------------------------------------------------

    def generate_batch(self, prompts: Sequence[str | Sequence[int]], max_new_tokens: int = 256,
                       temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                       seed: int | None = None, stop: Sequence[str] | None = None
                       ) -> list[Generation]:
        """Generate for several prompts in one batch: rows right-padded, one session run per
        step for all rows. Each row samples with its own generator seeded by `seed`, so a
        row's tokens are those of `generate` on that prompt alone."""
        settings = SamplingSettings(temperature, top_k, top_p)
        ids = [self._prompt_ids(p) for p in prompts]
        for row in ids:
            self._check_prompt(len(row))
        lengths = np.array([len(row) for row in ids], np.int32)
        budget = min(max_new_tokens, self.config.context_length - int(lengths.max()))
        results = [Generation("", [], "length") for _ in ids]
        if budget <= 0 or not ids:
            return results
        rngs = [np.random.default_rng(seed) for _ in ids]
        texts = [TextAssembler(self.tokenizer, list(stop or ())) for _ in ids]
        cache = self.new_cache(int(lengths.max()) + budget, batch=len(ids))
        start = time.perf_counter()
        padded = np.full((len(ids), int(lengths.max())), self.tokenizer.pad_id or 0, np.int64)
        for r, row in enumerate(ids):
            padded[r, : len(row)] = row
        last = np.unique(lengths - 1)  # logits only where some row's prompt ends
        logits = self._forward(cache, padded, last.astype(np.int64), lengths)
        rows = logits[np.arange(len(ids)), np.searchsorted(last, lengths - 1)]
        prefill_s = time.perf_counter() - start
        active = np.ones(len(ids), bool)
        for step in range(budget):
            tokens = np.zeros(len(ids), np.int64)
            for r in np.flatnonzero(active):
                token, logprob = choose(rows[r], settings, rngs[r])
                results[r].timings.generated_tokens += 1
                if token in self.stop_ids:
                    results[r].finish_reason, active[r] = "stop", False
                    continue
                results[r].token_ids.append(token)
                results[r].logprobs.append(logprob)
                texts[r].push(token)
                if texts[r].stopped:
                    results[r].finish_reason, active[r] = "stop", False
                tokens[r] = token
            if not active.any() or step + 1 == budget:
                break
            rows = self._step(cache, tokens)[:, 0]
        elapsed = time.perf_counter() - start
        for result, text, n in zip(results, texts, lengths):
            text.finish()
            result.text = text.text
            t = result.timings
            t.load_s, t.prompt_tokens, t.prefill_s = self.load_s, int(n), prefill_s
            t.decode_s, t.time_to_first_token_s = elapsed - prefill_s, prefill_s
        return results

    def map(self, items: Iterable[Any], template: str = "{item}", batch_size: int = 8,
            chat: bool = True, progress: bool = True, cluster: Any = None,
            **sampling: Any) -> Any:
        """Run `template` (with `{item}` replaced by each item) over a list or pandas Series.

        Returns the answers' texts, as a list or as a Series with the input's index. Prompts
        are batched `batch_size` at a time (`generate_batch`); greedy by default. `cluster`
        runs the batches on Dask workers: "local", a scheduler address or a
        `distributed.Client` (see `gemma_nb.cluster`); the answers are the same.
        """
        values = list(items)
        prompts = [template.replace("{item}", str(v)) for v in values]
        if chat:
            prompts = [format_chat([{"role": "user", "content": p}]) for p in prompts]
        batches = [(prompts[i : i + batch_size],) for i in range(0, len(prompts), batch_size)]
        if cluster is None:
            answered = ((i, answer_texts(self, sampling, *b)) for i, b in enumerate(batches))
        else:
            from .cluster import ModelRef, completed, connect

            answered = completed(connect(cluster), ModelRef.of(self), answer_texts, sampling,
                                 batches)
        by_batch: dict[int, list[str]] = {}
        bar = _progress_bar(len(prompts), progress)
        try:
            with closing(answered):  # an interrupted map cancels what a cluster has not done
                for position, texts in answered:
                    by_batch[position] = texts
                    bar.update(len(texts))
        finally:
            bar.close()
        answers = [text for position in sorted(by_batch) for text in by_batch[position]]
        if hasattr(items, "index") and hasattr(items, "to_numpy"):  # a pandas Series
            return type(items)(answers, index=items.index, name=getattr(items, "name", None))
        return answers


def answer_texts(model: Model, sampling: dict[str, Any], prompts: list[str]) -> list[str]:
    """One `map` batch's answers (also a cluster task: plain arguments in, texts out)."""
    return [g.text for g in model.generate_batch(prompts, **sampling)]


class _NoBar:
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional at run time
        return _NoBar()
    return tqdm(total=total, desc="gemma map", unit="prompt")
