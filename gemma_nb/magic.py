"""The `%gemma` / `%%gemma` magics: parse (`magic_args`), interpolate, delegate to the model's
public API (`stream`, `map`), render (`display`). No model logic lives here.

    %load_ext gemma_nb
    %gemma load default                 # or a model folder, .gguf, .llamafile, HF folder
    %%gemma --temperature 0.7 -o answer
    Explain this error: {err}

Configuration is the `Gemma` Configurable (`%config Gemma.temperature = 0.5`, or
`c.Gemma.temperature = 0.5` in ipython_config.py). Every mistake a user can make becomes a
one-line `UsageError`, never a traceback.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import CaselessStrEnum, Float, Int, TraitError, Unicode, observe, validate
from traitlets.config import Configurable

from .chat import format_chat
from .display import Answer, LiveDisplay, is_rich, model_identity
from .errors import GemmaError
from .exclusive import exclusive
from .interpolate import interpolate
from .magic_args import (DTYPES, CellArgs, EvalArgs, LineCommand, MagicArgumentError,
                         cell_usage, line_usage, parse_cell_args, parse_line)
from .model import Generation, Model, load
from .models import DEFAULT_MODEL, resolve_model

__all__ = ["Gemma", "GemmaMagics", "load_ipython_extension"]


class Gemma(Configurable):
    """Defaults of the %%gemma magic; each cell's options override them."""

    model = Unicode(DEFAULT_MODEL, help="What the first %%gemma cell loads when no model is: a "
                    "model folder, a .gguf/.llamafile/HF folder, or 'default' (Gemma 3 270M)."
                    ).tag(config=True)
    provider = Unicode("cpu", help="ONNX Runtime provider: cpu, cuda or rocm.").tag(config=True)
    dtype = CaselessStrEnum(DTYPES, "fp32", help="Export dtype when a raw weights file is "
                            "loaded.").tag(config=True)
    temperature = Float(0.0, help="Sampling temperature; 0 is greedy.").tag(config=True)
    top_k = Int(0, help="Keep the k likeliest tokens; 0 keeps all.").tag(config=True)
    top_p = Float(1.0, help="Nucleus sampling mass, in (0, 1].").tag(config=True)
    max_tokens = Int(256, help="Most tokens in an answer.").tag(config=True)
    system_prompt = Unicode("", help="System prompt of chat-formatted cells (merged into the "
                            "first user turn).").tag(config=True)
    cache_dir = Unicode("", help="Where raw weights are exported on first use (sets "
                        "GEMMA_NB_CACHE; default ~/.cache/gemma-nb).").tag(config=True)

    @validate("temperature")
    def _check_temperature(self, proposal: Any) -> float:
        if proposal["value"] < 0:
            raise TraitError(f"Gemma.temperature must be >= 0, got {proposal['value']}")
        return proposal["value"]

    @validate("top_k")
    def _check_top_k(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise TraitError(f"Gemma.top_k must be >= 0, got {proposal['value']}")
        return proposal["value"]

    @validate("top_p")
    def _check_top_p(self, proposal: Any) -> float:
        if not 0 < proposal["value"] <= 1:
            raise TraitError(f"Gemma.top_p must be in (0, 1], got {proposal['value']}")
        return proposal["value"]

    @validate("max_tokens")
    def _check_max_tokens(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(f"Gemma.max_tokens must be >= 1, got {proposal['value']}")
        return proposal["value"]

    @observe("cache_dir")
    def _set_cache_dir(self, change: Any) -> None:
        # resolve_model reads the cache folder from the environment, like the CLI.
        if change["new"]:
            os.environ["GEMMA_NB_CACHE"] = os.path.expanduser(change["new"])


@magics_class
class GemmaMagics(Magics):
    """`%gemma SUBCOMMAND` and `%%gemma [options]`; the kernel's model and conversation."""

    def __init__(self, shell: Any):
        super().__init__(shell)
        self.settings = Gemma(parent=shell)
        # A reloaded extension replaces its configurable, so %config sets one object.
        shell.configurables[:] = [c for c in shell.configurables
                                  if type(c).__name__ != "Gemma"] + [self.settings]
        self.settings.observe(self._forget_configured_model, names=["model", "provider", "dtype"])
        self.model: Model | None = None
        self.model_is_configured = False  # loaded from Gemma.model, not by %gemma load
        self.history: list[dict[str, str]] = []  # the --chat conversation, user/model turns

    @line_cell_magic
    def gemma(self, line: str, cell: str | None = None) -> Any:
        name = "%gemma" if cell is None else "%%gemma"
        try:
            if cell is None:
                return self._line(parse_line(line))
            return self._cell(parse_cell_args(line), cell)
        except MagicArgumentError as exc:
            raise UsageError(f"{name}: {exc} (see {name} {'help' if cell is None else '--help'})"
                             ) from None
        except GemmaError as exc:
            raise UsageError(f"{name}: {exc}") from None

    # ---- %gemma --------------------------------------------------------------------------

    def _line(self, command: LineCommand) -> Any:
        if command.command == "load":
            self.model = self._load(command.path, command.provider, command.dtype)
            self.model_is_configured = False
            return self.model
        if command.command == "eval" and command.eval is not None:
            return self._eval(command.eval)
        if command.command == "info":
            print(self._info())
        elif command.command == "unload":
            print("unloaded" if self.model is not None else "no model was loaded")
            self.model = None
        elif command.command == "reset":
            print(f"forgot the conversation ({len(self.history) // 2} exchanges)")
            self.history.clear()
        else:
            print(line_usage())
        return None

    def _load(self, spec: str, provider: str | None, dtype: str | None) -> Model:
        folder = resolve_model(spec, dtype or self.settings.dtype)
        return load(folder, provider or self.settings.provider)

    def _eval(self, args: EvalArgs) -> Any:
        """`%gemma eval mmlu ...`: gemma_nb.eval builds the task and scores it; the Report is
        the result (shown as HTML). Ctrl-C keeps the items scored so far."""
        from .eval import evaluate, mmlu  # imported here: the magic stays light until used

        task = mmlu(n=args.n, seed=args.seed, subjects=list(args.subjects) or None,
                    shots=args.shots, source=args.source)
        return evaluate(self._ensure_model(), task, cluster=args.cluster)

    def _info(self) -> str:
        if self.model is None:
            return ("no model loaded; the next %%gemma cell loads "
                    f"Gemma.model = {self.settings.model!r}")
        identity = model_identity(self.model)
        return "\n".join([repr(self.model), f"folder: {self.model.path}",
                          f"source: {identity['source']} (sha256 {identity['source_sha256']})",
                          f"context: {self.model.config.context_length} tokens",
                          f"conversation: {len(self.history) // 2} exchanges"])

    def _forget_configured_model(self, change: Any) -> None:
        if self.model_is_configured:  # the next cell loads the newly configured model
            self.model = None

    def _ensure_model(self) -> Model:
        if self.model is None:
            spec = self.settings.model
            try:
                self.model = self._load(spec, None, None)
            except GemmaError as exc:
                raise GemmaError(f"no model is loaded and Gemma.model={spec!r} cannot be: {exc}. "
                                 "Load one with %gemma load PATH") from None
            self.model_is_configured = True
            print(f"loaded {self.model!r} in {self.model.load_s:.1f} s")
        return self.model

    # ---- %%gemma -------------------------------------------------------------------------

    def _cell(self, args: CellArgs, cell: str) -> None:
        if args.help:
            print(cell_usage())
            return None
        if not cell.strip():
            raise MagicArgumentError("the cell is empty: write the prompt below the %%gemma line")
        cell = cell[:-1] if cell.endswith("\n") else cell  # the newline IPython adds to a cell
        model = self._ensure_model()
        if args.map is not None:
            return self._map(model, args, cell)
        user = interpolate(cell, self.shell.user_ns)
        history = self.history if args.chat else []
        prompt = user if args.raw else self._chat_prompt(args, [*history, _user(user)])
        settings = self._sampling(args)
        live = LiveDisplay(is_rich(self.shell))
        with exclusive(model, on_wait=_say_waiting):  # a chat widget may be answering on it
            live.start()
            generation, stopped = _stream(model, prompt, settings, live)
        answer = Answer.from_generation(
            generation, prompt,
            {"mode": "raw" if args.raw else "chat" if args.chat else "one-shot",
             "system": None if args.raw else self._system(args) or None, **settings},
            args.format, stopped, model_identity(model))
        live.finish(answer)
        if args.chat:
            self.history += [_user(user), {"role": "model", "content": answer.text}]
        if args.out:
            self.shell.push({args.out: answer})
        return None  # the answer is displayed already; Out would duplicate it

    def _system(self, args: CellArgs) -> str:
        return args.system if args.system is not None else self.settings.system_prompt

    def _chat_prompt(self, args: CellArgs, turns: list[dict[str, str]]) -> str:
        """Gemma's chat format; the system prompt, if any, goes first (merged by format_chat)."""
        system = self._system(args)
        return format_chat(([{"role": "system", "content": system}] if system else []) + turns)

    def _sampling(self, args: CellArgs) -> dict[str, Any]:
        """The model's keyword arguments: the cell's options over the configuration."""
        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        temperature = pick(args.temperature, self.settings.temperature)
        seed = args.seed
        if seed is None and temperature > 0:  # recorded, so a sampled answer can be reproduced
            seed = secrets.randbelow(2**31)
        return {"max_new_tokens": pick(args.max_tokens, self.settings.max_tokens),
                "temperature": temperature, "top_k": pick(args.top_k, self.settings.top_k),
                "top_p": pick(args.top_p, self.settings.top_p), "seed": seed,
                "stop": list(args.stop)}

    def _map(self, model: Model, args: CellArgs, cell: str) -> None:
        """`--map EXPR`: the cell is a template run over EXPR's items by `model.map`."""
        try:
            items = self.shell.ev(args.map)
        except Exception as exc:  # any error of the user's expression is a usage error
            raise MagicArgumentError(f"--map {args.map}: {type(exc).__name__}: {exc}") from None
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise MagicArgumentError(
                f"--map {args.map}: needs a list or pandas Series, got {type(items).__name__}")
        template = interpolate(cell, self.shell.user_ns, keep={"item"})
        if "{item}" not in template:
            raise MagicArgumentError("--map needs {item} in the cell, where each item goes")
        if not args.raw:
            template = self._chat_prompt(args, [_user(template)])
        start = time.perf_counter()
        with exclusive(model, on_wait=_say_waiting):
            answers = model.map(items, template, chat=False, **self._sampling(args))
        print(f"{len(answers)} answers in {time.perf_counter() - start:.1f} s")
        if args.out:
            self.shell.push({args.out: answers})
        display(answers)
        return None


def _say_waiting() -> None:
    print("waiting for the model: it is answering another request (a chat widget?)", flush=True)


def _user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def _stream(model: Model, prompt: str, settings: dict[str, Any], live: LiveDisplay
            ) -> tuple[Generation, bool]:
    """Stream the answer into `live`; Ctrl-C / Kernel > Interrupt keeps what came so far."""
    stream = model.stream(prompt, **settings)
    try:
        for piece in stream:
            live.push(piece)
    except KeyboardInterrupt:  # the model keeps no state between calls: it is ready again
        return stream.result, True
    except GemmaError:  # e.g. a prompt longer than the context: the error line says it all
        live.clear()
        raise
    return stream.result, False


def load_ipython_extension(shell: Any) -> None:
    shell.register_magics(GemmaMagics(shell))
