"""The `gemma-nb` command: export, generate, chat, serve, info, bench, setup, build-kernel.

Errors become one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .errors import GemmaError

__all__ = ["main"]

EXPORT_DTYPES = ("fp32", "fp16", "int8", "int4", "gguf", "int4-cpu")  # gemma_export.packing.DTYPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemma-nb", description="Run Gemma models locally with ONNX Runtime."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="export GGUF / .llamafile / HF weights to a model folder")
    p.add_argument("source", help="a .gguf, a .llamafile, a Hugging Face folder, or 'default'")
    p.add_argument("-o", "--output", required=True, help="the model folder to write")
    p.add_argument("--dtype", choices=EXPORT_DTYPES, default="fp32",
                   help="fp32 (default), fp16, int8/int4 (MatMulNBits), gguf (re-encode the "
                        "GGUF blocks, exactly where ONNX Runtime can hold them), or int4-cpu "
                        "(int4 for gemma-nb's own CPU kernel: faster on CPU, CPU only)")
    p.add_argument("--block-size", type=int, default=32,
                   help="int8/int4 quantization block: a power of two in 16..256 (default 32)")
    p.add_argument("--accuracy-level", type=int, default=4,
                   help="MatMulNBits accuracy level: 4 = int8 activations, fast (default); "
                        "0 = fp32 arithmetic, precise and slow")
    p.add_argument("--embedding-bits", type=int, choices=(4, 8),
                   help="int4 only: the tied embedding/lm_head table at 4 bits (default, "
                        "smaller and faster) or 8 bits (~4%% lower perplexity)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")

    p = sub.add_parser("generate", help="answer a prompt once (streams to stdout)")
    _model_argument(p)
    p.add_argument("-p", "--prompt", required=True)
    _sampling_arguments(p, max_tokens=256)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--raw", action="store_true",
                   help="send the prompt as-is (default: as a user chat turn)")

    p = sub.add_parser("chat", help="chat in the terminal (streaming; /help lists commands)")
    _model_argument(p)
    p.add_argument("-p", "--system", help="the system prompt")
    _sampling_arguments(p, max_tokens=1024)

    p = sub.add_parser("serve", help="serve an OpenAI-compatible HTTP API (needs [serve])")
    _model_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="default 8080; 0 picks a free port")
    p.add_argument("--api-key", default=os.environ.get("GEMMA_NB_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $GEMMA_NB_API_KEY)")
    p.add_argument("--max-concurrency", type=int, default=1,
                   help="generations at once, each on its own copy of the model (default 1)")
    p.add_argument("--queue", type=int, default=32,
                   help="requests that may wait for the model; beyond, 429 (default 32)")

    p = sub.add_parser("info", help="describe a model folder")
    _model_argument(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="measure prefill/decode speed, first-token time, load, RSS")
    _model_argument(p)
    p.add_argument("--prompt-tokens", default="128,512",
                   help="comma-separated prompt lengths (default 128,512)")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3, help="measured runs after one warm-up")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    sub.add_parser("setup", help="prepare the default model (Gemma 3 270M) in the cache")

    p = sub.add_parser("build-kernel", help="build the CPU kernel of --dtype int4-cpu folders "
                                            "(done when installing; again after a failure)")
    p.add_argument("--out", help="folder for the library (default: the package's, if writable, "
                                 "else the cache)")
    return parser


def _sampling_arguments(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("-n", "--max-tokens", type=int, default=max_tokens)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)


def _model_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a model folder, a weights file (exported on first use), "
                                 "or 'default'")
    p.add_argument("--provider", default="cpu", help="cpu, cuda or rocm")
    p.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")


def _load(args: argparse.Namespace):
    from . import load
    from .models import resolve_model

    return load(resolve_model(args.model), provider=args.provider, threads=args.threads)


def _export(args: argparse.Namespace) -> None:
    from .models import DEFAULT_MODEL, default_model_source

    try:
        from gemma_export import export
    except ImportError:
        raise GemmaError("exporting needs the exporter: pip install 'gemma-nb[export]'") from None
    source = default_model_source() if args.source == DEFAULT_MODEL else args.source
    out = export(source, args.output, dtype=args.dtype, block_size=args.block_size,
                 accuracy_level=args.accuracy_level, embedding_bits=args.embedding_bits,
                 overwrite=args.force)
    print(out)


def _generate(args: argparse.Namespace) -> None:
    from .chat import format_chat

    model = _load(args)
    prompt = args.prompt if args.raw else format_chat([{"role": "user", "content": args.prompt}])
    stream = model.stream(prompt, max_new_tokens=args.max_tokens, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop=args.stop)
    for piece in stream:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    t = stream.result.timings
    print(f"[{t.prompt_tokens} prompt tokens, {t.prefill_tokens_per_s:.1f} tok/s; "
          f"{t.generated_tokens} generated, {t.decode_tokens_per_s:.1f} tok/s; "
          f"first token {t.time_to_first_token_s:.2f} s; load {t.load_s:.2f} s]", file=sys.stderr)


def _chat(args: argparse.Namespace) -> None:
    from .sampling import SamplingSettings
    from .terminal_chat import run_chat

    SamplingSettings(args.temperature, args.top_k, args.top_p)  # bad settings fail before loading
    run_chat(_load(args), args.system, max_new_tokens=args.max_tokens,
             temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def _serve(args: argparse.Namespace) -> None:
    try:
        from . import server
    except ImportError as exc:
        raise GemmaError(f"serving needs {exc.name}: pip install 'gemma-nb[serve]'") from None
    from . import load
    from .models import resolve_model

    if args.max_concurrency < 1 or args.queue < 0 or not 0 <= args.port <= 65535:
        raise GemmaError(f"--max-concurrency must be at least 1 (got {args.max_concurrency}), "
                         f"--queue at least 0 (got {args.queue}), --port in 0..65535 "
                         f"(got {args.port})")
    warning = server.exposure_warning(args.host, args.api_key)
    if warning:
        print(f"gemma-nb: warning: {warning}", file=sys.stderr)
    sock = server.bind(args.host, args.port)  # before loading: a busy port fails at once
    path = resolve_model(args.model)
    models = [load(path, provider=args.provider, threads=args.threads)
              for _ in range(args.max_concurrency)]
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"gemma-nb: serving {path.name} at http://{host}:{port}/v1 (Ctrl-C to stop)",
          file=sys.stderr, flush=True)
    server.serve(models, sock, path.name, args.api_key, args.queue)


def _info(args: argparse.Namespace) -> None:
    from .folder import read_model_info
    from .models import resolve_model

    path = resolve_model(args.model)
    info, cfg = read_model_info(path)
    if args.json:
        print(json.dumps({"path": str(path), **info}, indent=2))
        return
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    exporter = info.get("exporter", {})
    print(f"path:          {path}")
    print(f"architecture:  {cfg.architecture}, {cfg.num_layers} layers, hidden {cfg.hidden_size}, "
          f"{cfg.num_heads} heads / {cfg.num_kv_heads} KV heads, head_dim {cfg.head_dim}")
    print(f"vocabulary:    {cfg.vocab_size}")
    print(f"context:       {cfg.context_length} (sliding window {cfg.sliding_window})")
    print(f"dtype:         {info.get('dtype')}")
    print(f"size on disk:  {size / 2**20:.1f} MiB")
    print(f"source:        {exporter.get('source')} (sha256 {exporter.get('source_sha256')})")
    print(f"exporter:      {exporter.get('name')} {exporter.get('version')}")


def _bench(args: argparse.Namespace) -> None:
    from .bench import format_bench, run_bench
    from .models import resolve_model

    try:
        lengths = [int(n) for n in args.prompt_tokens.split(",")]
    except ValueError:
        raise GemmaError(f"--prompt-tokens takes numbers like 128,512, not {args.prompt_tokens!r}")
    if min(lengths) < 1 or args.new_tokens < 1 or args.repeat < 1:
        raise GemmaError("--prompt-tokens, --new-tokens and --repeat must be positive")
    report = run_bench(resolve_model(args.model), lengths, args.new_tokens, args.repeat,
                       args.threads, args.provider)
    print(json.dumps(report) if args.json else format_bench(report))


def _setup(args: argparse.Namespace) -> None:
    from .models import DEFAULT_MODEL, resolve_model

    print(resolve_model(DEFAULT_MODEL))


def _build_kernel(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .kernels import kernel_isa
    from .kernels.build import KernelBuildError, build

    try:
        library = build(Path(args.out) if args.out else None)
    except KernelBuildError as exc:
        raise GemmaError(f"the CPU kernel was not built: {exc}") from None
    print(f"{library} (path on this CPU: {kernel_isa()})")


_COMMANDS = {"export": _export, "generate": _generate, "chat": _chat, "serve": _serve,
             "info": _info, "bench": _bench, "setup": _setup, "build-kernel": _build_kernel}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _COMMANDS[args.command](args)
    except GemmaError as exc:
        print(f"gemma-nb: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gemma-nb: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
