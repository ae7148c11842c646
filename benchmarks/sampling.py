"""A token's pick from a row of logits, gemma-nb against llama.cpp's samplers, on the same row.

NOT part of CI: llama.cpp runs from the peers' venv (benchmarks/build_peers.sh).

    python benchmarks/sampling.py [--repeat 200]

The default model (Gemma 3 270M, Q4_K_M GGUF). For each prompt, llama.cpp
(benchmarks/peers_worker.py sample) reads the prompt, times its sampler chains on the logits of
the last position (`llama_sampler_sample`, as its generation loop calls it each step: the row is
read from the context) and saves that row. gemma-nb then times `sampling.choose` on the same row,
which also gives the token's log-probability: with the kernel library (AVX-512), and with
numpy's forms alone (GEMMA_NB_KERNEL_ISA=avx2, what a CPU without AVX-512 runs). The chains
apply temperature, top-k, top-p, then the draw, in gemma-nb's order. Warm caches on both sides
(the same row each call); median microseconds. Two prompts: the benchmark's repeated sentence
(512 tokens: one token holds the top-p 0.95 nucleus at T 0.8) and an open one (139 tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from compare import PEERS_PYTHON, PROMPT_TEXT  # noqa: E402
from peers_worker import SAMPLING  # noqa: E402

OPEN_PROMPT = "My favourite"


def our_times(row: np.ndarray, repeat: int) -> dict[str, float]:
    """Median microseconds of `choose` for each setting, in this process's configuration."""
    from gemma_nb.sampling import SamplingSettings, choose

    medians = {}
    for name, (temperature, top_k, top_p) in SAMPLING.items():
        settings, rng = SamplingSettings(temperature, top_k, top_p), np.random.default_rng(0)
        times = []
        for _ in range(repeat + 1):
            start = time.perf_counter()
            choose(row, settings, rng)
            times.append((time.perf_counter() - start) * 1e6)
        medians[name] = statistics.median(times[1:])
    return medians


def numpy_times(row_file: Path, repeat: int) -> dict[str, float]:
    """`our_times` in a process whose kernel library declines (numpy's forms)."""
    code = (f"import json, sys, numpy as np; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
            "from sampling import our_times; "
            f"print(json.dumps(our_times(np.load({str(row_file)!r}), {repeat})))")
    env = {**os.environ, "GEMMA_NB_KERNEL_ISA": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peers-python", default=PEERS_PYTHON)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    from gemma_nb.folder import TOKENIZER_FILE
    from gemma_nb.kernels import kernel_isa
    from gemma_nb.models import default_model_source, resolve_model
    from gemma_nb.tokenizer import Tokenizer

    gguf = str(default_model_source())
    tokenizer = Tokenizer.from_file(resolve_model("default", "int4-cpu") / TOKENIZER_FILE)
    prompts = {"512 tokens of the benchmark's sentence":
               tokenizer.encode(PROMPT_TEXT * 64)[:512],
               f"open: {OPEN_PROMPT!r}": tokenizer.encode(OPEN_PROMPT)}
    print(f"kernel path: {kernel_isa()}; median us a token over {args.repeat} calls, warm\n")
    with tempfile.TemporaryDirectory() as scratch:
        for label, ids in prompts.items():
            prompt_file, row_file = Path(scratch) / "prompt.json", Path(scratch) / "row.npy"
            prompt_file.write_text(json.dumps(ids))
            peer = json.loads(subprocess.run(
                [args.peers_python, str(REPO / "benchmarks" / "peers_worker.py"), "sample",
                 gguf, "--prompt-file", str(prompt_file), "--logits-out", str(row_file),
                 "--repeat", str(args.repeat)], capture_output=True, text=True,
                check=True).stdout)
            row = np.load(row_file)
            ours, plain = our_times(row, args.repeat), numpy_times(row_file, args.repeat)
            print(f"### {label} ({len(ids)} tokens, vocabulary {row.size})\n")
            print("| setting | llama.cpp | gemma-nb | gemma-nb, numpy only "
                  "| llama.cpp / gemma-nb |\n|---|---|---|---|---|")
            for name in SAMPLING:
                theirs = peer["sampling"][name]["us"]["median"]
                print(f"| {name} | {theirs:.0f} | {ours[name]:.0f} | {plain[name]:.0f} | "
                      f"{theirs / ours[name]:.2f}x |")
            print()


if __name__ == "__main__":
    main()
