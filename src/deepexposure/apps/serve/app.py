"""The Starlette app of ``deepexposure serve``: routes, limits, the bearer token, metrics.

Routes (``docs/architecture.md`` and the ``/docs`` page say the same):

* ``POST /v1/enhance``: the photo as the body (``Content-Type: image/jpeg|png|webp|tiff|bmp``) or as the ``file``
  part of ``multipart/form-data``; options ``look``, ``renderer``, ``strength``, ``format`` (jpg, png, webp, tif;
  default: the upload's own, else jpg), ``quality`` as query or form fields -> the enhanced photo, the recipe in
  the headers ``X-Recipe-EVs`` (comma-separated), ``X-Recipe-Renderer``, ``X-Recipe-Look``, ``X-Recipe-Model``;
* ``POST /v1/recipe`` (same body; ``look``, ``renderer``, ``strength``) -> the recipe JSON (as ``enhance --recipe``
  writes it);
* ``POST /v1/render``: multipart with ``file`` and ``recipe`` (the JSON, as a field or a file); ``renderer``,
  ``strength``, ``format``, ``quality`` -> the photo rendered with the recipe (which must be made for it: 422);
* ``GET /healthz`` (never needs the token), ``GET /metrics`` (Prometheus text), ``GET /openapi.json``, ``GET /docs``.

Refusals are JSON ``{"error": "one line"}``: 400 bad option or recipe, 401 no or wrong bearer token, 408 upload
slower than the timeout, 413 body over ``max_bytes`` (announced or chunked: the rest is never read, the connection
is closed) or photo over ``max_pixels`` (from its header, before decoding), 415 not a photo type, 422 a photo
that cannot be read or a recipe of another photo, 503 with ``Retry-After`` when the queue is full (at once, before
the body is read), 504 the photo not done within the timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import sys

from deepexposure.apps.serve.metrics import Metrics, MetricsMiddleware
from deepexposure.apps.serve.openapi import docs_page, openapi
from deepexposure.apps.serve.pool import Busy, Pool, WorkTimeout
from deepexposure.apps.serve.work import (
    CONTENT_TYPES,
    ENHANCE_OPTIONS,
    MAX_RECIPE_BYTES,
    RECIPE_OPTIONS,
    RENDER_OPTIONS,
    BadRequest,
    Photos,
    UnsupportedType,
    parse_options,
    parse_recipe,
)
from deepexposure.apps.web import BodyTooLarge, DrainBody, read_body
from deepexposure.errors import DeepExposureError, PixelLimitError

__all__ = ["ROUTES", "ServeConfig", "create_app", "header_value"]

ROUTES = ("/v1/enhance", "/v1/recipe", "/v1/render", "/healthz", "/metrics", "/openapi.json", "/docs")
_OPEN = frozenset({"/healthz"})  # answered without the token (liveness probes)
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_REASONS = ((Busy, "queue_full"), (BodyTooLarge, "too_large"), (PixelLimitError, "too_many_pixels"),
            (UnsupportedType, "content_type"), (WorkTimeout, "timeout"))


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """The service's limits: ``workers`` threads, ``queue`` requests waiting beyond them, ``timeout`` seconds per
    request (upload, wait and work), ``max_bytes`` per request body, optional bearer ``token``."""

    workers: int
    queue: int
    timeout: float = 60.0
    max_bytes: int = 64 << 20
    token: str | None = None


class UploadTimeout(DeepExposureError):
    """The body did not arrive within the timeout (a slow client): 408."""

    status = 408
    headers = {"Connection": "close"}


class _BearerGuard:
    """ASGI middleware: without ``Authorization: Bearer <token>`` (compared in constant time) a request gets 401,
    except on :data:`_OPEN` routes."""

    def __init__(self, app, token: str, metrics: Metrics) -> None:
        self.app = app
        self.expected = b"Bearer " + token.encode()
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope.get("path") not in _OPEN:
            given = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
            if not secrets.compare_digest(given, self.expected):
                from starlette.responses import JSONResponse

                self.metrics.reject("unauthorized")
                msg = "unauthorized: send the server's token as 'Authorization: Bearer TOKEN'"
                await JSONResponse({"error": msg}, status_code=401,
                                   headers={**_HEADERS, "WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def header_value(text: str, limit: int = 200) -> str:
    """``text`` fit for an HTTP header value: printable ASCII kept, anything else (a non-Latin look name, a CR LF
    from an uploaded recipe's model) written as ``?``, cut to ``limit`` characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(text)[:limit])


def _fields(items, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            raise BadRequest(f"option {key[:40]!r} given twice{where}")
        out[key] = value
    return out


def create_app(photos: Photos, config: ServeConfig):
    """The Starlette app; ``app.state.pool`` and ``app.state.metrics`` are its pool and counters."""
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    pool = Pool(config.workers, config.queue)
    metrics = Metrics(ROUTES)
    spec = openapi(photos.look_names)

    def error(msg: str, status: int, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=status, headers={**_HEADERS, **(headers or {})})

    def refused(exc: DeepExposureError) -> JSONResponse:
        for kind, reason in _REASONS:
            if isinstance(exc, kind):
                metrics.reject(reason)
        if isinstance(exc, UploadTimeout):
            metrics.reject("upload_timeout")
        status = getattr(exc, "status", 413 if isinstance(exc, PixelLimitError) else 422)
        headers = dict(getattr(exc, "headers", {}))
        if isinstance(exc, Busy):
            headers["Retry-After"] = str(pool.retry_after())
        return error(str(exc), status, headers)

    async def receive(request: Request) -> tuple[bytes, dict[str, str], object]:
        """The photo's bytes, the form fields and the ``recipe`` part (None without one) of a request."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in CONTENT_TYPES:
            return await read_body(request, config.max_bytes), {}, None
        if kind != "multipart/form-data":
            raise UnsupportedType(f"send the photo as the body (Content-Type: {', '.join(sorted(CONTENT_TYPES))}) "
                                  f"or as the 'file' part of multipart/form-data, not {kind[:60] or 'no type'}")
        raw = await read_body(request, config.max_bytes)

        async def replay():
            yield raw

        try:
            form = await MultiPartParser(request.headers, replay(), max_files=2, max_fields=16,
                                         max_part_size=MAX_RECIPE_BYTES).parse()
        except MultiPartException as exc:
            raise BadRequest(f"bad multipart body: {exc.message}") from None
        try:
            for part_name in ("file", "recipe"):
                if len(form.getlist(part_name)) > 1:
                    raise BadRequest(f"multipart/form-data has {len(form.getlist(part_name))} parts named "
                                     f"'{part_name}'; send one per request")
            file = form.get("file")
            if not isinstance(file, UploadFile):
                raise BadRequest("multipart/form-data needs the photo as a file part named 'file'")
            part = (file.content_type or "").split(";")[0].strip().lower()
            if part and part not in CONTENT_TYPES and part != "application/octet-stream":
                raise UnsupportedType(f"the 'file' part must be a photo ({', '.join(sorted(CONTENT_TYPES))}), "
                                      f"not {part[:60]}")
            data = await file.read()
            recipe = form.get("recipe")
            if isinstance(recipe, UploadFile):
                recipe = await recipe.read(MAX_RECIPE_BYTES + 1)
                if len(recipe) > MAX_RECIPE_BYTES:
                    raise BadRequest(f"the recipe is larger than {MAX_RECIPE_BYTES} bytes")
            fields = _fields(((k, v) for k, v in form.multi_items() if k not in ("file", "recipe")), " in the form")
            if any(not isinstance(v, str) for v in fields.values()):
                raise BadRequest("only 'file' and 'recipe' may be files; options are plain fields")
        finally:
            await form.close()
        return data, fields, recipe

    async def handle(request: Request, allowed: tuple[str, ...], job) -> Response:
        """Admit (or 503), read the body within the timeout (or 408), check the options, run ``job`` on the pool
        within what is left of the timeout (or 504)."""
        ticket = pool.admit()
        try:
            if ticket is None:
                raise Busy(f"busy: all {pool.workers} workers and {pool.queue} queue places are taken; retry later")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + config.timeout
            query = _fields(request.query_params.multi_items(), " in the query")
            parse_options(query, allowed, photos.look_names)  # garbage options: 400 before the body is read
            try:
                data, form, recipe = await asyncio.wait_for(receive(request), config.timeout)
            except (TimeoutError, asyncio.TimeoutError):
                raise UploadTimeout(f"the request body did not arrive within {config.timeout:g} s") from None
            for key in form:
                if key in query:
                    raise BadRequest(f"option {key[:40]!r} given both in the query and in the form")
            opts = parse_options({**query, **form}, allowed, photos.look_names)
            return await job(data, opts, recipe, lambda fn, *a: pool.run(ticket, fn, *a,
                                                                         timeout=deadline - loop.time()))
        except DeepExposureError as exc:
            return refused(exc)
        except MemoryError:
            return error("out of memory: try a smaller photo", 503, {"Retry-After": str(pool.retry_after())})
        except Exception as exc:  # a bug: one line to the log and the client, the server goes on
            print(f"deepexposure serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            return error(f"internal error ({type(exc).__name__})", 500)
        finally:
            if ticket is not None:
                ticket.release()

    def image(body: bytes, media: str, recipe) -> Response:
        headers = {**_HEADERS, "X-Recipe-EVs": ",".join(f"{e:.6g}" for e in recipe.evs),
                   "X-Recipe-Renderer": header_value(recipe.renderer), "X-Recipe-Look": header_value(recipe.look),
                   "X-Recipe-Model": header_value(recipe.model)}
        return Response(body, media_type=media, headers=headers)

    async def enhance(request: Request) -> Response:
        async def job(data, opts, _recipe, run):
            return image(*await run(photos.enhance, data, opts))
        return await handle(request, ENHANCE_OPTIONS, job)

    async def recipe(request: Request) -> Response:
        async def job(data, opts, _recipe, run):
            made = await run(photos.recipe, data, opts)
            return Response(made.to_json(), media_type="application/json", headers=_HEADERS)
        return await handle(request, RECIPE_OPTIONS, job)

    async def render(request: Request) -> Response:
        async def job(data, opts, text, run):
            if text is None:
                raise BadRequest("send the recipe JSON as the multipart part 'recipe' (with the photo as 'file')")
            return image(*await run(photos.render, data, parse_recipe(text), opts))
        return await handle(request, RENDER_OPTIONS, job)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "workers": pool.workers, "queue": pool.queue, "in_use": pool.held},
                            headers=_HEADERS)

    async def prometheus(request: Request) -> Response:
        gauges = {"deepexposure_pool_in_use": ("Requests admitted now (receiving, queued or worked on).", pool.held),
                  "deepexposure_pool_capacity": ("Requests admitted at most (workers + queue).", pool.capacity),
                  "deepexposure_pool_workers": ("Worker threads.", pool.workers)}
        return Response(metrics.text(gauges), media_type="text/plain; version=0.0.4; charset=utf-8", headers=_HEADERS)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec, headers=_HEADERS)

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(spec), headers={
            **_HEADERS, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    async def http_error(request: Request, exc) -> JSONResponse:
        what = {404: "not found", 405: f"method {request.method} not allowed here"}.get(exc.status_code, exc.detail)
        return error(what, exc.status_code, getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown()  # after uvicorn's graceful shutdown: the answers are sent; nothing is left to run

    middleware = [Middleware(MetricsMiddleware, metrics=metrics),
                  Middleware(DrainBody, limit=config.max_bytes, seconds=min(5.0, config.timeout))]
    if config.token:
        middleware.append(Middleware(_BearerGuard, token=config.token, metrics=metrics))
    routes = [Route("/v1/enhance", enhance, methods=["POST"]), Route("/v1/recipe", recipe, methods=["POST"]),
              Route("/v1/render", render, methods=["POST"]), Route("/healthz", healthz, methods=["GET"]),
              Route("/metrics", prometheus, methods=["GET"]), Route("/openapi.json", openapi_json, methods=["GET"]),
              Route("/docs", docs, methods=["GET"])]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={HTTPException: http_error},
                    lifespan=lifespan)
    app.state.pool = pool
    app.state.metrics = metrics
    app.state.photos = photos
    return app
