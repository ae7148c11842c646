"""The peers' side of benchmarks/compare.py: one runtime, one model, one process.

Run by the peers' venv python (benchmarks/build_peers.sh), never by CI:

    /tmp/peers-venv/bin/python benchmarks/peers_worker.py bench llama MODEL.gguf --prompt-file P.json
    /tmp/peers-venv/bin/python benchmarks/peers_worker.py bench ortgenai FOLDER --prompt-file P.json
    /tmp/peers-venv/bin/python benchmarks/peers_worker.py sample MODEL.gguf --prompt-file P.json --logits-out ROW.npy
    /tmp/peers-venv/bin/python benchmarks/peers_worker.py quantize F16.gguf OUT.gguf Q4_K_M
    /tmp/peers-venv/bin/python benchmarks/peers_worker.py versions

`bench` prints one JSON object shaped like `gemma-nb bench --json`, measured the way
gemma_nb/bench.py measures: load = building the model object (ready to take tokens);
prefill = the prompt's forward pass up to the greedy first token (prefill tok/s = prompt /
that time, which is also the time to first token); decode = new_tokens - 1 further greedy steps,
stop tokens ignored; one warm-up run of 4 new tokens, then `repeat` runs, min/median/max;
peak RSS = VmHWM of this process (loading included); generation peak RSS = VmHWM restarted
after loading ("5" to /proc/self/clear_refs), as gemma-nb bench does.

`sample` times llama.cpp's sampler chains picking one token from the logits after the prompt
(benchmarks/sampling.py), and saves that row of logits for gemma-nb's side.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

QUANT_TYPES = ("Q4_K_M", "Q6_K", "Q8_0", "Q4_0", "Q5_K_M")


def memory_bytes(field: str) -> int | None:
    found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) * 1024 if found else None


def summary(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ---- llama.cpp (llama-cpp-python) ---------------------------------------------------------

def llama_runner(path: str, threads: int, n_ctx: int) -> tuple[Callable, dict]:
    """Load a GGUF; return run(prompt, new_tokens) -> timings, and facts about the runtime."""
    import llama_cpp

    llm = llama_cpp.Llama(path, n_threads=threads, n_threads_batch=threads, n_batch=512,
                          n_ubatch=512, n_ctx=n_ctx, verbose=False)
    n_vocab = llm.n_vocab()

    def greedy() -> int:  # logits of the last evaluated position, read in place
        row = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(n_vocab,))))

    def run(prompt: list[int], new_tokens: int) -> dict[str, float]:
        llm.reset()  # n_tokens = 0: the next eval drops the old KV entries
        start = time.perf_counter()
        llm.eval(prompt)  # n_batch 512: one ubatch, logits for the last position only
        token = greedy()
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            llm.eval([token])
            token = greedy()
        end = time.perf_counter()
        return timings(len(prompt), new_tokens, start, first, end)

    facts = {"runtime": "llama.cpp", "version": llama_cpp.__version__,
             "system_info": llama_cpp.llama_print_system_info().decode().strip(),
             "settings": f"Llama(n_threads={threads}, n_threads_batch={threads}, n_batch=512, "
                         f"n_ubatch=512, n_ctx={n_ctx}), mmap on, KV f16"}
    return run, facts


# ---- onnxruntime-genai ----------------------------------------------------------------------

def ortgenai_runner(path: str, threads: int, n_ctx: int) -> tuple[Callable, dict]:
    import onnxruntime as ort
    import onnxruntime_genai as og

    genai = json.loads((Path(path) / "genai_config.json").read_text())
    window = (genai["model"]["decoder"].get("sliding_window") or {}).get("window_size", 0)
    # Its GroupQueryAttention refuses a KV cache shorter than the sliding window.
    max_length = max(n_ctx, window)
    config = og.Config(path)
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {
        "intra_op_num_threads": threads, "inter_op_num_threads": 1}}}}))
    model = og.Model(config)

    def run(prompt: list[int], new_tokens: int) -> dict[str, float]:
        params = og.GeneratorParams(model)
        total = len(prompt) + new_tokens
        # min_length keeps EOS from ending the run early (stop tokens ignored, as for all)
        params.set_search_options(max_length=max_length, min_length=total, do_sample=False)
        generator = og.Generator(model, params)  # allocates the KV cache, like KVCache(...)
        start = time.perf_counter()
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))  # prefill
        generator.generate_next_token()  # greedy pick from the prefill's logits
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            generator.generate_next_token()  # one decode step + greedy pick
        end = time.perf_counter()
        del generator
        return timings(len(prompt), new_tokens, start, first, end)

    facts = {"runtime": "onnxruntime-genai", "version": og.__version__,
             "onnxruntime": ort.__version__,
             "settings": f"genai_config overlay: intra_op_num_threads={threads}, "
                         f"inter_op_num_threads=1; greedy; max_length={max_length}"}
    return run, facts


def timings(n: int, new_tokens: int, start: float, first: float, end: float) -> dict[str, float]:
    return {"prefill_tok_s": n / (first - start), "time_to_first_token_s": first - start,
            "decode_tok_s": (new_tokens - 1) / (end - first) if new_tokens > 1 else 0.0}


RUNNERS = {"llama": llama_runner, "ortgenai": ortgenai_runner}


def bench(runtime: str, path: str, prompt: list[int], new_tokens: int, repeat: int,
          threads: int) -> dict:
    n_ctx = len(prompt) + new_tokens
    start = time.perf_counter()
    run, facts = RUNNERS[runtime](path, threads, n_ctx)
    load_s = time.perf_counter() - start
    load_peak = memory_bytes("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    run(prompt, min(new_tokens, 4))  # warm-up
    runs = [run(prompt, new_tokens) for _ in range(repeat)]
    generation_peak = memory_bytes("VmHWM")
    return {"model": path, **facts, "threads": threads, "load_s": load_s,
            "peak_rss_bytes": max(load_peak, generation_peak),
            "generation_peak_rss_bytes": generation_peak, "rss_bytes": memory_bytes("VmRSS"),
            "runs": [{"prompt_tokens": len(prompt), "new_tokens": new_tokens,
                      **{k: summary([r[k] for r in runs]) for k in runs[0]}}]}


# Sampling settings: name -> (temperature, top_k, top_p); benchmarks/sampling.py has the same.
SAMPLING = {"greedy": (0.0, 0, 1.0), "temperature 1.0": (1.0, 0, 1.0),
            "top-k 40, T 0.8": (0.8, 40, 1.0), "top-p 0.95, T 0.8": (0.8, 0, 0.95),
            "top-k 40, top-p 0.95, T 0.8": (0.8, 40, 0.95)}


def llama_sampling(path: str, prompt: list[int], repeat: int, threads: int,
                   logits_out: str) -> dict:
    """Microseconds a `llama_sampler_sample` call takes (it reads the context's logits, as each
    decode step does), per setting: a chain of temperature, top-k, top-p and the draw, in the
    order gemma-nb applies them."""
    import llama_cpp as lc

    llm = lc.Llama(path, n_threads=threads, n_threads_batch=threads, n_batch=512, n_ubatch=512,
                   n_ctx=len(prompt) + 8, verbose=False)
    llm.eval(prompt)
    ctx = llm._ctx.ctx
    row = np.ctypeslib.as_array(lc.llama_get_logits_ith(ctx, -1), shape=(llm.n_vocab(),))
    np.save(logits_out, row.copy())
    results = {}
    for name, (temperature, top_k, top_p) in SAMPLING.items():
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if temperature == 0:
            stages = [lc.llama_sampler_init_greedy()]
        else:
            stages = [lc.llama_sampler_init_temp(temperature)]
            stages += [lc.llama_sampler_init_top_k(top_k)] if top_k else []
            stages += [lc.llama_sampler_init_top_p(top_p, 1)] if top_p < 1 else []
            stages.append(lc.llama_sampler_init_dist(1234))
        for stage in stages:
            lc.llama_sampler_chain_add(chain, stage)
        times, tokens = [], []
        for _ in range(repeat + 1):  # the first call warms up
            start = time.perf_counter()
            tokens.append(lc.llama_sampler_sample(chain, ctx, -1))
            times.append((time.perf_counter() - start) * 1e6)
        lc.llama_sampler_free(chain)
        results[name] = {"us": summary(times[1:]), "tokens": tokens[1:]}
    return {"runtime": "llama.cpp", "version": lc.__version__, "vocab": int(row.size),
            "sampling": results}


def quantize(src: str, dst: str, kind: str, threads: int) -> None:
    """llama.cpp's own quantizer (llama_model_quantize), as llama-quantize runs it."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if status != 0:
        raise SystemExit(f"llama_model_quantize failed ({status}) for {src} -> {kind}")


def versions() -> dict:
    import llama_cpp
    import onnxruntime as ort
    import onnxruntime_genai as og

    return {"llama-cpp-python": llama_cpp.__version__, "onnxruntime-genai": og.__version__,
            "onnxruntime (peers venv)": ort.__version__,
            "llama.cpp system info": llama_cpp.llama_print_system_info().decode().strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("runtime", choices=sorted(RUNNERS))
    b.add_argument("model")
    b.add_argument("--prompt-file", required=True, help="JSON list of prompt token ids")
    b.add_argument("--new-tokens", type=int, default=128)
    b.add_argument("--repeat", type=int, default=3)
    b.add_argument("--threads", type=int, default=2)
    sa = sub.add_parser("sample")
    sa.add_argument("model")
    sa.add_argument("--prompt-file", required=True, help="JSON list of prompt token ids")
    sa.add_argument("--logits-out", required=True, help=".npy file for the row of logits")
    sa.add_argument("--repeat", type=int, default=200)
    sa.add_argument("--threads", type=int, default=2)
    q = sub.add_parser("quantize")
    q.add_argument("src")
    q.add_argument("dst")
    q.add_argument("kind", choices=QUANT_TYPES)
    q.add_argument("--threads", type=int, default=2)
    sub.add_parser("versions")
    args = ap.parse_args()
    if args.cmd == "bench":
        prompt = json.loads(Path(args.prompt_file).read_text())
        print(json.dumps(bench(args.runtime, args.model, prompt, args.new_tokens, args.repeat,
                               args.threads)))
    elif args.cmd == "sample":
        prompt = json.loads(Path(args.prompt_file).read_text())
        print(json.dumps(llama_sampling(args.model, prompt, args.repeat, args.threads,
                                        args.logits_out)))
    elif args.cmd == "quantize":
        quantize(args.src, args.dst, args.kind, args.threads)
    else:
        print(json.dumps(versions()))


if __name__ == "__main__":
    main()
