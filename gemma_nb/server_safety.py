"""The server's safety checks: the API key and the body size before any parsing, and the
warning for a server reachable beyond this machine without a key."""

from __future__ import annotations

import ipaddress
import secrets

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .server_api import error_body

__all__ = ["Guard", "exposure_warning"]


class Guard:
    """ASGI middleware before any parsing: the API key (401) and the body size (413)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes
        self.expected = None if api_key is None else f"Bearer {api_key}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self._authorized(scope):
            body = error_body("missing or wrong API key: send 'Authorization: Bearer KEY'",
                              code="invalid_api_key")
            return await JSONResponse(body, 401)(scope, receive, send)
        chunks, size = await _read_body(receive, self.max_body_bytes)
        if chunks is None:
            return  # the client left before sending its body
        if size > self.max_body_bytes:
            body = error_body(f"the request body has {size} bytes; the limit is "
                              f"{self.max_body_bytes}", code="request_too_large")
            return await JSONResponse(body, 413)(scope, receive, send)
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _authorized(self, scope: Scope) -> bool:
        if self.expected is None or not scope["path"].startswith("/v1/"):
            return True  # /health answers probes without the key
        given = dict(scope["headers"]).get(b"authorization", b"")
        return secrets.compare_digest(given, self.expected)


async def _read_body(receive: Receive, limit: int) -> tuple[list[bytes] | None, int]:
    """The body's chunks (kept only up to `limit` bytes) and its size; None if the client left.

    A body over the limit is still read to its end: answering 413 while the client is still
    sending would reset the connection before the client reads the answer."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None, size
        size += len(message.get("body", b""))
        if size <= limit:
            chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return chunks, size


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` giving the body already read, then what the client sends next."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()  # after the body: http.disconnect, when it comes
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """A warning when the server listens beyond this machine with no API key."""
    if api_key or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:  # a host name: assume it reaches beyond loopback
        pass
    return (f"listening on {host} without --api-key: anyone who can reach this machine can use "
            "the model")
