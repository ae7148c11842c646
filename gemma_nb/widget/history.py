"""What the chat widget shows and what the model reads, kept apart from the widget itself.

The widget's synced state is a log of entries, each a dict:

    {"id": 3, "role": "user" | "assistant" | "notice" | "error", "content": "...",
     "state": "" | "waiting" | "streaming" | "done" | "stopped",   # an answer's progress
     "stats": {...} | None,                                          # an answer's speed
     "excluded": "" | "context" | "unanswered"}                      # why the model skips it

`conversation(log)` is what the model reads: the user and assistant entries that are finished
and not excluded. Notices and errors are for the person only. Entries dropped to fit the context
stay in the log, marked, so nothing disappears from the screen without a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..chat import ChatFormatError, format_chat
from ..errors import ContextLengthError
from ..model import Generation

__all__ = ["FORMAT", "conversation", "turns_to_drop", "overflow_notice", "answer_stats",
           "dumps", "loads", "check_messages"]

FORMAT = "gemma-nb-chat"  # the "format" field of a saved conversation
_ROLES = {"user": "user", "assistant": "assistant", "model": "assistant"}

Entry = dict[str, Any]


def conversation(log: Sequence[Entry]) -> list[dict[str, str]]:
    """The user/assistant turns the model reads next: finished and not excluded."""
    return [{"role": e["role"], "content": e["content"]} for e in log
            if e["role"] in ("user", "assistant") and not e.get("excluded")
            and e.get("state", "") in ("", "done", "stopped")]


def turns_to_drop(system: str, turns: Sequence[Mapping[str, str]],
                  count_tokens: Callable[[str], int], context_length: int,
                  max_tokens: int) -> int:
    """How many of the oldest `turns` (user/assistant pairs, so an even number) to leave out so
    the prompt plus `max_tokens` fits in the context. Raises ContextLengthError when even the
    last user message alone does not fit."""
    budget = context_length - max_tokens
    if budget <= 0:
        raise ContextLengthError(
            f"max tokens ({max_tokens}) leaves no room for the conversation in this model's "
            f"context of {context_length} tokens; lower max tokens")
    head = [{"role": "system", "content": system}] if system else []
    for drop in range(0, len(turns), 2):
        n = count_tokens(format_chat(head + list(turns[drop:])))
        if n <= budget:
            return drop
    raise ContextLengthError(
        f"the message needs {n} tokens; with {max_tokens} kept for the answer, this model's "
        f"context of {context_length} tokens holds {budget}. Shorten the message or the system "
        "prompt, or lower max tokens")


def overflow_notice(dropped: int, context_length: int, max_tokens: int) -> str:
    """The visible line that says turns were dropped, and why."""
    what = "message" if dropped == 1 else f"{dropped} messages"
    return (f"The oldest {what} no longer fit in the context ({context_length} tokens, "
            f"{max_tokens} of them kept for the answer): the model does not see "
            f"{'it' if dropped == 1 else 'them'} any more.")


def answer_stats(result: Generation, stopped: bool, seconds: float) -> dict[str, Any]:
    """An answer's token counts and speed, with the line the widget shows under it."""
    t = result.timings
    finish = "stopped" if stopped else result.finish_reason
    stats = {"prompt_tokens": t.prompt_tokens, "answer_tokens": len(result.token_ids),
             "tokens_per_s": round(t.decode_tokens_per_s, 2),
             "time_to_first_token_s": round(t.time_to_first_token_s, 4),
             "seconds": round(seconds, 3), "finish": finish}
    rate = t.decode_tokens_per_s
    parts = [f"{t.prompt_tokens} prompt tokens", f"{len(result.token_ids)} answer tokens",
             f"{rate:.1f} tok/s" if rate else "- tok/s",
             f"first token {t.time_to_first_token_s:.2f} s" if result.token_ids else
             "no token yet"]
    if finish == "stopped":
        parts.append("stopped")
    elif finish == "length":
        parts.append("max tokens reached")
    stats["line"] = " · ".join(parts)
    return stats


def check_messages(messages: Any) -> tuple[str, list[dict[str, str]]]:
    """(system prompt, turns) of OpenAI-style messages, or a ChatFormatError saying what is
    wrong. Turns alternate user/assistant from a user turn and end with an answer (the widget
    adds the next user turn); "model" is read as "assistant"."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise ChatFormatError(f"messages must be a list of dicts, got {type(messages).__name__}")
    messages = list(messages)
    system = ""
    if messages and isinstance(messages[0], Mapping) and messages[0].get("role") == "system":
        system, messages = messages[0].get("content"), messages[1:]
        if not isinstance(system, str):
            raise ChatFormatError(
                f"the system message needs a 'content' string, got {type(system).__name__}")
    turns = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _ROLES:
            raise ChatFormatError(
                f"message {i} has role {role!r}; use 'user' or 'assistant' (and 'system' only "
                "first)")
        turns.append({"role": _ROLES[role], "content": message.get("content")})
    if turns:
        format_chat(turns, add_generation_prompt=False)  # alternation and content types
        if turns[-1]["role"] != "assistant":
            raise ChatFormatError(
                "the conversation must end with an assistant message; the chat adds the next "
                "user message (ask(text) sends one)")
    return system, turns


def dumps(system: str, turns: Sequence[Mapping[str, str]], settings: Mapping[str, Any]) -> str:
    """A saved conversation: the messages as `Model.chat` takes them, and the settings."""
    head = [{"role": "system", "content": system}] if system else []
    return json.dumps({"format": FORMAT, "version": 1, "messages": head + list(turns),
                       "settings": dict(settings)}, indent=1, ensure_ascii=False)


def loads(text: str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages, settings) of a saved conversation, or of a plain JSON list of messages."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ChatFormatError(f"not a saved chat: invalid JSON ({exc.msg}, line {exc.lineno})"
                              ) from None
    if isinstance(data, list):
        return data, {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ChatFormatError(
            f"not a saved chat: expected a list of messages or an object with format {FORMAT!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ChatFormatError("not a saved chat: 'settings' must be an object")
    return data.get("messages", []), settings
