"""`gemma-nb serve`: an OpenAI-compatible HTTP API over the public `Model` API (FastAPI, uvicorn).

    POST /v1/chat/completions   messages -> answer (SSE stream or whole)
    POST /v1/completions        prompt -> continuation (SSE stream or whole)
    GET  /v1/models             the one model served
    GET  /health                {"status": "ok", "running": ..., "waiting": ...}

A thin adapter: requests are parsed (`server_api`), queued for the model (`server_worker`), and
rendered; the generation is `Model.stream`'s. Every error is OpenAI's shape
`{"error": {"message", "type", "param", "code"}}`. See docs/server.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from .chat import ChatFormatError, format_chat
from .errors import GemmaError
from .model import Model
from .server_api import (APIError, ChatRequest, CompletionRequest, Reply, error_body,
                         invalid_request, parse)
from .server_safety import Guard, exposure_warning
from .server_worker import Job, QueueFullError, Workers

__all__ = ["create_app", "bind", "serve", "exposure_warning", "ServerBindError"]

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far more than a context of text, far less than memory


class ServerBindError(GemmaError):
    """The server cannot listen on the address asked for."""


def create_app(models: Sequence[Model], model_id: str, api_key: str | None = None,
               queue_size: int = 32, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The app serving `models` (copies of one model, one generation at a time on each)."""
    workers = Workers(models, queue_size)
    model = workers.models[0]  # for the tokenizer and the config, which every copy shares

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workers.start()
        yield
        workers.stop()

    app = FastAPI(title="gemma-nb", lifespan=lifespan)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=max_body_bytes)
    _add_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "running": workers.running, "waiting": workers.waiting}

    @app.get("/v1/models")
    async def models_list() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(model_id)]}

    @app.get("/v1/models/{name}")
    async def models_get(name: str) -> dict[str, Any]:
        _check_model(name, model_id)
        return _model_card(model_id)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        body = parse(ChatRequest, await request.body())
        if not body.messages:
            raise APIError(400, "messages is empty; send at least one user message", "messages")
        try:
            prompt = format_chat([m.as_dict() for m in body.messages])
        except ChatFormatError as exc:
            raise APIError(400, str(exc), "messages") from None
        return await _respond(True, prompt, body, request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        body = parse(CompletionRequest, await request.body())
        return await _respond(False, body.text(), body, request)

    async def _respond(chat: bool, prompt: str, body: ChatRequest | CompletionRequest,
                       request: Request) -> Any:
        _check_model(body.model, model_id)
        if body.n != 1:
            raise APIError(400, f"n must be 1 (one answer per request), got {body.n}", "n")
        ids = await asyncio.to_thread(model.tokenizer.encode, prompt)
        # OpenAI's defaults: a chat answer may fill the context, a completion is 16 tokens
        budget = _budget(len(ids), body.token_limit(), None if chat else 16,
                         model.config.context_length, "messages" if chat else "prompt")
        options = {"max_new_tokens": budget,
                   "temperature": body.temperature, "top_k": body.top_k, "top_p": body.top_p,
                   "seed": body.seed, "stop": body.stops()}
        job = Job(ids, options, asyncio.get_running_loop())
        try:
            workers.submit(job)
        except QueueFullError as exc:
            raise APIError(429, str(exc), code="rate_limit_exceeded",
                           type="rate_limit_error") from None
        reply = Reply(chat, model_id, len(ids))
        if body.stream:
            return _JobStream(job, _sse(job, reply, body.include_usage))
        return JSONResponse(reply.whole(await _finish(job, request)))

    return app


def _budget(prompt_tokens: int, asked: int | None, default: int | None, context: int,
            param: str) -> int:
    """max_new_tokens for a request: what was asked, or `default` (None: up to the context)."""
    room = context - prompt_tokens
    if room <= 0:
        raise APIError(400, f"the prompt has {prompt_tokens} tokens; this model's context is "
                            f"{context} tokens", param, "context_length_exceeded")
    if asked is None:
        return min(default or room, room)
    if asked > room:
        raise APIError(400, f"max_tokens is {asked} but the prompt has {prompt_tokens} tokens "
                            f"and this model's context is {context} tokens: at most {room}",
                       "max_tokens", "context_length_exceeded")
    return asked


async def _finish(job: Job, request: Request) -> Any:
    """Wait for a whole answer; a client gone meanwhile cancels the job."""

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.25)
        job.cancel()

    watcher = asyncio.create_task(watch())
    try:
        async for _ in job.pieces():
            pass
    except GemmaError as exc:
        raise APIError(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - reported to the client; logged by the worker
        raise APIError(500, f"generation failed: {exc}", type="server_error") from None
    finally:
        watcher.cancel()
    return job.result


async def _sse(job: Job, reply: Reply, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: `data: {chunk}` per piece, the finish reason, then `data: [DONE]`."""

    def event(body: dict[str, Any]) -> str:
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    if reply.chat:
        yield event(reply.chunk(None))
    try:
        async for piece in job.pieces():
            yield event(reply.chunk(piece))
    except Exception as exc:  # noqa: BLE001 - the stream has begun: the error becomes an event
        kind = "invalid_request_error" if isinstance(exc, GemmaError) else "server_error"
        yield event(error_body(f"generation failed: {exc}", kind))
        return
    yield event(reply.chunk("", job.result.finish_reason))
    if include_usage:
        yield event(reply.usage_chunk(job.result))
    yield "data: [DONE]\n\n"


class _JobStream(StreamingResponse):
    """An SSE response that cancels its job however it ends: done, failed, or client gone."""

    def __init__(self, job: Job, content: AsyncIterator[str]):
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache"})
        self.job = job

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.job.cancel()


def _model_card(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "gemma-nb"}


def _check_model(name: str | None, model_id: str) -> None:
    if name is not None and name != model_id:
        raise APIError(404, f"the model {name!r} does not exist; this server has {model_id!r}",
                       "model", "model_not_found")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI answers 422 in its own shape; OpenAI answers 400 in its error shape.
        return await api_error(request, invalid_request(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(error_body(str(exc.detail), code=code), status_code=exc.status_code,
                            headers=exc.headers)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    sock = None
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ServerBindError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(models: Sequence[Model], sock: socket.socket, model_id: str,
          api_key: str | None = None, queue_size: int = 32) -> None:
    """Run the server on `sock` until interrupted (SIGINT/SIGTERM)."""
    import uvicorn

    app = create_app(models, model_id, api_key, queue_size)
    config = uvicorn.Config(app, timeout_graceful_shutdown=3, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])
