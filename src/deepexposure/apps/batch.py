"""Many photos in, many photos out: output planning, progress, per-photo failures, parallel workers.

Used by ``deepexposure render`` and ``deepexposure enhance``. One photo is processed at a time per worker,
so memory is bounded by ``workers`` x one photo whatever the folder size. A failure on one photo
(:class:`~deepexposure.errors.DeepExposureError`) is recorded and the rest go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deepexposure.atomic import NAME_MAX, clean_stale
from deepexposure.errors import DeepExposureError, PhotoError
from deepexposure.image.io import RAW_EXTENSIONS, SUPPORTED_EXTENSIONS, iter_photo_paths
from deepexposure.memory import keep_freed_memory

__all__ = ["Job", "BatchResult", "plan_jobs", "plan_beside", "run_batch", "recipe_path_for", "RAW_OUTPUT_SUFFIX"]

#: Output suffix of a camera RAW input in folder mode without ``--format`` (RAW files are read, never written).
RAW_OUTPUT_SUFFIX = ".jpg"


@dataclass(frozen=True)
class Job:
    """One photo to process: read ``src``, write ``dst`` (and the recipe sidecar ``recipe`` when not None)."""

    src: Path
    dst: Path
    recipe: Path | None = None

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Every file the job writes."""
        return (self.dst,) if self.recipe is None else (self.dst, self.recipe)


@dataclass
class BatchResult:
    """What happened to each photo of a batch."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def recipe_path_for(dst: Path) -> Path:
    """Sidecar path of an output photo: ``out/photo.jpg`` -> ``out/photo.recipe.json``."""
    return dst.with_name(dst.stem + ".recipe.json")


def _check_name_lengths(p: Path) -> None:
    """A path with a name over :data:`~deepexposure.atomic.NAME_MAX` bytes (which the file system refuses: its
    stat fails with ENAMETOOLONG) raises :class:`PhotoError` naming it."""
    for part in p.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise PhotoError(f"{p}: a name of {len(os.fsencode(part))} bytes, longer than the {NAME_MAX} file "
                             f"systems allow")


def _resolve(p: Path) -> Path:
    """``p.resolve()``, with a symbolic link loop reported as one line."""
    try:
        return p.resolve()
    except (RuntimeError, OSError):  # RuntimeError: "Symlink loop from ..." (Python < 3.13), OSError: ELOOP
        raise PhotoError(f"{p}: symbolic link loop") from None


#: Image suffixes deepexposure does not write: ``-o NAME.gif`` for a folder of photos is a mistyped file name.
_OTHER_IMAGE_SUFFIXES = frozenset({".gif", ".heic", ".heif", ".avif", ".jxl", ".jp2", ".ico", ".ppm", ".pgm",
                                   ".pnm", ".tga", ".exr", ".hdr", ".dng", ".cr2", ".nef", ".arw", ".raw"})


def _out_is_folder(out: str | os.PathLike, n_photos: int, single_input_file: bool) -> bool:
    """Whether ``-o OUT`` names a folder; a file name the photos cannot be written to raises :class:`PhotoError`.

    A trailing slash or an existing folder is a folder. One photo: a name with a supported image suffix is that
    file; another suffix is an error (end OUT with / to name a folder with a dot in it). Several photos: OUT is a
    folder, unless its suffix is an image format (a file name: an error).
    """
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return True
    suffix = path.suffix.lower()
    formats = ", ".join(sorted(SUPPORTED_EXTENSIONS))
    if single_input_file and n_photos == 1:
        if suffix in SUPPORTED_EXTENSIONS:
            return False
        if suffix:
            raise PhotoError(f"-o {text}: unsupported output format {path.suffix}; use one of {formats} "
                             f"(or end -o with / for a folder)")
        return True
    if suffix in SUPPORTED_EXTENSIONS or suffix in _OTHER_IMAGE_SUFFIXES:
        raise PhotoError(f"-o {text}: a {path.suffix} file name, but the outputs ({n_photos}, or from a folder) go "
                         f"to a folder (end -o with / for a folder of that name)")
    return True


def plan_jobs(
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    recursive: bool = False,
    fmt: str | None = None,
    overwrite: bool = False,
    recipes: bool = False,
    protect: Sequence[str | os.PathLike] = (),
) -> list[Job]:
    """Map input photos (files and folders) to output paths.

    A single input file with ``out`` ending in a supported image suffix writes exactly ``out``; another suffix is
    an error. Otherwise ``out`` is a folder (a trailing slash always means one): each photo keeps its name (and,
    with ``recursive``, its path relative to the input folder, the output folder itself left out of the walk);
    ``fmt`` (e.g. ``"png"``) changes the suffix (a camera RAW input gets :data:`RAW_OUTPUT_SUFFIX` without it). ``recipes``: each job also writes ``<stem>.recipe.json`` beside
    its output. An output that would replace its own input, or a file in ``protect`` (e.g. the recipe being
    rendered), is refused unless ``overwrite``; two inputs mapping to the same output (or recipe) is an error, and
    so is an output name longer than :data:`~deepexposure.atomic.NAME_MAX` bytes (before any photo is written).
    """
    out_text = os.fspath(out)
    if not out_text.strip():  # an unset shell variable: the photos would land in the working folder
        raise PhotoError("-o is empty: give an output file or folder (-o . for the current folder)")
    out = Path(out_text)
    roots = [Path(p) for p in inputs]
    if not roots:
        raise PhotoError("no input photos given")
    for p in (*roots, out):
        _check_name_lengths(p)
    out_key = _resolve(out)
    pairs: list[tuple[Path, Path]] = []  # (src, relative dst)
    for root in roots:
        if root.is_dir():
            real_root = _resolve(root)
            inner = [out_key] if out_key != real_root and out_key.is_relative_to(real_root) else []
            found = iter_photo_paths([root], recursive=recursive, exclude=inner)
            if not found and not recursive and iter_photo_paths([root], recursive=True, exclude=inner):
                raise PhotoError(f"no photos directly in {root}, only in its sub-folders: use -r (--recursive)")
            for src in found:
                pairs.append((src, src.relative_to(root)))
        else:
            for src in iter_photo_paths([root]):
                pairs.append((src, Path(src.name)))
    if not pairs:
        raise PhotoError(f"no photos found in {', '.join(map(str, roots))} "
                         f"(formats read: {', '.join(sorted(SUPPORTED_EXTENSIONS))} and camera RAW)")
    single_file = not _out_is_folder(out_text, len(pairs), len(roots) == 1 and not roots[0].is_dir())
    protected = {_resolve(Path(p)): Path(p) for p in protect}
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for src, rel in pairs:
        if single_file:
            dst = out
        else:
            dst = out / rel
            if fmt:
                dst = dst.with_suffix("." + fmt.lower().lstrip("."))
            elif dst.suffix.lower() in RAW_EXTENSIONS:
                dst = dst.with_suffix(RAW_OUTPUT_SUFFIX)
        job = Job(src, dst, recipe_path_for(dst) if recipes else None)
        for target in job.outputs:
            if len(os.fsencode(target.name)) > NAME_MAX:
                raise PhotoError(f"{target}: a file name of {len(os.fsencode(target.name))} bytes, longer than the "
                                 f"{NAME_MAX} file systems allow (rename {src.name}"
                                 f"{', or leave out --recipe' if target == job.recipe else ''})")
            key = _resolve(target)
            if key in seen:
                raise PhotoError(f"{seen[key]} and {src} would both be written to {target}; "
                                 f"process them in separate runs or to separate folders")
            seen[key] = src
            if key in protected and not overwrite:
                raise PhotoError(f"refusing to overwrite the input {protected[key]} with {target} "
                                 f"(choose another -o, or pass --overwrite)")
        if _resolve(dst) == _resolve(src) and not overwrite:
            raise PhotoError(f"refusing to overwrite the input {src} (pass --overwrite to allow it)")
        jobs.append(job)
    return jobs


def plan_beside(inputs: Sequence[str | os.PathLike], outputs_of: Callable[[Path], Sequence[Path]], *,
                recursive: bool = False, recipes: bool = False) -> list[Job]:
    """Jobs whose outputs lie beside each input photo (``enhance --sidecar`` without ``-o``): ``dst`` is the first
    of ``outputs_of(src)``, ``recipe`` (with ``recipes``) ``<stem>.recipe.json`` beside the photo. Two photos
    mapping to one recipe (``a.CRW`` and ``a.jpg``) is an error before anything is written."""
    roots = [Path(p) for p in inputs]
    if not roots:
        raise PhotoError("no input photos given")
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for root in roots:
        _check_name_lengths(root)
        found = iter_photo_paths([root], recursive=recursive)
        if root.is_dir() and not found and not recursive and iter_photo_paths([root], recursive=True):
            raise PhotoError(f"no photos directly in {root}, only in its sub-folders: use -r (--recursive)")
        for src in found:
            job = Job(src, Path(outputs_of(src)[0]), recipe_path_for(src) if recipes else None)
            for target in job.outputs:
                if len(os.fsencode(target.name)) > NAME_MAX:
                    raise PhotoError(f"{target}: a file name longer than the {NAME_MAX} bytes file systems allow")
                key = _resolve(target)
                if key in seen and seen[key] != src:
                    raise PhotoError(f"{seen[key]} and {src} would both be written to {target}; "
                                     f"process them in separate runs")
                seen[key] = src
            jobs.append(job)
    if not jobs:
        raise PhotoError(f"no photos found in {', '.join(map(str, roots))} "
                         f"(formats read: {', '.join(sorted(SUPPORTED_EXTENSIONS))} and camera RAW)")
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


# ------------------------------------------------------------------------------------------ worker processes


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_init(parent: int, warnings_to_log: bool) -> None:
    """Worker set-up: exit as soon as the parent dies (killed, crashed), and route warnings as the parent does.

    Linux: the kernel kills the worker when its parent dies (PR_SET_PDEATHSIG); everywhere, a thread polls the
    parent pid (an orphan is re-parented) and exits the worker within a second.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    keep_freed_memory()
    if warnings_to_log:
        from deepexposure.logs import route_warnings

        route_warnings()


_DIED = "a worker process died while processing it (killed, or out of memory: try fewer --jobs)"


def _run_parallel(todo: list[Job], fn: Callable[[Job], None], workers: int,
                  record: Callable[[Job, str | None], None]) -> None:
    """Run jobs in ``workers`` spawned processes, at most ``2 * workers`` in flight.

    A worker that dies (SIGKILL, out of memory) breaks the pool: the results already in are kept, and the jobs
    that were in flight are retried one at a time in a fresh one-worker pool, so that a job that kills its
    worker again is the one failed, and the others are done. Then the remaining jobs go on in parallel.
    """
    import multiprocessing  # here: a one-process run does not pay for their import (start-up time)
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from deepexposure.logs import warnings_routed

    queue, retry = deque(todo), deque()
    ctx = multiprocessing.get_context("spawn")  # not fork: forking after torch/OpenCV thread pools can deadlock
    while queue or retry:
        isolated = bool(retry)
        source = retry if isolated else queue
        limit = 1 if isolated else 2 * workers
        pool = ProcessPoolExecutor(max_workers=1 if isolated else min(workers, len(source)), mp_context=ctx,
                                   initializer=_worker_init, initargs=(os.getpid(), warnings_routed()))
        pending: dict = {}
        lost: list[Job] = []
        try:
            while source or pending:
                while source and len(pending) < limit:
                    job = source.popleft()
                    try:
                        pending[pool.submit(_run_one, fn, job)] = job
                    except BrokenProcessPool:
                        source.appendleft(job)
                        raise
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut.exception() is not None:  # BrokenProcessPool: a worker died; handled below
                        raise BrokenProcessPool(str(fut.exception()))
                    record(pending.pop(fut), fut.result())
        except BrokenProcessPool:
            for fut, pjob in pending.items():
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    record(pjob, fut.result())
                else:
                    lost.append(pjob)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        for job in lost:
            if isolated:  # it was alone in its pool: it killed its worker
                record(job, f"{job.src}: {_DIED}")
            else:
                retry.append(job)


def _tick(bar, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        bar.refresh()


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

    A job with several outputs (photo and recipe) is skipped only when all exist; with some missing it runs, and
    ``fn`` (given ``skip_existing``) writes only the missing ones. ``fn`` must be picklable (a module-level
    function or ``functools.partial`` of one) when ``workers > 1``. At most ``2 * workers`` photos are in flight,
    so memory stays bounded for folders of any size; workers exit when this process dies. A single photo gets a
    progress line too (its elapsed time ticks). Stale temporary files of killed runs are removed from every
    output folder (:mod:`deepexposure.atomic`). The process (the command line's) and its workers keep the memory
    they free for the next photo (:func:`keep_freed_memory`).
    """
    keep_freed_memory()
    jobs = list(jobs)
    for folder in sorted({job.dst.parent for job in jobs}):
        if folder.is_dir():
            clean_stale(folder)
    result = BatchResult()
    todo: list[Job] = []
    for job in jobs:
        folders = [p for p in job.outputs if p.is_dir()]
        if folders:  # never replaced, even with overwrite: fail before the photo is written without its recipe
            result.failed.append((job.src, f"{folders[0]}: a folder is in the way of this output"))
            continue
        existing = [p for p in job.outputs if p.exists() or p.is_symlink()]
        if existing and not overwrite:
            if skip_existing:
                if len(existing) == len(job.outputs):
                    result.skipped.append(job.src)
                    continue
            else:
                result.failed.append((job.src, f"{existing[0]} exists (pass --overwrite or --skip-existing)"))
                continue
        todo.append(job)
    from tqdm import tqdm  # the console bar (tqdm.auto would also import asyncio: start-up time)

    bar = tqdm(total=len(todo), desc=desc, unit="photo", disable=not progress or not todo, leave=False)
    stop = threading.Event()
    if progress and len(todo) == 1 and not bar.disable:  # one large photo: show that it is being worked on
        bar.set_postfix_str(todo[0].src.name, refresh=True)
        if sys.stderr.isatty():  # the elapsed time ticks (not in logs: a line per tick)
            threading.Thread(target=_tick, args=(bar, stop), daemon=True).start()

    def record(job: Job, err: str | None) -> None:
        if err is None:
            result.done.append(job.src)
        else:
            result.failed.append((job.src, err))  # reported once, in the summary (cli.common.report)
        bar.update(1)

    try:
        if workers <= 1 or len(todo) < 2:
            for job in todo:
                record(job, _run_one(fn, job))
        else:
            _run_parallel(todo, fn, workers, record)
    finally:
        stop.set()
        bar.close()
    return result
