"""What the two web apps (``deepexposure edit`` and ``deepexposure serve``) share: the pre-bound listening socket,
the loopback test, and reading a request body up to a limit without ever holding more than the limit.

No Starlette import at module level: the functions take Starlette objects but work on them through their methods.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from deepexposure.errors import DeepExposureError

__all__ = ["BodyTooLarge", "DrainBody", "ListenError", "is_loopback", "listen", "read_body"]


class ListenError(DeepExposureError):
    """The address cannot be listened on (in use, unknown host)."""


class BodyTooLarge(DeepExposureError):
    """A request body over the limit: 413, and the connection is closed (the rest of the body is never read)."""

    status = 413
    headers = {"Connection": "close"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def listen(host: str = "127.0.0.1", port: int = 0, *, error: type[DeepExposureError] = ListenError) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port), or ``error`` (one line) when the address cannot
    be used (in use, unknown host). Done first, before any slow work."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name == "nt":  # Windows' SO_REUSEADDR would let a second process take over a port in use
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_EXCLUSIVEADDRUSE", -5), 1)
    else:  # a restart right after Ctrl+C can reuse the port (TIME_WAIT); a port in use still fails
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # before the URL is printed: a client that reads it can connect at once
    except OSError as exc:
        sock.close()
        raise error(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


async def read_body(request, limit: int) -> bytes:
    """The body of a Starlette ``request``, at most ``limit`` bytes: a longer body, announced by Content-Length or
    sent chunked, raises :class:`BodyTooLarge` as soon as it passes the limit (the rest is never read)."""
    too_large = f"request too large (at most {limit:,} bytes)"
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BodyTooLarge(too_large)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise BodyTooLarge(too_large)
    return bytes(raw)


class DrainBody:
    """ASGI middleware: before an answer goes out while the client is still sending its body (a refusal made
    without reading it: 503, 401, 415, 400), read the rest of the body and throw it away (nothing kept; at most
    ``limit`` bytes and ``seconds``), so the answer reaches the client: closing a connection with unread data makes
    TCP reset it, and the client would see a reset instead of the 503. Not done for a client that waits for
    ``100 Continue`` (it has sent nothing), nor for a body announced above ``limit``, nor when the answer closes the connection anyway (413,
    408: ``Connection: close``)."""

    def __init__(self, app, limit: int, seconds: float = 5.0) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import asyncio

        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length", b"")
        state = {"more": scope.get("method") not in ("GET", "HEAD") or bool(declared), "seen": 0}
        if headers.get(b"expect", b"").lower() == b"100-continue" or (
                declared and (not declared.isdigit() or int(declared) > self.limit)):
            state["more"] = False  # nothing to drain, or too much

        async def watched_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                state["more"] = state["more"] and message.get("more_body", False)
            else:
                state["more"] = False
            return message

        async def drain() -> None:
            while state["more"] and state["seen"] <= self.limit:
                await watched_receive()

        async def watched_send(message) -> None:
            closing = (b"connection", b"close") in [(k.lower(), v.lower()) for k, v in message.get("headers", [])]
            if message["type"] == "http.response.start" and state["more"] and not closing:
                try:
                    await asyncio.wait_for(drain(), self.seconds)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
            await send(message)

        await self.app(scope, watched_receive, watched_send)
