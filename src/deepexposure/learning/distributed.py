"""Data-parallel training on ``torch.distributed``: the process group, and an exact, task-ordered reduction.

Launch N processes with ``torchrun --nproc-per-node N -m deepexposure train ...`` (several machines: docs/scaling.md);
torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which
:func:`init_world` reads. ``deepexposure train`` without torchrun runs in one process (:data:`SINGLE`).

Why the gradients are all-gathered per task rather than all-reduced: the trainer splits every batch into fixed
*tasks* (``RLConfig.episodes_per_task`` episodes each) and sums their gradients **in task order** on every rank
(:meth:`World.gather_rows`). Each task's gradient depends only on (parameters, its episodes, their seeds), so the
sum, and hence the update, is bit-identical for any number of processes, 1 included. An all-reduce would add the
per-rank partial sums in an order that depends on the process count (floating-point addition is not associative:
the last bits differ, and the differences grow over a run; tests/test_distributed.py catches that). The price:
each step moves ``tasks x parameters`` floats per rank instead of about ``2 x parameters`` (docs/scaling.md has
the numbers; small for this model).

Failures: a process that dies closes its connections, and the others' next collective fails at once; a process
that stops answering makes them fail after ``timeout_s``. Either way :class:`ProcessGroupError` (one line) is
raised on the survivors instead of a hang; torchrun also stops every process when one exits with an error.
"""

from __future__ import annotations

import datetime
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from deepexposure.errors import DeepExposureError

__all__ = ["World", "SINGLE", "ProcessGroupError", "RankZeroFailed", "launched_by_torchrun", "init_world"]

T = TypeVar("T")

#: Seconds a process waits for the others at a step's collective before giving up (default of ``init_world``).
DEFAULT_TIMEOUT_S = 300.0
#: Seconds the other processes wait for rank 0 to build the data, load a checkpoint or fit the baseline.
SETUP_TIMEOUT_S = 6 * 3600.0


class ProcessGroupError(DeepExposureError):
    """The training processes lost contact: one crashed, was killed, or stopped answering within the timeout."""


class RankZeroFailed(DeepExposureError):
    """Raised on ranks > 0 when rank 0 failed during set-up (rank 0 reports the error itself)."""


def launched_by_torchrun() -> bool:
    """True when this process was started by torchrun (or with its environment variables set by hand)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


@dataclass
class World:
    """This process's place among the training processes (``rank`` 0..``size``-1; ``size`` 1: no process group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    timeout_s: float = DEFAULT_TIMEOUT_S
    _setup: Any = None  #: gloo group with the long set-up timeout (None when size is 1)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and prints progress."""
        return self.rank == 0

    def _fail(self, exc: BaseException) -> ProcessGroupError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "timed out" in text.lower() or "timeout" in text.lower():
            why = f"no answer from another training process within {self.timeout_s:g} s (one stopped or hangs)"
        else:
            why = "the connection to another training process was lost (one crashed or was killed)"
        return ProcessGroupError(f"process {self.rank} of {self.size}: {why}; the run stops here "
                                 f"[{text[:200]}]")

    def tasks(self, n: int) -> range:
        """The tasks (of ``n``, numbered in batch order) this process runs: a contiguous block of at most
        ``ceil(n / size)``, so that the gathered rows come back in task order."""
        q = -(-n // self.size)
        return range(min(n, self.rank * q), min(n, (self.rank + 1) * q))

    def gather_rows(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        """All ``n`` task rows ``(n, D)`` on every process, in task order, from this process's rows of its
        :meth:`tasks` (``(len(tasks(n)), D)``, any device the backend supports)."""
        if self.size == 1:
            return rows
        import torch.distributed as dist

        q = -(-n // self.size)
        mine = rows.new_zeros((q, rows.shape[1]))
        mine[: len(rows)] = rows
        out = [torch.empty_like(mine) for _ in range(self.size)]
        try:
            dist.all_gather(out, mine)
        except RuntimeError as exc:  # DistBackendError and gloo/NCCL errors are RuntimeErrors
            raise self._fail(exc) from None
        return torch.cat(out)[:n]

    def any(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """True on every process when ``flag`` is true on any (e.g. one process's clock passed ``--minutes``)."""
        if self.size == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([float(flag)], device=device)
        try:
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        except RuntimeError as exc:
            raise self._fail(exc) from None
        return bool(t.item() > 0)

    def from_rank0(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only, its result sent to every process (pickled, over the set-up group).

        An exception in ``fn`` is raised on rank 0 as it is and as :class:`RankZeroFailed` (same message) on the
        others, which wait up to :data:`SETUP_TIMEOUT_S` (rank 0 may be building a large data set).
        """
        if self.size == 1:
            return fn()
        import torch.distributed as dist

        box: list = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                box = [("ok", fn())]
            except Exception as exc:  # noqa: BLE001 - reported on every rank, re-raised here as it is
                error = exc
                box = [("error", f"{exc}")]
        try:
            dist.broadcast_object_list(box, src=0, group=self._setup)
        except (RuntimeError, pickle.PicklingError) as exc:
            if error is not None:
                raise error from None
            raise self._fail(exc) from None
        if error is not None:
            raise error
        status, value = box[0]
        if status == "error":
            raise RankZeroFailed(value)
        return value

    def close(self) -> None:
        """Leave the process group (also after an error: a pending collective would abort the exit otherwise)."""
        if self._setup is None:  # no process group was made
            return
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # noqa: BLE001 - leaving anyway
                pass


#: The world of a run without torchrun.
SINGLE = World()


def init_world(device: str | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[World, str | None]:
    """Join the process group torchrun set up; returns (world, the device this process trains on).

    The backend is NCCL when the process trains on CUDA (each process on ``cuda:LOCAL_RANK`` unless ``device``
    names one), gloo otherwise. ``timeout_s``: how long a collective waits for the other processes.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise ProcessGroupError("this torch build has no torch.distributed; run without torchrun")
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = (device is None and torch.cuda.is_available()) or (device is not None and device.startswith("cuda"))
    if use_cuda:
        if device in (None, "cuda"):
            device = f"cuda:{local}"
        torch.cuda.set_device(torch.device(device))
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
        setup = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=max(timeout_s, SETUP_TIMEOUT_S)))
    except (RuntimeError, ValueError) as exc:
        raise ProcessGroupError(f"process {rank} of {size}: cannot join the other training processes "
                                f"({str(exc).strip().splitlines()[0][:200]})") from None
    return World(rank=rank, size=size, local_rank=local, timeout_s=timeout_s, _setup=setup), device
