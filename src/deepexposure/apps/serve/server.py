"""Start the service: check the extra and the address first, load the model, serve with uvicorn until SIGTERM or
Ctrl+C (uvicorn's graceful shutdown: no new connections, the requests in flight are answered, then the pool
stops)."""

from __future__ import annotations

import math
import os
import socket
import sys
from collections.abc import Callable

from deepexposure.apps.web import is_loopback, listen
from deepexposure.errors import DeepExposureError
from deepexposure.image.photo import default_max_pixels

__all__ = ["SERVE_EXTRA_HINT", "ServeError", "default_workers", "require_serve", "serve"]

#: How to get the service's dependencies, quoted when they are missing.
SERVE_EXTRA_HINT = "the service needs starlette, uvicorn and python-multipart: pip install 'deepexposure[serve]'"


class ServeError(DeepExposureError):
    """The service cannot start (a missing extra, an address in use, a bad limit)."""


def require_serve() -> None:
    """Raise :class:`ServeError` (one line, how to install) when a dependency of the service is missing."""
    try:
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ServeError(SERVE_EXTRA_HINT) from None


def default_workers() -> int:
    """One worker thread per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int | None = None, queue: int | None = None,
          timeout: float = 60.0, max_bytes: int = 64 << 20, max_pixels: int | None = None, token: str | None = None,
          model: str | None = None, look: str | None = None, announce: Callable[[str], None] = print,
          sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM / Ctrl+C. ``workers`` default: the cores; ``queue`` default: 2 x workers;
    ``max_pixels`` default: what the free memory holds for each worker (at most the library's default)."""
    require_serve()
    import uvicorn

    from deepexposure.apps.serve.app import ServeConfig, create_app
    from deepexposure.apps.serve.work import Photos

    workers = workers or default_workers()
    queue = 2 * workers if queue is None else queue
    if workers < 1 or queue < 0 or not 0 < timeout < math.inf or max_bytes < 1 or (max_pixels is not None and max_pixels < 1):
        raise ServeError("--workers, --timeout (finite), --max-bytes and --max-pixels must be positive, --queue 0 "
                         "or more")
    why = "--max-pixels"
    if max_pixels is None:
        max_pixels, why = default_max_pixels(workers)
    sock = sock or listen(host, port, error=ServeError)  # a port in use is said before the model loads
    try:
        photos = Photos(model, look, max_pixels=max_pixels)
        config = ServeConfig(workers=workers, queue=queue, timeout=float(timeout), max_bytes=max_bytes, token=token)
        app = create_app(photos, config)
    except BaseException:
        sock.close()
        raise
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    if not is_loopback(host):
        announce(f"warning: listening on {host}, reachable from other machines"
                 + ("" if token else "; without --token anyone there can use it"))
    announce(f"deepexposure serve: http://{shown}:{bound[1]}  ({workers} workers, queue {queue}, timeout {timeout:g} s, "
             f"at most {max_bytes:,} bytes and {max_pixels:,} pixels ({why}) a photo; model "
             f"{photos.enhancer.model_id}, look {photos.enhancer.look.name}; docs at /docs; SIGTERM or Ctrl+C stops)")
    # limit_concurrency: connections beyond it get uvicorn's own 503 (a flood of idle connections cannot pile up);
    # well above the pool's tickets so that the pool's 503 (counted, with Retry-After) is the one clients see.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                           limit_concurrency=max(1024, 8 * (workers + queue)),
                                           timeout_keep_alive=5))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()
