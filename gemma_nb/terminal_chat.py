"""`gemma-nb chat`: a terminal chatbot over the public `Model` API, like llamafile's.

The conversation is a list of OpenAI-style messages; each answer is `Model.stream` over
`format_chat(messages)`, printed as it comes, with its speed after it. Ctrl-C closes the stream
(the partial answer stays in the conversation) and returns to the prompt; /exit or Ctrl-D quits.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .chat import format_chat
from .errors import GemmaError
from .model import Generation, Model

__all__ = ["Conversation", "read_message", "run_chat"]

PROMPT, MORE = ">>> ", "... "
FENCE = '"""'  # a message starting with it runs until a line ending with it (as in ollama)

HELP = f"""\
/help           this help
/reset          forget the conversation (the system prompt stays)
/system TEXT    set the system prompt; /system alone shows it
/exit           quit (Ctrl-D too)
End a line with \\ to continue the message on the next line, or start it with {FENCE} and end
it with {FENCE} to write several lines. Ctrl-C stops an answer.
"""


@dataclass
class Conversation:
    system: str | None = None
    turns: list[dict[str, str]] = field(default_factory=list)  # user, assistant, user, ...

    def messages(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns


def read_message(read: Callable[[str], str]) -> str:
    """One message from `read` (like `input`): a line, lines ending in '\\', or a fenced block."""
    line = read(PROMPT)
    if line.startswith(FENCE):
        lines = [line[len(FENCE):]]
        while not lines[-1].endswith(FENCE):
            lines.append(read(MORE))
        return "\n".join(lines)[: -len(FENCE)]
    lines = []
    while line.endswith("\\"):
        lines.append(line[:-1])
        line = read(MORE)
    return "\n".join([*lines, line])


def run_chat(model: Model, system: str | None = None, read: Callable[[str], str] = input,
             out: TextIO = sys.stdout, **options: Any) -> None:
    """Chat until /exit or end of input; `options` go to `Model.stream` (max_new_tokens, ...)."""
    if read is input:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:  # not on every platform
            pass
    conversation = Conversation(system)
    out.write(f"gemma-nb chat with {model.path.name}: /help for commands, /exit to quit\n")
    while True:
        try:
            text = read_message(read)
        except KeyboardInterrupt:  # at the prompt: drop the line, as a shell does
            out.write("\n")
            continue
        except EOFError:
            out.write("\n")
            return
        if text.startswith("/"):
            name, *arg = text.split(None, 1)
            if name == "/exit":
                return
            _COMMANDS.get(name, _unknown)(conversation, "".join(arg).strip(), out)
        elif text.strip():
            conversation.turns.append({"role": "user", "content": text})
            answer = _answer(model, conversation, out, options)
            if answer is None:
                conversation.turns.pop()
            else:
                conversation.turns.append({"role": "assistant", "content": answer})


def _answer(model: Model, conversation: Conversation, out: TextIO,
            options: dict[str, Any]) -> str | None:
    """Stream one answer; its text (partial if stopped), or None when the model cannot answer."""
    stream = model.stream(format_chat(conversation.messages()), **options)
    stopped = False
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        stopped = True
    except GemmaError as exc:
        out.write(f"\nerror: {exc}; /reset starts a new conversation\n")
        return None
    finally:
        stream.close()  # ends the generation now
    out.write(f"\n{_speed(stream.result, stopped)}\n")
    return stream.result.text


def _speed(result: Generation, stopped: bool) -> str:
    t = result.timings
    return (f"[{'stopped; ' if stopped else ''}{len(result.token_ids)} tokens, "
            f"{t.decode_tokens_per_s:.1f} tok/s, first token {t.time_to_first_token_s:.2f} s]")


def _help(conversation: Conversation, arg: str, out: TextIO) -> None:
    out.write(HELP)


def _reset(conversation: Conversation, arg: str, out: TextIO) -> None:
    conversation.turns.clear()
    out.write("[conversation cleared]\n")


def _system(conversation: Conversation, arg: str, out: TextIO) -> None:
    if arg:
        conversation.system = arg
        out.write("[system prompt set]\n")
    else:
        out.write(f"[system prompt: {conversation.system or '(none)'}]\n")


def _unknown(conversation: Conversation, arg: str, out: TextIO) -> None:
    out.write("[unknown command; /help lists them]\n")


_COMMANDS: dict[str, Callable[[Conversation, str, TextIO], None]] = {
    "/help": _help, "/reset": _reset, "/system": _system}
