"""``deepexposure serve``: the HTTP service (POST a photo, get it back enhanced)."""

from __future__ import annotations

import click

from deepexposure.apps.cli.enhance import LOOK_HELP


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but a loopback address exposes the service to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: a free one).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Photos processed at once (threads; default: the cores).")
@click.option("--queue", type=click.IntRange(0), default=None,
              help="Requests admitted beyond the workers (default: 2 x workers); more get 503 with Retry-After.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
              help="Seconds per request (upload, wait and work): 408 for a slower upload, 504 for slower work.")
@click.option("--max-bytes", type=click.IntRange(1), default=64 << 20, show_default=True,
              help="Largest request body; a longer one is refused (413) without reading the rest.")
@click.option("--max-pixels", type=click.IntRange(1), default=None,
              help="Largest photo in pixels, checked from its header before decoding (413; default: what the free "
                   "memory holds for each worker).")
@click.option("--token", envvar="DEEPEXPOSURE_TOKEN", default=None, show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' on every route but /healthz (401 otherwise).")
@click.option("--model", type=click.Path(), default=None,
              help="Model: natural (default), paper, a global-EV .npz, a .onnx or .pt policy, or a run folder.")
@click.option("--look", default=None, metavar="natural|expert|FILE", help=f"Default look. {LOOK_HELP}")
def serve(host, port, workers, queue, timeout, max_bytes, max_pixels, token, model, look):
    """Serve deepexposure over HTTP: POST /v1/enhance, /v1/recipe, /v1/render; GET /healthz, /metrics, /docs.

    Listens on 127.0.0.1 unless --host says otherwise. SIGTERM (or Ctrl+C) stops it after answering the requests
    in flight.

    \b
    Examples:
      deepexposure serve --port 8000
      curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' localhost:8000/v1/enhance -o out.jpg
      curl -F file=@photo.jpg -F look=expert localhost:8000/v1/enhance -o out.jpg
    """
    from deepexposure.apps.serve.server import serve as run

    run(host=host, port=port, workers=workers, queue=queue, timeout=timeout, max_bytes=max_bytes,
        max_pixels=max_pixels, token=token or None, model=model, look=look,
        announce=lambda line: click.echo(line, err=True))


COMMANDS = [serve]
