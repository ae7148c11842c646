"""Decode speed against the read bandwidth of the same moment, for two model folders side by side.

This machine's read bandwidth flips between ~45 and ~80 GB/s, at times within seconds, so a
benchmark run's percentage of the bandwidth bound depends on the phase it ran in. This script
times short windows instead: a read-bandwidth probe, 200 decode steps of folder A and 200 of
folder B (their order alternating), another probe. Each folder's tok/s in a window is set against
the bound of the faster of the two probes (read bandwidth / the weight bytes a step reads, as
compare.py counts them), so a window whose phase flipped holds the runs to its fast moment.

    python benchmarks/fast_windows.py FOLDER_A FOLDER_B [--seconds 360] [--context 600]

Prints one line a window, then for the windows that began or ended in a fast phase (a probe at
65 GB/s or more) each folder's median and lowest percentage and how many fell under 70%.
"""

from __future__ import annotations

import argparse
import threading
import time

import numpy as np
from compare import weight_facts

from gemma_nb import load

FAST_GB_S = 65.0
PROBE_BYTES = 512 * 2**20


def probe(parts: list[np.ndarray]) -> float:
    """GB/s of two threads reading PROBE_BYTES (numpy's max releases the GIL), best of 3."""
    best = 0.0
    for _ in range(3):
        threads = [threading.Thread(target=np.max, args=(p,)) for p in parts]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = max(best, PROBE_BYTES / (time.perf_counter() - start))
    return best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs=2)
    parser.add_argument("--seconds", type=float, default=360)
    parser.add_argument("--context", type=int, default=600, help="tokens in the cache")
    parser.add_argument("--steps", type=int, default=200, help="decode steps a folder a window")
    args = parser.parse_args()
    models = [load(f, threads=2) for f in args.folders]
    reads = [weight_facts(f)["read_per_token"] for f in args.folders]
    caches = []
    for model in models:
        cache = model.new_cache(args.context + args.steps)
        model.prefill(cache, list(range(2, 2 + args.context)))
        caches.append(cache)
    parts = np.array_split(np.ones(PROBE_BYTES // 4, np.int32), 2)

    def tok_s(k: int) -> float:
        model, cache = models[k], caches[k]
        cache.lengths[:] = args.context
        token, start = 5, time.perf_counter()
        for _ in range(args.steps):
            token = int(np.argmax(model.decode_one(cache, token, reuse=True)))
        return args.steps / (time.perf_counter() - start)

    fast: list[list[float]] = [[], []]
    end, window = time.time() + args.seconds, 0
    while time.time() < end:
        before = probe(parts)
        speeds = {k: tok_s(k) for k in ((0, 1) if window % 2 == 0 else (1, 0))}
        after = probe(parts)
        bandwidth = max(before, after) * 1e9
        shares = [100 * speeds[k] * reads[k] / bandwidth for k in (0, 1)]
        print(f"probes {before:.0f}/{after:.0f} GB/s  A {speeds[0]:.0f} tok/s {shares[0]:.0f}%  "
              f"B {speeds[1]:.0f} tok/s {shares[1]:.0f}%", flush=True)
        if max(before, after) >= FAST_GB_S:
            for k in (0, 1):
                fast[k].append(shares[k])
        window += 1
        time.sleep(2)
    for name, shares in zip("AB", fast):
        if shares:
            print(f"{name}: {len(shares)} windows with a fast probe: median "
                  f"{np.median(shares):.1f}%, lowest {min(shares):.1f}%, "
                  f"{sum(s < 70 for s in shares)} under 70%")


if __name__ == "__main__":
    main()
