"""Measure each ONNX Runtime session setting gemma-nb chooses (docs/benchmarks.md).

    python benchmarks/session_settings.py MODEL_DIR [MODEL_DIR ...] [--threads 2]

Every variant runs in a fresh process (so load time and peak RSS are its own): load the folder
with one setting changed from gemma-nb's defaults, then prefill a 128-token prompt and decode
32 tokens greedily, best of 3. Not part of CI; figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {  # name: (SessionOptions attributes, session config entries)
    "defaults": ({}, {}),
    "no prepacking": ({}, {"session.disable_prepacking": "1"}),
    "no spinning": ({}, {"session.intra_op.allow_spinning": "0"}),
    "basic graph optimizations": ({"graph_optimization_level": "ORT_ENABLE_BASIC"}, {}),
    "no memory arena": ({"enable_cpu_mem_arena": False}, {}),
    "1 thread": ({"intra_op_num_threads": 1}, {}),
}

_CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
from pathlib import Path
start = time.perf_counter()
from gemma_nb import bench, folder, session as S
from gemma_nb.model import Model
from gemma_nb.tokenizer import Tokenizer
path, attrs, entries, threads = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
for key, value in attrs.items():
    setattr(options, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level" else value)
for key, value in entries.items():
    options.add_session_config_entry(key, value)
info, cfg = folder.read_model_info(path)
session = ort.InferenceSession(str(path / folder.GRAPH_FILE), options, providers=["CPUExecutionProvider"])
model = Model(path, cfg, Tokenizer.from_file(path / folder.TOKENIZER_FILE), session, info)
load_s = time.perf_counter() - start
prompt = bench._prompt(model, 128)
bench._once(model, prompt, 4)
runs = [bench._once(model, prompt, 32) for _ in range(3)]
print(json.dumps({"load_s": load_s, "prefill_tok_s": max(r["prefill_tok_s"] for r in runs),
                  "decode_tok_s": max(r["decode_tok_s"] for r in runs),
                  "peak_rss_bytes": bench.peak_rss_bytes()}))
"""


def measure(path: Path, attrs: dict, entries: dict, threads: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(attrs),
                          json.dumps(entries), str(threads)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| model | setting | load s | prefill-128 tok/s | decode tok/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for path in args.models:
        for name, (attrs, entries) in VARIANTS.items():
            attrs = {"intra_op_num_threads": args.threads, **attrs}
            r = measure(path, attrs, entries, attrs["intra_op_num_threads"])
            print(f"| {path.name} | {name} | {r['load_s']:.2f} | {r['prefill_tok_s']:.0f} | "
                  f"{r['decode_tok_s']:.1f} | {r['peak_rss_bytes'] / 2**20:.0f} |", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()
