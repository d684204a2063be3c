"""Prometheus metrics of ``deepexposure serve``, written as the text format by hand (a few counters and one
histogram do not justify a dependency): requests by route and status, a latency histogram by route, requests in
flight, refusals by reason, and the pool's tickets.

Routes are labelled by the server's own paths only (anything else is ``other``), so clients cannot grow the label
set. Updated from the event loop and read from it: a lock guards them anyway (cheap, and safe from any thread).
"""

from __future__ import annotations

import threading
import time
from collections import Counter

__all__ = ["BUCKETS", "Metrics", "MetricsMiddleware"]

#: Upper bounds (seconds) of the latency histogram's buckets (+Inf added).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**kv: str) -> str:
    body = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in kv.items())
    return "{" + body + "}"


class Metrics:
    """The counters; :meth:`text` is the Prometheus exposition (``gauges``: extra name -> (help, value))."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        self.routes = frozenset(routes)
        self._lock = threading.Lock()
        self.requests: Counter = Counter()  # (route, status) -> n
        self.rejections: Counter = Counter()  # reason -> n
        self.in_flight = 0
        self._buckets: dict[str, list[int]] = {}
        self._sum: Counter = Counter()
        self._count: Counter = Counter()

    def route(self, path: str) -> str:
        return path if path in self.routes else "other"

    def start(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finish(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.in_flight -= 1
            self.requests[(route, str(status))] += 1
            counts = self._buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sum[route] += seconds
            self._count[route] += 1

    def reject(self, reason: str) -> None:
        with self._lock:
            self.rejections[reason] += 1

    def text(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        with self._lock:
            out = ["# HELP deepexposure_requests_total HTTP requests answered, by route and status.",
                   "# TYPE deepexposure_requests_total counter"]
            out += [f"deepexposure_requests_total{_labels(route=r, status=s)} {n}"
                    for (r, s), n in sorted(self.requests.items())]
            out += ["# HELP deepexposure_request_duration_seconds Time from the request to the end of the answer.",
                    "# TYPE deepexposure_request_duration_seconds histogram"]
            for r, counts in sorted(self._buckets.items()):
                for bound, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                    out.append(f"deepexposure_request_duration_seconds_bucket{_labels(route=r, le=bound)} {n}")
                out.append(f"deepexposure_request_duration_seconds_sum{_labels(route=r)} {self._sum[r]:.6f}")
                out.append(f"deepexposure_request_duration_seconds_count{_labels(route=r)} {self._count[r]}")
            out += ["# HELP deepexposure_in_flight_requests HTTP requests being handled now.",
                    "# TYPE deepexposure_in_flight_requests gauge", f"deepexposure_in_flight_requests {self.in_flight}",
                    "# HELP deepexposure_rejections_total Requests refused by a limit, by reason "
                    "(queue_full: 503, too_large, too_many_pixels: 413, content_type: 415, upload_timeout: 408, "
                    "timeout: 504, unauthorized: 401).",
                    "# TYPE deepexposure_rejections_total counter"]
            out += [f"deepexposure_rejections_total{_labels(reason=k)} {n}" for k, n in sorted(self.rejections.items())]
        for name, (help_, value) in (gauges or {}).items():
            out += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """ASGI middleware: counts every HTTP request (route, status, time to the end of its answer, in flight)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        start = time.perf_counter()

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.start()
        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.finish(self.metrics.route(scope.get("path", "")), status["code"],
                                time.perf_counter() - start)
