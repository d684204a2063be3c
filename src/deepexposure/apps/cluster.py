"""Batch enhancement on a Dask distributed cluster (``deepexposure enhance ... --cluster ADDRESS``).

The per-photo work is the local one (:func:`deepexposure.apps.pipeline.enhance_file`, which builds its
:class:`~deepexposure.inference.enhance.Enhancer` once per worker process), so the outputs are byte for byte those of a
local run. The guarantees are the local ones: a failing photo is reported and the others go on; existing outputs
are refused, skipped (``--skip-existing``, so a stopped run is resumed) or replaced (``--overwrite``); nothing
is ever half-written under a final name; a progress bar, then the summary of :func:`deepexposure.apps.cli.common.report`.

Where the photos live: local paths (on a file system every worker sees at the same path, e.g. NFS) or any fsspec
URL the workers can open (``s3://bucket/in``, ``gs://...``, ``file:///...``; credentials come from each worker's
environment, as fsspec reads them). A local output is written through :mod:`deepexposure.atomic`; a remote one
is rendered into a local scratch folder on the worker, uploaded under a temporary name of the
:mod:`deepexposure.atomic` scheme beside its final name, then moved into place (on object stores the upload of
one object is itself all-or-nothing).

A worker that dies (killed, out of memory, its machine gone) loses the photos it was processing: the Dask
scheduler gives them to another worker. A photo whose output already exists when its task is retried is not
written again (its first, complete write is kept), so a photo is never reported twice or left half-done; a photo
that kills ``distributed.scheduler.allowed-failures + 1`` workers (Dask's default: 4) is reported as failed.
At most a few tasks per worker thread are queued at the scheduler at a time, so a million photos cost no more
scheduler memory than a thousand.

Needs the ``cluster`` extra (``pip install 'deepexposure[cluster]'``: Dask distributed, fsspec, and s3fs for
``s3://`` URLs); without it :func:`require_dask` raises one clear line, and so does :func:`url_to_fs` for a URL
whose back end is missing or whose protocol is unknown.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deepexposure.apps.batch import BatchResult, Job, _out_is_folder, _run_one, plan_jobs, recipe_path_for
from deepexposure.atomic import clean_stale, is_temp_name, temp_path
from deepexposure.errors import DeepExposureError, PhotoError, need_extra
from deepexposure.image.io import SUPPORTED_EXTENSIONS

__all__ = ["UrlJob", "require_dask", "url_to_fs", "connect", "plan_url_jobs", "run_cluster", "enhance_on_cluster",
           "is_url"]

#: Tasks in flight per worker thread (queued at the scheduler or running).
TASKS_PER_THREAD = 4


class ClusterError(DeepExposureError):
    """The cluster cannot be used: the engine is not installed, the scheduler cannot be reached or was lost."""


def require_dask() -> None:
    """Raise :class:`ClusterError` (one line) when Dask distributed or fsspec is not installed."""
    try:
        import distributed  # noqa: F401 - only checking that it is there
        import fsspec  # noqa: F401
    except ImportError:
        raise ClusterError("--cluster needs the cluster extra (Dask distributed is not installed): "
                           "pip install 'deepexposure[cluster]'") from None


#: fsspec protocols whose back end the ``cluster`` extra installs: (module, protocols).
_CLUSTER_BACKENDS = (("s3fs", ("s3", "s3a")),)


def url_to_fs(text: str):
    """``fsspec.core.url_to_fs(text)``; an unknown protocol or a back end that is not installed raises
    :class:`ClusterError` (one line: what to install) instead of fsspec's ValueError / ImportError."""
    import fsspec

    proto = text.split("://", 1)[0].lower() if is_url(text) else "file"
    for module, protocols in _CLUSTER_BACKENDS:
        if proto in protocols:
            try:
                need_extra(module, f"{text}: reading or writing {proto}:// URLs", extra="cluster")
            except DeepExposureError as exc:
                raise ClusterError(str(exc)) from None
    try:
        return fsspec.core.url_to_fs(text)
    except ImportError as exc:  # e.g. "Install gcsfs to access Google Storage"
        raise ClusterError(f"{text}: {proto}:// URLs need a package that is not installed ({exc})") from None
    except ValueError as exc:
        if "protocol not known" not in str(exc).lower():
            raise PhotoError(f"{text}: not a usable URL ({exc})") from None
        raise PhotoError(f"{text}: unknown URL protocol {proto}:// (not one fsspec knows, such as file://, s3://, "
                         f"gs://, https://)") from None


def is_url(text: str | os.PathLike) -> bool:
    """True for an fsspec URL (``proto://...``), ``file://`` included; False for a plain path."""
    return "://" in os.fspath(text)


@dataclass(frozen=True)
class UrlJob:
    """One photo to enhance: ``src`` and ``dst`` (and the recipe sidecar) as absolute local paths or URLs."""

    src: str
    dst: str
    recipe: str | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.dst,) if self.recipe is None else (self.dst, self.recipe)


# ------------------------------------------------------------------------------------------------- planning


def _local(text: str) -> str | None:
    """The local path of ``text`` (a plain path or a ``file://`` URL), else None."""
    if not is_url(text):
        return text

    fs, path = url_to_fs(text)
    return path if _is_local_fs(fs) else None


def _is_local_fs(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def plan_url_jobs(inputs: Sequence[str], out: str, *, recursive: bool = False, fmt: str | None = None,
                  overwrite: bool = False, recipes: bool = False) -> list[UrlJob]:
    """Map input photos (files and folders, local or URLs) to outputs, with the rules of
    :func:`deepexposure.apps.batch.plan_jobs` (which does the work when everything is local)."""
    if not inputs:
        raise PhotoError("no input photos given")
    local_in = [_local(os.fspath(p)) for p in inputs]
    local_out = _local(os.fspath(out))
    if all(p is not None for p in local_in) and local_out is not None:
        keep_slash = "/" if os.fspath(out).endswith("/") and not local_out.endswith("/") else ""
        jobs = plan_jobs(local_in, local_out + keep_slash, recursive=recursive, fmt=fmt, overwrite=overwrite,
                         recipes=recipes)
        return [UrlJob(str(j.src.absolute()), str(j.dst.absolute()),
                       None if j.recipe is None else str(j.recipe.absolute())) for j in jobs]
    return _plan_remote([os.fspath(p) for p in inputs], os.fspath(out), recursive=recursive, fmt=fmt,
                        overwrite=overwrite, recipes=recipes)


def _plan_remote(inputs: list[str], out: str, *, recursive: bool, fmt: str | None, overwrite: bool,
                 recipes: bool) -> list[UrlJob]:

    pairs: list[tuple[str, str]] = []  # (source URL, relative output path)
    single_file = False
    for text in inputs:
        fs, root = url_to_fs(text)
        try:
            is_dir = fs.isdir(root)
            exists = is_dir or fs.exists(root)
        except Exception as exc:  # noqa: BLE001 - any fsspec back end error
            raise PhotoError(f"{text}: cannot list ({type(exc).__name__}: {exc})") from None
        if not exists:
            raise PhotoError(f"{text}: no such file or folder")
        if is_dir:
            base = root.rstrip("/")
            found = fs.find(base) if recursive else [p for p in fs.ls(base, detail=False) if fs.isfile(p)]
            photos = sorted(p for p in found if PurePosixPath(p).suffix.lower() in SUPPORTED_EXTENSIONS
                            and not any(part.startswith(".") for part in PurePosixPath(p).relative_to(base).parts))
            if not photos and not recursive and fs.find(base):
                raise PhotoError(f"no photos directly in {text}, only in its sub-folders: use -r (--recursive)")
            pairs += [(fs.unstrip_protocol(p), str(PurePosixPath(p).relative_to(base))) for p in photos]
        else:
            if PurePosixPath(root).suffix.lower() not in SUPPORTED_EXTENSIONS:
                raise PhotoError(f"{text}: not a supported photo ({', '.join(sorted(SUPPORTED_EXTENSIONS))})")
            pairs.append((fs.unstrip_protocol(root) if is_url(text) else str(Path(text).absolute()),
                          PurePosixPath(root).name))
            single_file = len(inputs) == 1
    if not pairs:
        raise PhotoError(f"no photos found in {', '.join(inputs)} (formats read: {', '.join(sorted(SUPPORTED_EXTENSIONS))})")
    out_fs, out_root = url_to_fs(out)
    folder = out.endswith("/") or out_fs.isdir(out_root) or _out_is_folder(out, len(pairs), single_file)
    base = out_fs.unstrip_protocol(out_root.rstrip("/")) if is_url(out) else str(Path(out).absolute())
    jobs, seen = [], {}
    for src, rel in pairs:
        dst = base.rstrip("/") + "/" + rel if folder else base
        if folder and fmt:  # (string surgery: a URL is no path for pathlib)
            dst = dst[: len(dst) - len(PurePosixPath(dst).suffix)] + "." + fmt.lower().lstrip(".")
        recipe = None
        if recipes:
            p = PurePosixPath(dst)
            recipe = dst[: len(dst) - len(p.name)] + p.stem + ".recipe.json"
        job = UrlJob(src, dst, recipe)
        for target in job.outputs:
            if target in seen:
                raise PhotoError(f"{seen[target]} and {src} would both be written to {target}; "
                                 f"process them in separate runs or to separate folders")
            seen[target] = src
        if dst == src and not overwrite:
            raise PhotoError(f"refusing to overwrite the input {src} (pass --overwrite to allow it)")
        jobs.append(job)
    return jobs


# ----------------------------------------------------------------------------------------- on the workers


def _put(local: Path, url: str, *, overwrite: bool) -> None:
    """Upload ``local`` to ``url`` under a temporary name beside it, then move it into place."""

    fs, path = url_to_fs(url)
    if not overwrite and fs.exists(path):
        raise PhotoError(f"{url}: already exists (pass --overwrite to replace it)")
    tmp = str(temp_path(path))
    try:
        fs.put_file(str(local), tmp)
        fs.mv(tmp, path)
    except BaseException:
        try:
            if fs.exists(tmp):
                fs.rm(tmp)
        except Exception:  # noqa: BLE001 - the original error matters
            pass
        raise


def _exists(url: str) -> bool:

    fs, path = url_to_fs(url)
    return fs.exists(path)


def enhance_url(job: UrlJob, options: dict, *, overwrite: bool) -> str | None:
    """Enhance one photo on a worker; None on success, else its one-line error (never raises for a bad photo).

    ``options``: keyword arguments of :func:`deepexposure.apps.pipeline.enhance_file` (model, look, renderer, strength,
    device, bit_depth, max_pixels). A photo whose outputs already exist (a retried task whose first attempt
    finished writing) is not written again.
    """
    from deepexposure.apps.pipeline import enhance_file

    kw = {**options, "overwrite": overwrite, "skip_existing": not overwrite}
    src, dst = _local(job.src), _local(job.dst)
    recipe = None if job.recipe is None else _local(job.recipe)
    if src is not None and dst is not None and (job.recipe is None or recipe is not None):
        return _run_one(lambda j: enhance_file(j, **kw), Job(Path(src), Path(dst), None if recipe is None
                                                                else Path(recipe)))
    local_out = dst is not None and (job.recipe is None or recipe is not None)
    if not local_out and not overwrite and all(_exists(u) for u in job.outputs):
        return None  # a retried task whose first attempt finished
    with tempfile.TemporaryDirectory(prefix="deepexposure-") as scratch:
        s = Path(scratch)
        local_src = Path(src) if src is not None else s / "in" / PurePosixPath(job.src).name
        if local_out:  # written in place, atomically (deepexposure.atomic)
            staged = Job(local_src, Path(dst), None if recipe is None else Path(recipe))
        else:  # written here, then uploaded
            out_name = PurePosixPath(job.dst).name
            staged = Job(local_src, s / "out" / out_name,
                         recipe_path_for(s / "out" / out_name) if job.recipe else None)

        def work(j: Job) -> None:
            import fsspec

            if src is None:
                local_src.parent.mkdir()
                with fsspec.open(job.src, "rb") as fh, open(local_src, "wb") as out:
                    while block := fh.read(1 << 22):
                        out.write(block)
            if local_out:
                enhance_file(j, **kw)
                return
            enhance_file(j, **{**kw, "overwrite": False, "skip_existing": False})
            for final, made in zip(job.outputs, j.outputs, strict=True):
                if not overwrite and _exists(final):  # a retried task: its first write is kept
                    continue
                _put(made, final, overwrite=overwrite)

        err = _run_one(work, staged)
    if err is not None:
        err = err.replace(str(local_src), job.src)
        if not local_out:
            err = err.replace(str(staged.dst), job.dst)
    return err


# ------------------------------------------------------------------------------------------------ the client


def connect(address: str, *, timeout_s: float = 30.0):
    """A ``distributed.Client`` for ``address``: a scheduler address (``tcp://host:8786``) or a scheduler file
    (JSON, as written by ``dask scheduler --scheduler-file``). Raises :class:`ClusterError` when unreachable."""
    require_dask()
    from distributed import Client

    if address.lower().endswith(".json") and not Path(address).is_file():
        raise ClusterError(f"--cluster {address}: no such scheduler file (written by dask scheduler "
                           f"--scheduler-file FILE); or give the scheduler address, tcp://host:8786")
    box: dict = {}

    def make() -> None:  # in a thread: a server that accepts but never answers would hang Client() for minutes
        try:
            if address.endswith(".json") and Path(address).is_file():
                box["client"] = Client(scheduler_file=address, timeout=timeout_s)
            else:
                box["client"] = Client(address, timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001 - reported below
            box["error"] = exc

    t = threading.Thread(target=make, daemon=True, name="dask-connect")
    t.start()
    t.join(timeout_s + 10)
    if "client" not in box:
        exc = box.get("error")
        why = (f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}" if exc is not None
               else f"no Dask answer within {timeout_s + 10:g} s")
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({why})")
    client = box["client"]
    return client


def _existing(urls: Sequence[str]) -> set[str]:
    """Which of ``urls`` exist: local ones by stat, remote ones by one listing per output folder."""

    found: set[str] = set()
    by_folder: dict[str, list[str]] = {}
    for u in urls:
        local = _local(u)
        if local is not None:
            if os.path.lexists(local):
                found.add(u)
        else:
            by_folder.setdefault(u.rsplit("/", 1)[0], []).append(u)
    for folder, members in by_folder.items():
        fs, path = url_to_fs(folder)
        try:
            listed = {fs.unstrip_protocol(p) for p in fs.ls(path, detail=False)} if fs.isdir(path) else set()
        except FileNotFoundError:
            listed = set()
        found.update(u for u in members if u in listed)
    return found


def _clean_outputs(jobs: Sequence[UrlJob], before: set[str]) -> None:
    """Remove the temporaries that killed workers left in the output folders (local: :func:`clean_stale`;
    remote: the temporary objects of the :mod:`deepexposure.atomic` scheme that appeared during this run)."""

    folders = {j.dst.rsplit("/", 1)[0] for j in jobs} | {j.recipe.rsplit("/", 1)[0] for j in jobs if j.recipe}
    for folder in sorted(folders):
        local = _local(folder)
        if local is not None:
            if os.path.isdir(local):
                clean_stale(local, force=True)
            continue
        fs, path = url_to_fs(folder)
        try:
            for p in fs.ls(path, detail=False):
                if is_temp_name(PurePosixPath(p).name) and fs.unstrip_protocol(p) not in before:
                    fs.rm(p)
        except (FileNotFoundError, OSError):
            pass


def _temps(jobs: Sequence[UrlJob]) -> set[str]:

    out: set[str] = set()
    for folder in {j.dst.rsplit("/", 1)[0] for j in jobs if _local(j.dst) is None}:
        fs, path = url_to_fs(folder)
        try:
            out |= {fs.unstrip_protocol(p) for p in fs.ls(path, detail=False) if is_temp_name(PurePosixPath(p).name)}
        except (FileNotFoundError, OSError):
            pass
    return out


def run_cluster(jobs: Sequence[UrlJob], client, options: dict, *, overwrite: bool = False,
                skip_existing: bool = False, progress: bool = True, desc: str = "photos") -> BatchResult:
    """Enhance ``jobs`` on the workers of ``client`` (see the module doc); the same result as
    :func:`deepexposure.apps.batch.run_batch` with :func:`deepexposure.apps.pipeline.enhance_file`."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm.auto import tqdm

    result = BatchResult()
    existing = _existing([u for j in jobs for u in j.outputs])
    todo: list[UrlJob] = []
    for job in jobs:
        have = [u for u in job.outputs if u in existing]
        if have and not overwrite:
            if skip_existing:
                if len(have) == len(job.outputs):
                    result.skipped.append(job.src)
                    continue
            else:
                result.failed.append((job.src, f"{have[0]} exists (pass --overwrite or --skip-existing)"))
                continue
        todo.append(job)
    temps_before = _temps(todo)
    bar = tqdm(total=len(todo), desc=desc, unit="photo", disable=not progress or not todo, leave=False)
    token = f"{os.getpid()}-{time.time_ns()}"
    queue = list(reversed(list(enumerate(todo))))
    pending: dict = {}

    def window() -> int:
        try:
            threads = sum(client.nthreads().values())
        except Exception:  # noqa: BLE001 - keep the last size
            threads = 1
        return max(2, TASKS_PER_THREAD * max(1, threads))

    def submit(ac) -> None:
        i, job = queue.pop()
        fut = client.submit(enhance_url, job, options, overwrite=overwrite, key=f"deepexposure-enhance-{token}-{i}",
                            pure=False)
        pending[fut.key] = job
        ac.add(fut)

    try:
        ac = as_completed()
        limit = window()
        while queue and len(pending) < limit:
            submit(ac)
        done_count = 0
        for fut in ac:
            job = pending.pop(fut.key)
            try:
                err = fut.result()
            except KilledWorker:
                err = (f"{job.src}: workers died while processing it (killed, or out of memory: give the workers "
                       f"more memory or fewer threads)")
            except Exception as exc:  # noqa: BLE001 - an unexpected error in one photo is that photo's failure
                if fut.status == "cancelled" or client.status != "running":
                    raise ClusterError(f"lost the connection to the Dask scheduler ({type(exc).__name__}); the "
                                       f"outputs written so far are complete: rerun with --skip-existing") from None
                err = f"{job.src}: {type(exc).__name__}: {exc}"
            fut.release()
            if err is None:
                result.done.append(job.src)
            else:
                result.failed.append((job.src, err))
            bar.update(1)
            done_count += 1
            if done_count % 64 == 0:
                limit = window()
            while queue and len(pending) < limit:
                submit(ac)
    finally:
        bar.close()
        _clean_outputs(todo, temps_before)
    return result


def enhance_on_cluster(photos: Sequence[str], out: str, address: str, *, model: str | None = None,
                       renderer: str | None = None, strength: float = 1.0, look: str | None = None, device: str | None = None, bit_depth: int | None = None,
                       max_pixels: int | None = None, recursive: bool = False, fmt: str | None = None,
                       overwrite: bool = False, skip_existing: bool = False, recipes: bool = False,
                       highlight_guard: bool = True, progress: bool = True,
                       client=None) -> tuple[BatchResult, list[UrlJob]]:
    """``deepexposure enhance --cluster``: plan, connect (unless ``client`` is given), run; returns the result and
    the jobs (for the summary). ``max_pixels`` None: each worker's default (:func:`deepexposure.image.io.default_max_pixels`
    of its own free memory and threads)."""
    require_dask()
    jobs = plan_url_jobs(photos, out, recursive=recursive, fmt=fmt, overwrite=overwrite, recipes=recipes)
    if model is not None and model not in ("natural", "paper") and not is_url(model):
        model = str(Path(model).absolute())  # workers do not share our working directory
    if look is not None and look not in ("natural", "expert"):
        look = str(Path(look).absolute())
    options = {"model": model, "renderer": renderer, "strength": strength, "device": device, "bit_depth": bit_depth,
               "highlight_guard": highlight_guard, "look": look}
    if max_pixels is not None:
        options.update(max_pixels=max_pixels, max_pixels_why="--max-pixels")
    own = client is None
    logs = [logging.getLogger(n) for n in ("distributed", *list(logging.root.manager.loggerDict))
            if n.startswith("distributed")]
    levels = [log.level for log in logs]
    if own:  # our one-line errors say what went wrong; Dask's client-side tracebacks only repeat it
        for log in logs:
            log.setLevel(logging.CRITICAL)
        client = connect(address)
    try:
        _check_workers(client)
        return run_cluster(jobs, client, options, overwrite=overwrite, skip_existing=skip_existing,
                           progress=progress, desc="enhance"), jobs
    finally:
        if own:
            client.close()
            for log, level in zip(logs, levels, strict=True):
                log.setLevel(level)


def _worker_version() -> str:
    import deepexposure

    return deepexposure.__version__


def _check_workers(client) -> None:
    """Every worker (now) imports the same deepexposure version as this client."""
    import deepexposure

    if not client.nthreads():
        raise ClusterError("the Dask cluster has no workers (start some: dask worker SCHEDULER_ADDRESS)")
    try:
        versions = client.run(_worker_version)
    except Exception as exc:  # noqa: BLE001 - e.g. ModuleNotFoundError on the workers
        raise ClusterError(f"the Dask workers cannot run deepexposure ({type(exc).__name__}: {exc}); install it "
                           f"on every worker: pip install 'deepexposure[cluster]'") from None
    wrong = sorted(f"{addr} has {v}" for addr, v in versions.items() if v != deepexposure.__version__)
    if wrong:
        raise ClusterError(f"the Dask workers run another deepexposure version than this client "
                           f"({deepexposure.__version__}): {'; '.join(wrong)}")
