"""Items/s of evaluation and map in this process and on a local Dask cluster, side by side.

    python benchmarks/scale_throughput.py [MODEL_FOLDER] [--n 64] [--prompts 64] [--workers 2]
        [--repeat 3] [--threads N]

For an MMLU sample (`--n` items, 0-shot) and a `map` of `--prompts` prompts (16 new tokens,
greedy): the in-process run, then the same on `--workers` local worker processes of one thread
each. The cluster's first run includes starting it and loading the model in every worker
("cold"); the next ones reuse both ("warm"). Every run's results are checked equal to the
in-process ones. Medians of `--repeat` runs; the load average is printed, since on a shared
2-core machine it explains most of the spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import gemma_nb
from gemma_nb.cluster import close_local_cluster, local_client
from gemma_nb.eval import evaluate, mmlu
from gemma_nb.models import resolve_model
from gemma_nb.session import physical_cores


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def without_timing(report) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in report.records]


def measure(name: str, items: int, here: Callable[[], Any], there: Callable[[], Any],
            same: Callable[[Any, Any], bool], repeat: int) -> None:
    reference = None
    rows: dict[str, list[float]] = {"in process": [], "cluster, cold": [], "cluster, warm": []}
    for _ in range(repeat):
        seconds, reference = timed(here)
        rows["in process"].append(items / seconds)
    close_local_cluster()  # cold: start the cluster and load the model in each worker
    seconds, result = timed(there)
    rows["cluster, cold"].append(items / seconds)
    for _ in range(repeat):
        seconds, result = timed(there)
        assert same(result, reference), f"{name}: the cluster's results differ"
        rows["cluster, warm"].append(items / seconds)
    base = statistics.median(rows["in process"])
    for label, rates in rows.items():
        print(f"{name:<5} {label:<14} median {statistics.median(rates):6.2f} items/s "
              f"(min {min(rates):.2f}, max {max(rates):.2f}, {len(rates)} runs) "
              f"{statistics.median(rates) / base:5.2f}x in-process; "
              f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="default")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime threads in this process (default: physical cores)")
    args = parser.parse_args()
    model = gemma_nb.load(resolve_model(args.model), threads=args.threads)
    print(f"{model!r}; {physical_cores()} physical cores, {os.cpu_count()} CPUs; "
          f"{args.workers} workers of 1 thread; load average {os.getloadavg()[0]:.1f}")
    task = mmlu(n=args.n, seed=0)

    def cluster() -> Any:  # started again after `measure` closes it for a cold run
        return local_client(args.workers)

    measure("mmlu", args.n, lambda: evaluate(model, task, progress=False),
            lambda: evaluate(model, task, progress=False, cluster=cluster()),
            lambda a, b: without_timing(a) == without_timing(b), args.repeat)
    prompts = [f"Write a sentence about the number {i}." for i in range(args.prompts)]
    measure("map", args.prompts, lambda: model.map(prompts, max_new_tokens=16, progress=False),
            lambda: model.map(prompts, max_new_tokens=16, progress=False, cluster=cluster()),
            lambda a, b: a == b, args.repeat)
    close_local_cluster()


if __name__ == "__main__":  # the workers are spawned processes: they import this module again
    main()
