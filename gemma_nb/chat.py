"""Gemma's chat format, as the official Gemma 3 chat template renders it (text only).

    <start_of_turn>user
    {system}

    {user}<end_of_turn>
    <start_of_turn>model
    {reply}<end_of_turn>
    <start_of_turn>model

Gemma has no system role: the template puts a system message before the first user message,
separated by a blank line. Like the template, message contents are stripped of surrounding
whitespace and the system message is not. No BOS here: `Tokenizer.encode` adds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gemma_nb.errors import GemmaError

__all__ = ["ChatFormatError", "format_chat"]

_ROLES = {"user": "user", "assistant": "model", "model": "model"}


class ChatFormatError(GemmaError):
    """The messages are not a conversation Gemma's chat format can express."""


def format_chat(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages` (dicts with "role" and "content"), ending with the model's
    turn when `add_generation_prompt`."""
    if not messages:
        raise ChatFormatError("no messages to format; pass at least one user message")
    system = ""
    turns = list(messages)
    if _role(turns[0], 0) == "system":
        system = _content(turns[0], 0) + "\n\n"
        turns = turns[1:]
        if not turns:
            raise ChatFormatError("a system message needs a user message after it")
    offset = len(messages) - len(turns)
    parts = []
    for i, message in enumerate(turns):
        role = _role(message, i + offset)
        expected = "user" if i % 2 == 0 else "model"
        if _ROLES.get(role) != expected:
            raise ChatFormatError(
                f"message {i + offset} has role {role!r} where a {expected!r} turn is due; Gemma "
                "needs turns alternating user/assistant, starting with user (a system message "
                "is allowed only first)"
            )
        text = (system if i == 0 else "") + _content(message, i + offset).strip()
        parts.append(f"<start_of_turn>{expected}\n{text}<end_of_turn>\n")
    if add_generation_prompt:
        parts.append("<start_of_turn>model\n")
    return "".join(parts)


def _role(message: Mapping[str, str], index: int) -> str:
    role = message.get("role") if isinstance(message, Mapping) else None
    if not isinstance(role, str):
        raise ChatFormatError(f"message {index} needs a 'role' string, got {message!r}")
    return role


def _content(message: Mapping[str, str], index: int) -> str:
    content = message.get("content")
    if not isinstance(content, str):
        raise ChatFormatError(
            f"message {index} needs a 'content' string, got {type(content).__name__}"
        )
    return content
