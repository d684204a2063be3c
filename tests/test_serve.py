"""The HTTP service (deepexposure serve): its answers equal the library's (Enhancer, render), its limits hold
against hostile clients (truncated, oversized and bomb uploads, wrong types, garbage options, slow clients, a full
queue, no token), its metrics move; a real uvicorn process binds loopback, survives 400 concurrent requests
against a queue of 8, and finishes the requests in flight on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.request import Request, urlopen

import cv2
import numpy as np
import pytest

from conftest import REPO

pytest.importorskip("starlette", reason="starlette (the 'serve' extra) is not installed: service tests skipped")
pytest.importorskip("uvicorn", reason="uvicorn (the 'serve' extra) is not installed: service tests skipped")
pytest.importorskip("python_multipart", reason="python-multipart (the 'serve' extra) is not installed: service "
                                               "tests skipped")
pytest.importorskip("httpx2", reason="httpx2 (Starlette's TestClient) is not installed: service tests skipped")

from starlette.testclient import TestClient  # noqa: E402

from deepexposure.apps.pipeline import manual_recipe  # noqa: E402
from deepexposure.apps.serve.app import ServeConfig, create_app  # noqa: E402
from deepexposure.apps.serve.work import Photos  # noqa: E402
from deepexposure.image.photo import to_float  # noqa: E402
from deepexposure.inference.enhance import Enhancer  # noqa: E402

SAMPLE = REPO / "samples" / "dicm_02.jpg"
TOKEN = "serve-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _encode(rgb: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[..., ::-1]))
    assert ok
    return buf.tobytes()


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img[..., ::-1] if img.ndim == 3 else img


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return cv2.resize(cv2.imread(str(SAMPLE)), (320, 240), interpolation=cv2.INTER_AREA)[..., ::-1].copy()


@pytest.fixture(scope="module")
def photos() -> Photos:
    return Photos(max_pixels=4_000_000)


def _client(photos, **kw) -> TestClient:
    cfg = {"workers": 2, "queue": 2, "timeout": 30.0, "max_bytes": 2 << 20, "token": TOKEN, **kw}
    return TestClient(create_app(photos, ServeConfig(**cfg)))


@pytest.fixture
def client(photos):
    with _client(photos) as c:
        yield c


def post(c, path: str, data: bytes, kind: str = "image/png", **params):
    return c.post(path, content=data, params=params, headers={**AUTH, "Content-Type": kind})


def _one_line_error(r, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    msg = r.json()["error"]
    assert "\n" not in msg and 0 < len(msg) < 300 and "Traceback" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def _metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# ----------------------------------------------------------------------------------------------- answers


def test_enhance_equals_the_library_pixel_for_pixel(client, rgb):
    """A PNG posted as the body comes back as the PNG of Enhancer().enhance of the same pixels, the recipe in the
    headers; the multipart form gives the same bytes."""
    png = _encode(rgb, ".png")
    r = post(client, "/v1/enhance", png)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    expected, recipe = Enhancer().enhance(rgb)
    assert np.array_equal(_decode(r.content), expected)
    assert r.headers["x-recipe-evs"] == ",".join(f"{e:.6g}" for e in recipe.evs)
    assert r.headers["x-recipe-model"] == recipe.model and r.headers["x-recipe-look"] == "natural"
    form = client.post("/v1/enhance", files={"file": ("p.png", png, "image/png")}, headers=AUTH)
    assert form.status_code == 200 and form.content == r.content


def test_sixteen_bit_png_with_alpha_keeps_depth_and_alpha(client, rgb):
    rgba16 = np.concatenate([rgb.astype(np.uint16) * 257, np.full((*rgb.shape[:2], 1), 30000, np.uint16)], axis=2)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgba16[..., [2, 1, 0, 3]]))
    r = post(client, "/v1/enhance", buf.tobytes())
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.uint16 and np.array_equal(out[..., [2, 1, 0, 3]], Enhancer().enhance(rgba16)[0])


def test_options_reach_the_enhancer(client, rgb):
    """look, renderer, strength and format/quality as query or form fields: the same as the Enhancer given them."""
    png = _encode(rgb, ".png")
    r = client.post("/v1/enhance", params={"renderer": "local", "format": "png"},
                    files={"file": ("p.png", png, "image/png")},
                    data={"look": "expert", "strength": "0.5"}, headers=AUTH)
    assert r.status_code == 200, r.text
    expected, recipe = Enhancer(look="expert", renderer="local", strength=0.5).enhance(rgb)
    assert np.array_equal(_decode(r.content), expected)
    assert r.headers["x-recipe-look"] == "expert" and r.headers["x-recipe-renderer"] == "local"
    jpg = post(client, "/v1/enhance", png, format="jpg", quality="40")
    webp = post(client, "/v1/enhance", png, format="webp")
    assert jpg.headers["content-type"] == "image/jpeg" and jpg.content[:3] == b"\xff\xd8\xff"
    assert webp.headers["content-type"] == "image/webp" and webp.content[8:12] == b"WEBP"
    assert len(jpg.content) < len(post(client, "/v1/enhance", png, format="jpg", quality="95").content)
    tif = post(client, "/v1/enhance", png, format="tif")
    assert tif.headers["content-type"] == "image/tiff" and np.array_equal(_decode(tif.content), _decode(
        post(client, "/v1/enhance", png).content))


def test_recipe_then_render_equals_enhance(client, rgb):
    """/v1/recipe gives the library's recipe; /v1/render with it gives exactly /v1/enhance's photo."""
    png = _encode(rgb, ".png")
    for look in ("natural", "expert"):
        rec = post(client, "/v1/recipe", png, look=look, renderer="local")
        assert rec.status_code == 200 and rec.headers["content-type"] == "application/json"
        assert json.loads(rec.text) == Enhancer(look=look, renderer="local").recipe(to_float(rgb)[0]).to_dict()
        rendered = client.post("/v1/render", params={"format": "png"}, headers=AUTH,
                               files={"file": ("p.png", png, "image/png"), "recipe": (None, rec.text)})
        assert rendered.status_code == 200, rendered.text
        enhanced = post(client, "/v1/enhance", png, look=look, renderer="local", format="png")
        assert rendered.content == enhanced.content


def test_render_refuses_recipes_of_other_photos_and_bad_recipes(client, rgb):
    png = _encode(rgb, ".png")
    recipe = manual_recipe(to_float(rgb)[0], [1.0, -1.0, 0.5], "local")
    assert recipe.labels is not None
    files = {"file": ("p.png", png, "image/png"), "recipe": ("r.json", recipe.to_json().encode(), "application/json")}
    assert client.post("/v1/render", headers=AUTH, files=files).status_code == 200
    other = cv2.resize(cv2.imread(str(REPO / "samples" / "dicm_34.jpg")), (320, 240))[..., ::-1]
    files["file"] = ("o.png", _encode(other, ".png"), "image/png")
    _one_line_error(client.post("/v1/render", headers=AUTH, files=files), 422, "not made for")
    _one_line_error(client.post("/v1/render", headers=AUTH, files={"file": ("p.png", png, "image/png")}), 400,
                    "recipe")
    for text, word in (("[" * 100000, "recipe"), ('{"evs": [99]}', "EVs"), ("{", "JSON"),
                       ('{"evs": [1], "labels": {"shape": [64, 64], "runs": [1]}}', "recipe")):
        r = client.post("/v1/render", headers=AUTH, files={"file": ("p.png", png, "image/png"), "recipe": (None, text)})
        _one_line_error(r, 400, word)


def test_health_docs_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"  # no token needed
    spec = client.get("/openapi.json", headers=AUTH).json()
    assert {"/v1/enhance", "/v1/recipe", "/v1/render", "/healthz", "/metrics"} <= set(spec["paths"])
    page = client.get("/docs", headers=AUTH)
    assert page.status_code == 200 and "/v1/enhance" in page.text and "<script" not in page.text
    assert "http" not in page.text.replace("http://", "").split("<body>")[0]  # nothing loaded from elsewhere
    _one_line_error(client.get("/nowhere", headers=AUTH), 404, "not found")
    _one_line_error(client.get("/v1/enhance", headers=AUTH), 405, "GET")


# ----------------------------------------------------------------------------------------------- hostile input


def test_token_is_required(client, rgb):
    png = _encode(rgb, ".png")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        r = client.post("/v1/enhance", content=png, headers={**headers, "Content-Type": "image/png"})
        _one_line_error(r, 401, "token")
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics").status_code == 401
    metrics = client.get("/metrics", headers=AUTH).text
    assert _metric(metrics, "deepexposure_rejections_total", reason="unauthorized") == 5


def test_truncated_and_garbage_photos(client, rgb):
    jpg = _encode(rgb, ".jpg")
    msg = _one_line_error(post(client, "/v1/enhance", jpg[: len(jpg) // 2], "image/jpeg"), 422, "upload",
                          "truncated")
    assert "/tmp" not in msg and "deepexposure-serve" not in msg  # the temporary path is never shown
    _one_line_error(post(client, "/v1/enhance", b"\x89PNG\r\n\x1a\n" + os.urandom(200)), 422, "upload")
    _one_line_error(post(client, "/v1/enhance", b""), 422, "upload")


def test_wrong_content_types(client, rgb):
    png = _encode(rgb, ".png")
    _one_line_error(post(client, "/v1/enhance", png, "text/plain"), 415, "text/plain")
    _one_line_error(post(client, "/v1/enhance", png, "application/json"), 415)
    _one_line_error(client.post("/v1/enhance", content=png, headers=AUTH), 415, "no type")
    r = client.post("/v1/enhance", files={"file": ("p.txt", png, "text/html")}, headers=AUTH)
    _one_line_error(r, 415, "text/html")
    _one_line_error(client.post("/v1/render", content=png, headers={**AUTH, "Content-Type": "image/png"}), 400,
                    "recipe")
    _one_line_error(client.post("/v1/enhance", files={"photo": ("p.png", png, "image/png")}, headers=AUTH), 400,
                    "'file'")
    metrics = client.get("/metrics", headers=AUTH).text
    assert _metric(metrics, "deepexposure_rejections_total", reason="content_type") == 4


@pytest.mark.parametrize("params, words", [
    ({"strength": "abc"}, ["strength"]), ({"strength": "nan"}, ["strength"]), ({"strength": "1.5"}, ["strength"]),
    ({"quality": "0"}, ["quality"]), ({"quality": "9" * 50}, ["quality", "..."]), ({"format": "gif"}, ["format"]),
    ({"renderer": "magic"}, ["renderer"]), ({"look": "/etc/passwd"}, ["look"]), ({"stregnth": "1"}, ["unknown"]),
    ({"look": "expert\n\r"}, ["look"]),
])
def test_garbage_options_are_one_line_400(client, rgb, params, words):
    _one_line_error(post(client, "/v1/enhance", _encode(rgb, ".png"), **params), 400, *words)


def test_options_given_twice_and_options_a_route_does_not_take(client, rgb):
    png = _encode(rgb, ".png")
    _one_line_error(client.post("/v1/enhance?strength=1&strength=0", content=png,
                                headers={**AUTH, "Content-Type": "image/png"}), 400, "twice")
    r = client.post("/v1/enhance", params={"strength": "1"}, data={"strength": "0.5"},
                    files={"file": ("p.png", png, "image/png")}, headers=AUTH)
    _one_line_error(r, 400, "both")
    _one_line_error(post(client, "/v1/recipe", png, format="png"), 400, "unknown", "format")
    r = client.post("/v1/render", params={"look": "expert"}, headers=AUTH,
                    files={"file": ("p.png", png, "image/png"), "recipe": (None, '{"evs": [1]}')})
    _one_line_error(r, 400, "unknown", "look")


def test_oversized_upload_is_413_before_it_is_read(photos, rgb):
    """An announced Content-Length over --max-bytes is refused without reading a byte; a chunked body is refused
    as soon as it passes the limit (the generator is not drained)."""
    with _client(photos, max_bytes=100_000) as c:
        r = post(c, "/v1/enhance", b"\0" * 100_001)
        _one_line_error(r, 413, "too large")
        assert r.headers["connection"] == "close"
        asked = []

        async def receive():  # a chunked body of 10 MB, as the server's ASGI layer hands it over
            asked.append(1)
            return {"type": "http.request", "body": b"\0" * 10_000, "more_body": len(asked) < 1000}

        answer = []

        async def send(message):
            answer.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/enhance", "raw_path": b"/v1/enhance",
                 "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
                 "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1),
                 "headers": [(b"content-type", b"image/png"), (b"authorization", AUTH["Authorization"].encode()),
                             (b"transfer-encoding", b"chunked")]}
        asyncio.run(c.app(scope, receive, send))
        assert answer[0]["status"] == 413 and len(asked) < 20  # 10 MB offered, about 100 kB taken
        metrics = c.get("/metrics", headers=AUTH).text
        assert _metric(metrics, "deepexposure_rejections_total", reason="too_large") == 2


def _png_bomb(w: int, h: int) -> bytes:
    """A valid-looking PNG header declaring w x h pixels, with a few bytes of data: decoding would need GBs."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_413_from_the_header(client):
    start = time.perf_counter()
    msg = _one_line_error(post(client, "/v1/enhance", _png_bomb(60_000, 60_000)), 413, "3,600,000,000 pixels",
                          "4,000,000")
    assert time.perf_counter() - start < 5 and "/tmp" not in msg
    _one_line_error(post(client, "/v1/enhance", _png_bomb(2001, 2000)), 413, "pixels")  # just above the limit
    metrics = client.get("/metrics", headers=AUTH).text
    assert _metric(metrics, "deepexposure_rejections_total", reason="too_many_pixels") == 2


# ----------------------------------------------------------------------------------------------- load limits


class _Gate:
    """Replaces the photo work by a function that blocks until opened (the test controls when work ends)."""

    def __init__(self, photos: Photos) -> None:
        self.photos, self.open, self.started = photos, threading.Event(), threading.Semaphore(0)
        self.real = photos.enhance

    def __enter__(self):
        def blocked(data, opts):
            self.started.release()
            assert self.open.wait(30)
            return self.real(data, opts)
        self.photos.enhance = blocked
        return self

    def __exit__(self, *exc) -> None:
        self.open.set()
        del self.photos.enhance  # the method again


def test_full_queue_answers_503_with_retry_after_at_once(photos, rgb):
    png = _encode(rgb, ".png")
    with _client(photos, workers=1, queue=1) as c, _Gate(photos) as gate:
        results = []
        threads = [threading.Thread(target=lambda: results.append(post(c, "/v1/enhance", png))) for _ in range(2)]
        for t in threads:
            t.start()
        assert gate.started.acquire(timeout=10)  # one working, ...
        deadline = time.monotonic() + 10
        while c.app.state.pool.held < 2 and time.monotonic() < deadline:  # ... one queued
            time.sleep(0.01)
        start = time.perf_counter()
        r = post(c, "/v1/enhance", png)
        assert time.perf_counter() - start < 2
        _one_line_error(r, 503, "busy")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").json()["in_use"] == 2
        gate.open.set()
        for t in threads:
            t.join(30)
        assert [x.status_code for x in results] == [200, 200]
        metrics = c.get("/metrics", headers=AUTH).text
        assert _metric(metrics, "deepexposure_rejections_total", reason="queue_full") == 1
        assert _metric(metrics, "deepexposure_requests_total", route="/v1/enhance", status="503") == 1
        assert c.app.state.pool.held == 0


def test_timeout_is_504_and_the_running_job_keeps_its_place(photos, rgb):
    """Past --timeout the client gets 504; the job still running keeps its ticket until it ends (so the bound on
    work in memory holds), then gives it back."""
    png = _encode(rgb, ".png")
    with _client(photos, workers=1, queue=0, timeout=0.5) as c, _Gate(photos) as gate:
        _one_line_error(post(c, "/v1/enhance", png), 504, "timeout")
        assert c.app.state.pool.held == 1
        _one_line_error(post(c, "/v1/enhance", png), 503, "busy")
        gate.open.set()
        deadline = time.monotonic() + 10
        while c.app.state.pool.held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.app.state.pool.held == 0
        metrics = c.get("/metrics", headers=AUTH).text
        assert _metric(metrics, "deepexposure_rejections_total", reason="timeout") == 1


def test_metrics_move(client, rgb):
    before = client.get("/metrics", headers=AUTH).text
    assert _metric(before, "deepexposure_requests_total", route="/v1/enhance", status="200") == 0
    for _ in range(3):
        post(client, "/v1/enhance", _encode(rgb, ".png"))
    post(client, "/v1/enhance", b"x", "text/plain")
    text = client.get("/metrics", headers=AUTH).text
    assert _metric(text, "deepexposure_requests_total", route="/v1/enhance", status="200") == 3
    assert _metric(text, "deepexposure_requests_total", route="/v1/enhance", status="415") == 1
    assert _metric(text, "deepexposure_request_duration_seconds_count", route="/v1/enhance") == 4
    assert _metric(text, "deepexposure_request_duration_seconds_bucket", route="/v1/enhance", le="+Inf") == 4
    assert _metric(text, "deepexposure_in_flight_requests") == 1  # this scrape
    assert _metric(text, "deepexposure_pool_capacity") == 4
    assert "# TYPE deepexposure_request_duration_seconds histogram" in text
    client.post("/v1/enhance/../../etc", headers=AUTH)
    assert 'route="other"' in client.get("/metrics", headers=AUTH).text  # no label per path


def test_missing_extra_is_one_line(monkeypatch):
    from deepexposure.apps.serve.server import ServeError, require_serve

    monkeypatch.setitem(sys.modules, "python_multipart", None)
    with pytest.raises(ServeError, match=r"pip install 'deepexposure\[serve\]'"):
        require_serve()


# ----------------------------------------------------------------------------------------------- a real server


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DEEPEXPOSURE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "deepexposure", "serve", "--port", "0", *args], cwd=tmp_path,
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    line = proc.stderr.readline()
    m = re.search(r"(http://\S+)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL: {line}{proc.stderr.read()}")
    return proc, m.group(1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _clean_exit(proc: subprocess.Popen) -> None:
    """Stopped by SIGTERM after a graceful shutdown: uvicorn re-raises the signal once done (so the exit status
    says SIGTERM, as supervisors expect), and nothing went wrong on the way (no traceback, no error line)."""
    assert proc.returncode in (0, -signal.SIGTERM)
    rest = proc.stderr.read()
    assert "Traceback" not in rest and "error" not in rest.lower(), rest


def _recv_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def _get(url: str) -> str:
    return urlopen(url, timeout=30).read().decode()


def test_real_server_binds_loopback_and_refuses_a_slow_client(tmp_path, rgb):
    """The command listens on 127.0.0.1 only; a client that sends its body too slowly gets 408 after --timeout
    while others are served meanwhile."""
    proc, url = _start(tmp_path, "--timeout", "2", "--workers", "1")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        assert host == "127.0.0.1"
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((other, int(port))) != 0
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(b"POST /v1/enhance HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"\x89PNG")
            start = time.monotonic()
            assert json.loads(_get(f"{url}/healthz"))["in_use"] == 1  # served while the slow one waits
            png = _encode(rgb, ".png")
            ok = urlopen(Request(f"{url}/v1/enhance", data=png, headers={"Content-Type": "image/png"}), timeout=30)
            assert ok.status == 200
            reply = _recv_all(slow)
            assert reply.startswith(b"HTTP/1.1 408") and b"did not arrive within 2 s" in reply
            assert 1.5 < time.monotonic() - start < 10
        assert "upload_timeout" in _get(f"{url}/metrics")
    finally:
        _stop(proc)
    _clean_exit(proc)


def test_real_server_refuses_a_chunked_flood_and_a_huge_announced_body(tmp_path):
    proc, url = _start(tmp_path, "--max-bytes", "100000", "--workers", "1")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /v1/enhance HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            sent, reply = 0, b""
            s.settimeout(0.05)
            while sent < 50_000_000 and not reply:
                try:
                    s.sendall(b"2710\r\n" + b"\0" * 10_000 + b"\r\n")
                    sent += 10_000
                    reply = s.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # the server closed the connection after answering
                    break
            s.settimeout(10)
            reply = reply or s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 413") and sent < 5_000_000
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(b"POST /v1/enhance HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Content-Length: 99999999999\r\n\r\n")
            assert s.recv(65536).startswith(b"HTTP/1.1 413")
        assert json.loads(_get(f"{url}/healthz"))["status"] == "ok"
    finally:
        _stop(proc)


async def _flood(host: str, port: int, body: bytes, n: int) -> list[int]:
    async def one() -> int:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /v1/enhance HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        reply = await reader.read()
        writer.close()
        return int(reply.split(b" ", 2)[1])
    return list(await asyncio.gather(*(one() for _ in range(n))))


@pytest.mark.slow
def test_real_server_survives_400_concurrent_requests_against_a_queue_of_8(tmp_path, rgb):
    proc, url = _start(tmp_path, "--workers", "2", "--queue", "8")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        statuses = asyncio.run(_flood(host, int(port), _encode(rgb, ".png"), 400))
        assert len(statuses) == 400 and set(statuses) <= {200, 503}
        busy = statuses.count(503)
        assert busy > 0 and statuses.count(200) >= 10
        metrics = _get(f"{url}/metrics")
        assert _metric(metrics, "deepexposure_rejections_total", reason="queue_full") == busy
        assert _metric(metrics, "deepexposure_requests_total", route="/v1/enhance", status="200") == 400 - busy
        assert json.loads(_get(f"{url}/healthz")) == {"status": "ok", "workers": 2, "queue": 8, "in_use": 0}
    finally:
        _stop(proc)
    _clean_exit(proc)


def test_sigterm_finishes_the_requests_in_flight(tmp_path, rgb):
    """SIGTERM while three photos are being worked on (one worker): all three are answered in full, then the
    process exits 0 and the port is closed."""
    big = cv2.resize(rgb, (2000, 1500))
    body = _encode(big, ".jpg")
    proc, url = _start(tmp_path, "--workers", "1", "--queue", "4")
    host, port = url.removeprefix("http://").rsplit(":", 1)
    results: list = []

    def call() -> None:
        try:
            r = urlopen(Request(f"{url}/v1/enhance", data=body, headers={"Content-Type": "image/jpeg"}), timeout=60)
            results.append((r.status, r.read()))
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            results.append((repr(exc), b""))

    threads = [threading.Thread(target=call) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if _metric(_get(f"{url}/metrics"), "deepexposure_pool_in_use") == 3:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the three requests were never in flight together")
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        proc.wait(timeout=60)
    finally:
        _stop(proc)
    _clean_exit(proc)
    assert [s for s, _ in results] == [200, 200, 200], results
    assert all(_decode(b).shape == (1500, 2000, 3) for _, b in results)
    with socket.socket() as s:
        assert s.connect_ex((host, int(port))) != 0
