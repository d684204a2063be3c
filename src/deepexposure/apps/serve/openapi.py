"""The OpenAPI 3.1 description of ``deepexposure serve`` (``/openapi.json``) and a plain HTML page made from it
(``/docs``: no script, nothing loaded from elsewhere)."""

from __future__ import annotations

import html

from deepexposure import __version__
from deepexposure.image.render import RENDERERS

__all__ = ["openapi", "docs_page"]

_PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff", "image/bmp")
_IMAGES = {t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/jpeg", "image/png", "image/webp",
                                                                          "image/tiff")}


def _error(why: str) -> dict:
    return {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _params(names: tuple[str, ...], looks: tuple[str, ...]) -> list[dict]:
    known = {
        "look": ({"type": "string", "enum": list(looks)}, "Look (default: the server's --look)."),
        "renderer": ({"type": "string", "enum": list(RENDERERS)}, "Renderer (default: the model's own)."),
        "strength": ({"type": "number", "minimum": 0, "maximum": 1, "default": 1}, "Scales every EV and the look."),
        "format": ({"type": "string", "enum": ["jpg", "png", "webp", "tif"]},
                   "Output format (default: the upload's own; jpg for BMP)."),
        "quality": ({"type": "integer", "minimum": 1, "maximum": 100, "default": 95}, "JPEG/WebP quality."),
    }
    return [{"name": n, "in": "query", "required": False, "schema": known[n][0], "description": known[n][1]}
            for n in names]


def _photo_body(extra: dict | None = None) -> dict:
    form = {"type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"},
                                                                     **(extra or {})}}
    content = {} if extra and "recipe" in extra else {t: {"schema": {"type": "string", "format": "binary"}}
                                                      for t in _PHOTO_TYPES}
    content["multipart/form-data"] = {"schema": form}
    return {"required": True, "content": content}


def openapi(looks: tuple[str, ...]) -> dict:
    """The OpenAPI document (``looks``: the look names this server takes)."""
    refusals = {"400": _error("Bad option or recipe."), "401": _error("No or wrong bearer token (with --token)."),
                "408": _error("The body did not arrive within the timeout."),
                "413": _error("Body over --max-bytes, or photo over --max-pixels (from its header)."),
                "415": _error("Not a photo content type."), "422": _error("The photo cannot be read or processed."),
                "503": {**_error("Queue full: retry after the Retry-After header's seconds."),
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                "504": _error("Not done within the timeout.")}
    evs_header = {"X-Recipe-EVs": {"schema": {"type": "string"}, "description": "The EVs applied, comma-separated."},
                  "X-Recipe-Renderer": {"schema": {"type": "string"}}, "X-Recipe-Look": {"schema": {"type": "string"}},
                  "X-Recipe-Model": {"schema": {"type": "string"}}}
    photo_out = {"description": "The photo.", "headers": evs_header, "content": _IMAGES}
    opts = ("look", "renderer", "strength", "format", "quality")
    return {
        "openapi": "3.1.0",
        "info": {"title": "deepexposure serve", "version": __version__,
                 "description": "Fix the exposure of photos. Options go in the query or as multipart form fields."},
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/enhance": {"post": {
                "summary": "Enhance a photo: the model's recipe applied.", "parameters": _params(opts, looks),
                "requestBody": _photo_body(), "responses": {"200": photo_out, **refusals}}},
            "/v1/recipe": {"post": {
                "summary": "The recipe the model makes for a photo (JSON, as enhance --recipe writes it).",
                "parameters": _params(("look", "renderer", "strength"), looks), "requestBody": _photo_body(),
                "responses": {"200": {"description": "The recipe.", "content": {"application/json": {}}},
                              **refusals}}},
            "/v1/render": {"post": {
                "summary": "Render a photo with a recipe made for it.",
                "parameters": _params(("renderer", "strength", "format", "quality"), looks),
                "requestBody": _photo_body({"recipe": {"type": "string", "description": "The recipe JSON."}}),
                "responses": {"200": photo_out, **refusals}}},
            "/healthz": {"get": {"summary": "Liveness (no token needed).", "security": [],
                                 "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics.", "responses": {"200": {"description": "text"}}}},
            "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {"description": "JSON"}}}},
            "/docs": {"get": {"summary": "This document as a page.", "responses": {"200": {"description": "HTML"}}}},
        },
    }


def docs_page(spec: dict) -> str:
    """A self-contained HTML page listing the routes, their options and answers."""
    e = html.escape
    rows = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            params = "".join(f"<li><code>{e(p['name'])}</code>: {e(p.get('description', ''))} "
                             f"<small>{e(str(p['schema']))}</small></li>" for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {})
            answers = ", ".join(f"{code} {e(r['description'])}" for code, r in op["responses"].items())
            rows.append(f"<h2><code>{method.upper()} {e(path)}</code></h2><p>{e(op['summary'])}</p>"
                        + (f"<p>Body: {e(', '.join(body))}</p>" if body else "")
                        + (f"<ul>{params}</ul>" if params else "") + f"<p><small>{answers}</small></p>")
    info = spec["info"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(info['title'])}</title><style>"
            "body{font:15px/1.45 system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em}"
            "code{background:#f2f2f2;padding:0 .2em}</style></head><body>"
            f"<h1>{e(info['title'])} {e(info['version'])}</h1><p>{e(info['description'])} "
            "Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>" + "".join(rows) + "</body></html>")
