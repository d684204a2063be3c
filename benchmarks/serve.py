"""Load benchmark of ``deepexposure serve`` (issue 22), on loopback only, bounded in requests and time.

Prints, from one run:

* throughput (photos/s) and latency (p50, p99, ms) of ``POST /v1/enhance`` at 1, 4 and 16 concurrent clients
  (each a keep-alive connection sending the photos in turn, raw JPEG bodies, JPEG answers), against the reference
  measured in the same run: the CLI's own throughput, ``deepexposure enhance FOLDER -o OUT -j WORKERS`` over the same
  photos (one process, start-up included, as a user runs it); ratio = service / CLI;
* the server's memory (VmRSS of its process) after 100 requests and after 1,000 (issue 22: within 10%: no leak).

The server runs in its own process (``deepexposure serve --port 0``) with ``--workers`` threads and a queue of
``--queue`` (default 32, so that 16 clients never meet a 503; any 503 is counted in the table).
Photos: ``--photos`` different 640x480 JPEGs made from ``samples/`` (crops, flips, exposure shifts).

Usage: ``python benchmarks/serve.py [--workers 2] [--photos 48] [--requests 96] [--memory-requests 1000]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 600  # the whole run stops (and says so) past this


def _photos(folder: Path, n: int) -> list[Path]:
    import cv2
    import numpy as np

    samples = sorted((REPO / "samples").glob("*.jpg"))
    rng = np.random.default_rng(0)
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = cv2.imread(str(samples[i % len(samples)]))
        h, w = img.shape[:2]
        y, x = rng.integers(0, h // 8), rng.integers(0, w // 8)
        img = cv2.resize(img[y:y + h - h // 8, x:x + w - w // 8], (640, 480), interpolation=cv2.INTER_AREA)
        if i % 2:
            img = img[:, ::-1]
        img = np.clip(img.astype(np.float32) * float(rng.uniform(0.4, 1.6)), 0, 255).astype(np.uint8)
        dst = folder / f"photo_{i:03d}.jpg"
        cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        out.append(dst)
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def cli_throughput(folder: Path, n: int, workers: int) -> float:
    """Photos per second of one ``deepexposure enhance FOLDER -j workers`` run, start-up included."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "deepexposure", "enhance", str(folder), "-o", out, "-j", str(workers)],
                       check=True, env=_env(), capture_output=True)
        return n / (time.perf_counter() - start)


def start_server(workers: int, queue: int) -> tuple[subprocess.Popen, str, int]:
    proc = subprocess.Popen([sys.executable, "-m", "deepexposure", "serve", "--port", "0", "--workers", str(workers),
                             "--queue", str(queue)], env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    line = proc.stderr.readline()
    m = re.search(r"http://([\d.]+):(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, m.group(1), int(m.group(2))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(host: str, port: int, bodies: list[bytes], clients: int, requests: int, deadline: float) -> dict:
    """``requests`` POSTs shared among ``clients`` threads (keep-alive connections); latencies of the 200s."""
    lock = threading.Lock()
    state = {"next": 0, "lat": [], "status": {}}

    def client() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        while time.perf_counter() < deadline:
            with lock:
                i = state["next"]
                if i >= requests:
                    break
                state["next"] += 1
            t0 = time.perf_counter()
            conn.request("POST", "/v1/enhance", body=bodies[i % len(bodies)], headers={"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            r.read()
            dt = time.perf_counter() - t0
            with lock:
                state["status"][r.status] = state["status"].get(r.status, 0) + 1
                if r.status == 200:
                    state["lat"].append(dt)
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(state["lat"])
    done = sum(state["status"].values())
    return {"done": done, "ok": len(lat), "per_s": len(lat) / wall, "wall": wall,
            "p50": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99": 1000 * lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))] if lat else float("nan"),
            "status": state["status"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=32)
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    ap.add_argument("--memory-requests", type=int, default=1000)
    args = ap.parse_args()
    deadline = time.perf_counter() + TIME_LIMIT_S
    tmp = Path(tempfile.mkdtemp(prefix="deepexposure-bench-serve-"))
    try:
        paths = _photos(tmp / "photos", args.photos)
        bodies = [p.read_bytes() for p in paths]
        cli = cli_throughput(tmp / "photos", len(paths), args.workers)
        proc, host, port = start_server(args.workers, args.queue)
        try:
            sent = load(host, port, bodies, 2, 4, deadline)["done"]  # warm-up (first-use costs)
            rows, rss_100, at = [], float("nan"), 0
            for c in (1, 4, 16):
                rows.append((c, load(host, port, bodies, c, args.requests, deadline)))
                sent += rows[-1][1]["done"]
                if not at:  # memory: the server's RSS after the first ~100 requests (4 + --requests)...
                    rss_100, at = rss_mb(proc.pid), sent
            # ... and after 1,000 (counting those above)
            sent += load(host, port, bodies, 4, max(0, args.memory_requests - sent), deadline)["done"]
            rss_1000 = rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"deepexposure serve on loopback: {args.workers} worker threads, queue {args.queue}, {len(paths)} photos "
          f"640x480 JPEG (natural model, rolloff, JPEG answers); {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| clients | requests | photos/s | CLI photos/s (same run) | ratio | p50 ms | p99 ms | 503s |")
    print("|---|---|---|---|---|---|---|---|")
    for c, r in rows:
        print(f"| {c} | {r['done']} | {r['per_s']:.1f} | {cli:.1f} | {r['per_s'] / cli:.2f} | {r['p50']:.0f} | "
              f"{r['p99']:.0f} | {r['status'].get(503, 0)} |")
    growth = 100 * (rss_1000 / rss_100 - 1)
    print(f"\nserver RSS after {at} requests: {rss_100:.0f} MB; after {sent}: {rss_1000:.0f} MB ({growth:+.1f}%): "
          + ("within 10%" if abs(growth) <= 10 else "MORE than 10% apart")
          + ("" if sent >= args.memory_requests else f" (stopped at the {TIME_LIMIT_S} s limit)"))


if __name__ == "__main__":
    main()
