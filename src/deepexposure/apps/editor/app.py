"""The editor's web app (Starlette) and its server (uvicorn): a page, three JSON/JPEG endpoints, a token guard.

Routes (every request, the page and its script included, must carry the session token as ``?token=`` or the
``X-Token`` header; anything else is 403):

* ``GET /`` the page; ``GET /editor.js``, ``GET /editor.css`` its script and style (files of this package);
* ``GET /api/state`` the photo, the seed recipe, the renderers, the default output name (JSON);
* ``POST /api/render`` ``{"evs": [...], "strength": s, "renderer": r, "look": name, "view": "after"|"before"|
  "segments", "draft": bool}`` (``look``: one of the state's ``looks``; absent: the seed's) -> the preview as JPEG, with headers ``X-Histogram`` (comma-separated counts), ``X-Clipped``
  (share of pixels with a channel at 255) and ``X-Render-Ms``;
* ``POST /api/save`` ``{"evs", "strength", "renderer", "look", "name", "overwrite"}`` -> ``{"photo", "recipe"}``, 409
  with ``{"error", "exists"}`` when an output exists and ``overwrite`` is not true, 400 with ``{"error"}`` for bad
  values or an unsafe name.

Nothing else is served: no file path comes from the request except the output *name*, which
:meth:`~deepexposure.apps.editor.session.EditSession.output_paths` confines to the output folder.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import sys
import threading
import webbrowser
from importlib import resources
from urllib.parse import parse_qs

from deepexposure.apps.editor.session import EditorError, EditSession, OutputExists
from deepexposure.apps.web import is_loopback, read_body
from deepexposure.apps.web import listen as _listen
from deepexposure.errors import DeepExposureError

__all__ = ["EDIT_EXTRA_HINT", "create_app", "new_token", "serve", "listen", "browser_url", "require_web"]

#: How to get the editor's web dependencies, quoted when they are missing.
EDIT_EXTRA_HINT = "the editor needs starlette and uvicorn: pip install 'deepexposure[edit]'"
_MAX_BODY = 64 * 1024  # bytes of a request body (a few numbers and a file name)
_STATIC = {"editor.js": "text/javascript; charset=utf-8", "editor.css": "text/css; charset=utf-8"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never send it elsewhere
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def require_web() -> None:
    """Raise :class:`EditorError` (one line, how to install) when starlette or uvicorn is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise EditorError(EDIT_EXTRA_HINT) from None


def new_token() -> str:
    """A random per-session token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _static(name: str) -> bytes:
    return (resources.files("deepexposure.apps.editor") / "static" / name).read_bytes()


class _WrongType(EditorError):
    """A request body declared as something else than JSON: 415."""

    status = 415
    headers: dict = {}


class _TokenGuard:
    """ASGI middleware: an HTTP request without the right token (query ``token`` or header ``X-Token``) gets 403."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            given = b""
            for key, value in scope.get("headers", []):
                if key == b"x-token":
                    given = value
            if not given:
                qs = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                given = (qs.get("token") or [""])[0].encode("latin-1", "replace")
            if not secrets.compare_digest(given, self.token):
                from starlette.responses import JSONResponse, PlainTextResponse

                msg = "forbidden: this page needs the token of its session (open the URL that deepexposure edit printed)"
                resp = (JSONResponse({"error": msg}, status_code=403, headers=_SECURITY_HEADERS)
                        if scope.get("path", "").startswith("/api/")
                        else PlainTextResponse(msg, status_code=403, headers=_SECURITY_HEADERS))
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(session: EditSession, token: str):
    """The Starlette app of one session; every request needs ``token`` (see the module doc)."""
    require_web()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    page = _static("index.html").replace(b"__TOKEN__", token.encode())

    def error(msg: str, status: int = 400, **extra) -> JSONResponse:
        return JSONResponse({"error": msg, **extra}, status_code=status, headers=_SECURITY_HEADERS)

    def refused(exc: DeepExposureError) -> JSONResponse:
        """The JSON error of a refused request: 400, or the status (and headers) of a body refused as a whole."""
        resp = error(str(exc), getattr(exc, "status", 400))
        resp.headers.update(getattr(exc, "headers", {}))
        return resp

    async def body(request: Request) -> dict:
        """The request's JSON object, read up to :data:`_MAX_BODY` bytes (a longer body, announced or chunked, is
        refused with :class:`~deepexposure.apps.web.BodyTooLarge` as soon as it passes the limit: the rest is never read)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "application/json":
            raise _WrongType(f"send the request as JSON (Content-Type: application/json), not {kind[:80]}")
        raw = await read_body(request, _MAX_BODY)
        try:
            data = json.loads(raw or b"{}")
        except RecursionError:
            raise EditorError("the request is nested too deeply") from None
        except ValueError:
            raise EditorError("the request is not valid JSON") from None
        if not isinstance(data, dict):
            raise EditorError("the request must be a JSON object")
        return data

    def values(data: dict) -> tuple:
        return data.get("evs"), data.get("strength", 1.0), data.get("renderer", session.seed.renderer)

    def flag(data: dict, key: str) -> bool:
        """A true/false field (absent: false); anything else is refused rather than taken for true or false."""
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise EditorError(f"{key} must be true or false, got {json.dumps(value)[:40]}")
        return value

    def view(data: dict) -> str:
        value = data.get("view", "after")
        if not isinstance(value, str):
            raise EditorError(f"view must be after, before or segments, got {json.dumps(value)[:40]}")
        return value

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return error("not found", 404)
        return Response(_static(name), media_type=_STATIC[name], headers=_SECURITY_HEADERS)

    async def state(request: Request) -> Response:
        return JSONResponse(session.state(), headers=_SECURITY_HEADERS)

    async def render(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            data = await body(request)
            evs, strength, renderer = values(data)
            img = await run_in_threadpool(session.render_preview, evs if evs is not None else session.seed.evs,
                                          strength, renderer, view=view(data), draft=flag(data, "draft"),
                                          look=data.get("look"))
        except DeepExposureError as exc:
            return refused(exc)
        headers = {**_SECURITY_HEADERS, "X-Histogram": ",".join(map(str, img.histogram)),
                   "X-Clipped": f"{img.clipped:.6f}", "X-Render-Ms": f"{img.render_ms:.1f}"}
        return Response(img.jpeg, media_type="image/jpeg", headers=headers)

    async def save(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            data = await body(request)
            evs, strength, renderer = values(data)
            if evs is None:
                raise EditorError("no EVs given")
            dst, rec = await run_in_threadpool(session.save, evs, strength, renderer, data.get("name"),
                                               overwrite=flag(data, "overwrite"), look=data.get("look"))
        except OutputExists as exc:
            return error(str(exc), 409, exists=exc.names)
        except DeepExposureError as exc:
            return refused(exc)
        except OSError as exc:
            return error(f"cannot write ({exc.strerror or exc})", 500)
        return JSONResponse({"photo": str(dst), "recipe": str(rec)}, headers=_SECURITY_HEADERS)

    async def http_error(request: Request, exc) -> JSONResponse:
        """Starlette's own refusals (no such route: 404, wrong method: 405) as JSON errors too."""
        what = {404: "not found", 405: f"method {request.method} not allowed here"}.get(exc.status_code, exc.detail)
        headers = {**_SECURITY_HEADERS, **(getattr(exc, "headers", None) or {})}
        return JSONResponse({"error": what}, status_code=exc.status_code, headers=headers)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/state", state, methods=["GET"]),
        Route("/api/render", render, methods=["POST"]),
        Route("/api/save", save, methods=["POST"]),
        Route("/{name:str}", static, methods=["GET"]),
    ]
    from starlette.exceptions import HTTPException

    return Starlette(routes=routes, middleware=[Middleware(_TokenGuard, token=token)],
                     exception_handlers={HTTPException: http_error})


def browser_url(host: str, port: int, token: str) -> str:
    """The URL to open for a server on ``host``: a wildcard address (0.0.0.0, ::), which no browser can open on
    every system, becomes this machine's loopback address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_unspecified:
        host = "::1" if ip.version == 6 else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port), or :class:`EditorError` (one line) when the
    address cannot be used (in use, unknown host). Done first, before any slow work (:func:`deepexposure.apps.web.listen`)."""
    return _listen(host, port, error=EditorError)


def serve(session: EditSession, *, host: str = "127.0.0.1", port: int = 0, open_browser: bool = True,
          token: str | None = None, announce=print, sock: socket.socket | None = None) -> None:
    """Serve ``session`` until interrupted (Ctrl+C). ``port`` 0 takes a free port. ``announce`` gets the URL line.
    ``sock``: a socket from :func:`listen` (bound on ``host`` already); default: listen on ``host``:``port`` now."""
    require_web()
    import uvicorn

    token = token or new_token()
    app = create_app(session, token)
    sock = sock or listen(host, port)
    bound = sock.getsockname()[1]
    url = browser_url(host, bound, token)
    if not is_loopback(host):
        announce(f"warning: listening on {host}, reachable from other machines; anyone with the URL can edit and "
                 "save")
    announce(f"deepexposure edit: {session.source.name} at {url}  (Ctrl+C to stop)")
    if open_browser:
        threading.Timer(0.5, lambda: webbrowser.open(url)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()
