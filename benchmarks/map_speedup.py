"""Batched `Model.map` against a loop of single `generate` calls, same prompts, same outputs.

    python benchmarks/map_speedup.py MODEL_FOLDER [--prompts 16] [--new-tokens 32]

Prints the wall time of each and the ratio; checks that greedy outputs are identical.
"""

from __future__ import annotations

import argparse
import time

import gemma_nb
from gemma_nb.chat import format_chat

TOPICS = ["the sea", "a forest", "the moon", "bread", "rain", "a city", "music", "winter",
          "a cat", "the desert", "a river", "coffee", "mountains", "a library", "fire", "the wind"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-sizes", default="4,8,16")
    args = parser.parse_args()
    model = gemma_nb.load(args.model)
    topics = (TOPICS * (args.prompts // len(TOPICS) + 1))[: args.prompts]
    template = "Write one sentence about {item}."
    prompts = [format_chat([{"role": "user", "content": template.replace("{item}", t)}])
               for t in topics]
    model.generate(prompts[0], max_new_tokens=4)  # warm-up

    start = time.perf_counter()
    loop = [model.generate(p, max_new_tokens=args.new_tokens).text for p in prompts]
    loop_s = time.perf_counter() - start
    print(f"loop of {len(prompts)} generate calls: {loop_s:.2f} s")
    for batch_size in map(int, args.batch_sizes.split(",")):
        start = time.perf_counter()
        mapped = model.map(topics, template, batch_size=batch_size, progress=False,
                           max_new_tokens=args.new_tokens)
        map_s = time.perf_counter() - start
        same = "identical" if mapped == loop else "DIFFERENT"
        print(f"map, batch {batch_size:>2}: {map_s:.2f} s, {loop_s / map_s:.2f}x the loop, "
              f"outputs {same}")


if __name__ == "__main__":
    main()
