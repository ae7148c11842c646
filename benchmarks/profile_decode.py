"""Where a decode step's time goes: onnxruntime's profiler over decode steps of a model folder,
summed by op type (docs/performance.md). The profiler adds a fixed cost to every node, so the
profiled step is slower than a plain one; both are printed.

    python benchmarks/profile_decode.py FOLDER [--steps 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

import gemma_nb


def decode_steps(model: gemma_nb.Model, steps: int) -> float:
    """Seconds a decode step, after a 32-token prompt."""
    cache = model.new_cache(32 + steps)
    token = int(np.argmax(model.prefill(cache, list(range(2, 34)))))
    start = time.perf_counter()
    for _ in range(steps):
        token = int(np.argmax(model.decode_one(cache, token)))
    return (time.perf_counter() - start) / steps


def profiled_load(folder: str, threads: int, prefix: str) -> gemma_nb.Model:
    plain = ort.SessionOptions

    class Profiled(plain):
        def __init__(self) -> None:
            super().__init__()
            self.enable_profiling = True
            self.profile_file_prefix = prefix

    ort.SessionOptions = Profiled
    try:
        return gemma_nb.load(folder, threads=threads)
    finally:
        ort.SessionOptions = plain


def by_op(trace: list[dict], steps: int) -> dict[str, tuple[float, int]]:
    """Per op type: microseconds and nodes a step, over the last `steps` runs (the decode)."""
    runs = [e for e in trace if e.get("name") == "model_run"][-steps:]
    first = runs[0]["ts"]
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in trace:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            totals[e["args"]["op_name"]][0] += e["dur"] / steps
            totals[e["args"]["op_name"]][1] += 1 / steps
    return {op: (us, round(n)) for op, (us, n) in totals.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    plain = decode_steps(gemma_nb.load(args.folder, threads=args.threads), args.steps)
    with tempfile.TemporaryDirectory() as scratch:
        model = profiled_load(args.folder, args.threads, str(Path(scratch) / "profile"))
        profiled = decode_steps(model, args.steps)
        trace = json.loads(Path(model.session.end_profiling()).read_text())
    ops = by_op(trace, args.steps)
    print(f"{args.folder}: {plain * 1e3:.2f} ms a decode step plain, {profiled * 1e3:.2f} ms "
          f"profiled ({sum(n for _, n in ops.values())} nodes a step)")
    print("| op | ms a step | nodes a step |\n|---|---|---|")
    for op, (us, n) in sorted(ops.items(), key=lambda kv: -kv[1][0]):
        print(f"| {op} | {us / 1e3:.2f} | {n} |")


if __name__ == "__main__":
    main()
