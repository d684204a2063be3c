"""Many photos in, many photos out: output planning, progress, per-photo failures, parallel workers.

Used by ``deepexposure render`` and ``deepexposure enhance``. One photo is processed at a time per worker,
so memory is bounded by ``workers`` x one photo whatever the folder size. A failure on one photo
(:class:`~deepexposure.errors.DeepExposureError`) is recorded and the rest go on.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from deepexposure.errors import DeepExposureError, PhotoError
from deepexposure.io import SUPPORTED_EXTENSIONS, iter_photo_paths

__all__ = ["Job", "BatchResult", "plan_jobs", "run_batch"]


@dataclass(frozen=True)
class Job:
    """One photo to process: read ``src``, write ``dst`` (and optionally a recipe sidecar)."""

    src: Path
    dst: Path


@dataclass
class BatchResult:
    """What happened to each photo of a batch."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _looks_like_file(out: Path) -> bool:
    return out.suffix.lower() in SUPPORTED_EXTENSIONS and not out.is_dir()


def plan_jobs(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    recursive: bool = False,
    fmt: str | None = None,
    overwrite: bool = False,
) -> list[Job]:
    """Map input photos (files and folders) to output paths.

    A single input file with ``out`` ending in an image suffix writes exactly ``out``. Otherwise ``out`` is a
    folder: each photo keeps its name (and, with ``recursive``, its path relative to the input folder); ``fmt``
    (e.g. ``"png"``) changes the suffix. An output that would replace its own input is refused unless
    ``overwrite``; two inputs mapping to the same output is an error.
    """
    out = Path(out)
    roots = [Path(p) for p in inputs]
    if not roots:
        raise PhotoError("no input photos given")
    pairs: list[tuple[Path, Path]] = []  # (src, relative dst)
    for root in roots:
        if root.is_dir():
            for src in iter_photo_paths([root], recursive=recursive):
                pairs.append((src, src.relative_to(root)))
        else:
            for src in iter_photo_paths([root]):
                pairs.append((src, Path(src.name)))
    if not pairs:
        raise PhotoError(f"no photos found in {', '.join(map(str, roots))}")
    single_file = len(pairs) == 1 and not roots[0].is_dir() and _looks_like_file(out)
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        if single_file:
            dst = out
        else:
            dst = out / rel
            if fmt:
                dst = dst.with_suffix("." + fmt.lower().lstrip("."))
        key = dst.resolve()
        if key in seen:
            raise PhotoError(f"{seen[key]} and {src} would both be written to {dst}; use --recursive or separate runs")
        seen[key] = src
        if key == src.resolve() and not overwrite:
            raise PhotoError(f"refusing to overwrite the input {src} (pass --overwrite to allow it)")
        jobs.append(Job(src, dst))
    return jobs


def _run_one(fn: Callable[[Job], None], job: Job) -> str | None:
    """Run ``fn(job)``; return None on success or the one-line error message."""
    try:
        fn(job)
    except DeepExposureError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:  # defensive: never let one photo stop the batch
        return f"{job.src}: {type(exc).__name__}: {exc}"
    return None


def run_batch(
    jobs: Iterable[Job],
    fn: Callable[[Job], None],
    *,
    overwrite: bool = False,
    skip_existing: bool = False,
    workers: int = 1,
    progress: bool = True,
    desc: str = "photos",
) -> BatchResult:
    """Run ``fn`` on every job; existing outputs are skipped (``skip_existing``) or refused unless ``overwrite``.

    ``fn`` must be picklable (a module-level function or ``functools.partial`` of one) when ``workers > 1``.
    At most ``2 * workers`` photos are in flight, so memory stays bounded for folders of any size.
    """
    jobs = list(jobs)
    result = BatchResult()
    todo: list[Job] = []
    for job in jobs:
        if job.dst.exists() and not overwrite:
            if skip_existing:
                result.skipped.append(job.src)
                continue
            result.failed.append((job.src, f"{job.dst} exists (pass --overwrite or --skip-existing)"))
            continue
        todo.append(job)
    bar = tqdm(total=len(todo), desc=desc, unit="photo", disable=not progress or len(todo) < 2, leave=False)

    def record(job: Job, err: str | None) -> None:
        if err is None:
            result.done.append(job.src)
        else:
            result.failed.append((job.src, err))  # reported once, in the summary (cli.common.report)
        bar.update(1)

    if workers <= 1 or len(todo) < 2:
        for job in todo:
            record(job, _run_one(fn, job))
    else:
        # spawn, not fork: forking a process that already ran torch or OpenCV thread pools can deadlock.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: dict = {}
            it = iter(todo)
            for job in it:
                pending[pool.submit(_run_one, fn, job)] = job
                if len(pending) >= 2 * workers:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        record(pending.pop(fut), fut.result())
            for fut in list(pending):
                record(pending.pop(fut), fut.result())
    bar.close()
    return result
