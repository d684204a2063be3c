"""The bounded worker pool of ``deepexposure serve``: admission (the queue), threads, per-request deadlines.

A request that needs a photo processed first takes a *ticket*: there are ``workers + queue`` of them, taken
without waiting; when none is left the request is answered 503 at once (back-pressure: the server never holds
more than ``workers + queue`` uploads, whatever the load). The ticket is held while the body is read, while the
job waits for a thread and while it runs, and given back when the answer is ready.

Threads, not processes: the model is loaded once and shared, photos never cross a process boundary (no pickling
of tens of megabytes), and the heavy parts (NumPy, OpenCV, ONNX Runtime, Pillow's codecs) release the GIL. The
price: a thread cannot be killed, so a job past its deadline is answered 504 but runs to its end, keeping its
ticket until then (a job still queued is cancelled), so the bound holds for timed-out work too.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from deepexposure.errors import DeepExposureError

__all__ = ["Busy", "Pool", "Ticket", "WorkTimeout"]


class Busy(DeepExposureError):
    """Every ticket is taken: 503 with Retry-After."""

    status = 503


class WorkTimeout(DeepExposureError):
    """The job did not finish before the request's deadline: 504."""

    status = 504


class Ticket:
    """One admitted request's place; :meth:`release` is idempotent, and a no-op while a timed-out job still runs
    (the job gives the place back when it ends)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._released = False
        self._deferred = False

    def release(self, *, force: bool = False) -> None:
        if self._deferred and not force:
            return
        with self._pool._lock:
            if self._released:
                return
            self._released = True
            self._pool._held -= 1


class Pool:
    """``workers`` threads and ``workers + queue`` tickets (see the module doc)."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"need at least one worker and a queue of 0 or more, got {workers}, {queue}")
        self.workers = workers
        self.queue = queue
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="deepexposure-serve")
        self._lock = threading.Lock()
        self._held = 0
        self._mean_s = 1.0  # moving average of a job's run time, for Retry-After

    @property
    def held(self) -> int:
        """Tickets taken now (requests being received, queued or worked on)."""
        return self._held

    def admit(self) -> Ticket | None:
        """A ticket, or None when all are taken (never waits)."""
        with self._lock:
            if self._held >= self.capacity:
                return None
            self._held += 1
        return Ticket(self)

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the time the queue ahead takes to drain (1 to 60)."""
        return int(min(60, max(1, math.ceil(self._mean_s * self.capacity / self.workers))))

    def _timed(self, fn, args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._mean_s = 0.8 * self._mean_s + 0.2 * (time.perf_counter() - start)

    async def run(self, ticket: Ticket, fn, *args, timeout: float):
        """``fn(*args)`` on a worker thread; :class:`WorkTimeout` when it is not done within ``timeout`` s."""
        future = self._executor.submit(self._timed, fn, args)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), max(0.0, timeout))
        except (TimeoutError, asyncio.TimeoutError):
            if not future.cancel():  # running: its ticket is given back when it ends
                ticket._deferred = True
                future.add_done_callback(lambda _f: ticket.release(force=True))
            raise WorkTimeout("the photo was not done within the request timeout; try a smaller photo, or later") \
                from None

    def shutdown(self) -> None:
        """Finish the jobs running and queued, then stop the threads."""
        self._executor.shutdown(wait=True)
