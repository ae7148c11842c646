"""`gemma-nb bench`: prefill and decode speed, time to first token, load time and peak memory.

Prompts are fixed token ids (a sentence repeated), decoding runs exactly `new_tokens` greedy
steps (stop tokens ignored) so every run does the same work; each figure is reported as the
min / median / max of `repeat` runs after one warm-up run.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import ContextLengthError
from .kernels import KERNEL_DTYPE, kernel_isa
from .model import Model, load
from .session import packs_in_parallel

__all__ = ["run_bench", "format_bench", "peak_rss_bytes", "rss_bytes", "restart_peak_rss"]

_TEXT = "The quick brown fox jumps over the lazy dog while the cat watches from the window. "


def _memory_bytes(field: str) -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"{field}:\s+(\d+) kB", status)
    return int(found.group(1)) * 1024 if found else None


def peak_rss_bytes() -> int | None:
    """The process's peak resident memory (Linux VmHWM); None where it cannot be read."""
    return _memory_bytes("VmHWM")


def rss_bytes() -> int | None:
    """The process's resident memory now (Linux VmRSS): after loading, the steady state."""
    return _memory_bytes("VmRSS")


def restart_peak_rss() -> bool:
    """Start VmHWM again from the resident memory now (Linux: "5" to /proc/self/clear_refs),
    so that a later `peak_rss_bytes` is the peak since this call; False where unsupported.
    Loading can peak above generation: the mapped weights and ONNX Runtime's packed copy of
    them are both resident until the session has been built."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _prompt(model: Model, n: int) -> list[int]:
    ids = model.tokenizer.encode(_TEXT * (n // 8 + 1))
    return ids[:n]


def _once(model: Model, prompt: list[int], new_tokens: int) -> dict[str, float]:
    cache = model.new_cache(len(prompt) + new_tokens)
    start = time.perf_counter()
    logits = model.prefill(cache, prompt)
    token = int(np.argmax(logits))
    first = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = int(np.argmax(model.decode_one(cache, token, reuse=True)))
    end = time.perf_counter()
    return {"prefill_tok_s": len(prompt) / (first - start),
            "time_to_first_token_s": first - start,
            "decode_tok_s": (new_tokens - 1) / (end - first) if new_tokens > 1 else 0.0}


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def run_bench(path: str | Path, prompt_tokens: list[int], new_tokens: int, repeat: int = 3,
              threads: int | None = None, provider: str = "cpu") -> dict[str, Any]:
    start = time.perf_counter()
    model = load(path, provider=provider, threads=threads)
    load_s = time.perf_counter() - start
    load_peak = peak_rss_bytes()
    restarted = restart_peak_rss()
    results = []
    for n in prompt_tokens:
        prompt = _prompt(model, n)
        if len(prompt) + new_tokens > model.config.context_length:
            raise ContextLengthError(
                f"{len(prompt)} prompt + {new_tokens} new tokens exceed this model's context of "
                f"{model.config.context_length}"
            )
        _once(model, prompt, min(new_tokens, 4))  # warm-up: first-run allocations, caches
        runs = [_once(model, prompt, new_tokens) for _ in range(repeat)]
        results.append({"prompt_tokens": len(prompt), "new_tokens": new_tokens,
                         **{key: _summary([r[key] for r in runs]) for key in runs[0]}})
    return {
        "model": str(path), "dtype": model.info.get("dtype"), "provider": provider,
        "threads": model.session.get_session_options().intra_op_num_threads,
        "load_s": load_s, "parallel_prepack": packs_in_parallel(model.session),
        "cpu_kernel": kernel_isa() if model.info.get("dtype") == KERNEL_DTYPE else None,
        "rss_bytes": rss_bytes(), **_peaks(load_peak, restarted),
        "runs": results,
        "onnxruntime": ort.__version__, "machine": platform.machine(),
        "processor": platform.processor() or None,
    }


def _peaks(load_peak: int | None, restarted: bool) -> dict[str, int | None]:
    """Peak RSS over the whole run, and over the runs alone (None where it cannot be told)."""
    generation_peak = peak_rss_bytes() if restarted else None
    overall = max((v for v in (load_peak, generation_peak) if v), default=None)
    return {"peak_rss_bytes": overall, "generation_peak_rss_bytes": generation_peak}


def _weights(report: dict[str, Any]) -> str:
    if report.get("cpu_kernel"):
        return f"weights read in place by gemma-nb's CPU kernel, {report['cpu_kernel']} path"
    return f"weights packed {'in parallel' if report['parallel_prepack'] else 'one at a time'}"


def format_bench(report: dict[str, Any]) -> str:
    def mib(value: int | None) -> str:
        return f"{value / 2**20:.0f} MiB" if value else "unknown"

    lines = [f"{report['model']} ({report['dtype']}, {report['provider']}, "
             f"{report['threads']} threads, onnxruntime {report['onnxruntime']})",
             f"load {report['load_s']:.2f} s ({_weights(report)}), "
             f"peak RSS {mib(report['peak_rss_bytes'])} "
             f"(loading included), {mib(report['generation_peak_rss_bytes'])} while "
             f"generating, {mib(report['rss_bytes'])} after the runs",
             "prompt  prefill tok/s        first token s          decode tok/s   (min/median/max)"]
    for r in report["runs"]:
        cells = [r["prefill_tok_s"], r["time_to_first_token_s"], r["decode_tok_s"]]
        lines.append(f"{r['prompt_tokens']:>6}  " + "  ".join(
            f"{c['min']:6.2f}/{c['median']:6.2f}/{c['max']:6.2f}" for c in cells))
    return "\n".join(lines)
