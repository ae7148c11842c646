"""The OpenAI API's shapes: request bodies (pydantic, strict types), responses, and errors.

Field names, defaults and limits follow OpenAI's API reference for `/v1/chat/completions` and
`/v1/completions`; fields not listed here are accepted and ignored, as many clients send them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .model import Generation

__all__ = ["APIError", "ChatRequest", "CompletionRequest", "Reply", "error_body", "parse",
           "invalid_request"]

MAX_STOPS = 4  # OpenAI accepts up to 4 stop sequences
# pydantic names the member of a union in an error's location (`prompt.list[str]`): not a field
_UNION_TAG = re.compile(r"^(str|int|float|bool|list\[.*\]|[A-Z]\w*)$")


class APIError(Exception):
    """An error the client caused (4xx) or the server met (5xx), in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type)

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class _Body(BaseModel):
    # strict: "0.5" is not a number and 1 is not a boolean, as in OpenAI's API
    model_config = ConfigDict(strict=True, extra="ignore")


_B = TypeVar("_B", bound=_Body)


def invalid_request(errors: Sequence[Any]) -> APIError:
    """A 400 for pydantic's first error, naming the field as OpenAI does (`messages.0.content`)."""
    first = errors[0]
    path = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_TAG.match(str(p))]
    param = ".".join(path) or None
    return APIError(400, f"{param or 'the body'}: {first.get('msg')}", param, first.get("type"))


def parse(cls: type[_B], raw: bytes) -> _B:
    """A request body as `cls`, whatever the Content-Type (curl -d sends a form type)."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON: {exc}", code="invalid_json"
                       ) from None
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant"]  # developer: OpenAI's new system
    content: str | list[TextPart]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(
            part.text for part in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str | None = None
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # not OpenAI's; llama.cpp's and vLLM's servers take it too
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS:
            raise APIError(400, f"stop takes at most {MAX_STOPS} sequences, got {len(stops)}",
                           "stop")
        return stops

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatRequest(_Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str]

    def text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise APIError(400, f"prompt must be one string, got a list of {len(self.prompt)}; "
                                "send one request per prompt", "prompt")
        return self.prompt[0]

    def token_limit(self) -> int | None:
        return self.max_tokens


class Reply:
    """The response bodies of one request: whole, or as stream chunks."""

    def __init__(self, chat: bool, model_id: str, prompt_tokens: int):
        prefix, self.object = ("chatcmpl", "chat.completion") if chat else ("cmpl",
                                                                             "text_completion")
        self.chat = chat
        self.head = {"id": f"{prefix}-{uuid.uuid4().hex}", "created": int(time.time()),
                     "model": model_id}
        self.prompt_tokens = prompt_tokens

    def usage(self, result: Generation) -> dict[str, int]:
        n = len(result.token_ids)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": n,
                "total_tokens": self.prompt_tokens + n}

    def whole(self, result: Generation) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None,
                                  "finish_reason": result.finish_reason}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": result.text}
        else:
            choice["text"] = result.text
        return {**self.head, "object": self.object, "choices": [choice],
                "usage": self.usage(result)}

    def chunk(self, text: str | None, finish_reason: str | None = None) -> dict[str, Any]:
        """A stream chunk: `text` None opens a chat answer (its role), "" closes it."""
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if not self.chat:
            choice["text"] = text or ""
        elif text is None:
            choice["delta"] = {"role": "assistant", "content": ""}
        else:
            choice["delta"] = {"content": text} if text else {}
        return {**self.head, "object": f"{self.object}.chunk" if self.chat else self.object,
                "choices": [choice]}

    def usage_chunk(self, result: Generation) -> dict[str, Any]:
        """The last chunk when the client asked for `stream_options.include_usage`."""
        return {**self.head, "object": f"{self.object}.chunk" if self.chat else self.object,
                "choices": [], "usage": self.usage(result)}
