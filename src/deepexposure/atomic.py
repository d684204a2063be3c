"""Atomic writes: the one place where deepexposure turns bytes into a file under its final name.

Every file (photo, recipe, thumbnail, report, policy, checkpoint, cache, JSON) is written to a hidden temporary
file in the destination folder, flushed, fsynced and renamed into place, so a reader never sees a half-written
file under a final name. Temporary names follow one scheme::

    .<final name>.deepexposure-<host>-<pid>-<random>.tmp

(the final name cut short where the whole would pass 255 bytes, so that a final name of up to 255 bytes can be
written).
``<host>`` is 6 hex digits of a hash of the host name, ``<pid>`` the writing process. A write killed midway
(SIGKILL, power loss) leaves its temporary file behind; the first write of a later process into the same folder
removes the temporaries of this scheme whose writer is gone (same host, pid not running) or that are older than
:data:`STALE_AFTER_S`. Nothing else is ever removed: a user's file cannot match the scheme by accident unless it
copies it exactly. Staging folders (e.g. of ``make-pairs``) use the same
scheme.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["STALE_AFTER_S", "NAME_MAX", "temp_path", "is_temp_name", "clean_stale", "atomic_write", "atomic_write_bytes",
           "atomic_write_text", "fsync_dir", "blocked_by", "unwritable", "NotASmallFile", "read_small"]

#: A temporary file of another host (or of a live pid, which may be a reused one) is stale after this long.
STALE_AFTER_S = 6 * 3600
#: Longest file name in bytes (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units): temporary names keep within it.
NAME_MAX = 255
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TMP_RE = re.compile(r"^\..+\.deepexposure-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
_cleaned: set[tuple[int, str]] = set()  # (pid, folder) already cleaned by this process
_lock = threading.Lock()


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temporary name for ``path`` in its folder (see the module docstring for the scheme).

    The final name in it is shortened (whole characters dropped from its end) so that the temporary name keeps
    within :data:`NAME_MAX` bytes: a final name of up to 255 bytes can be written.
    """
    path = Path(path)
    tail = f".deepexposure-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    name, room = path.name, NAME_MAX - 1 - len(tail)
    if len(os.fsencode(name)) > room:
        cut = os.fsencode(name)[:room].decode("utf-8", "ignore") or "x"
        while len(os.fsencode(cut)) > room:  # a name not in UTF-8: drop characters until it fits
            cut = cut[:-1] or "x"
        name = cut
    return path.with_name(f".{name}{tail}")


def is_temp_name(name: str) -> bool:
    """True for a name of this module's temporary-file scheme."""
    return _TMP_RE.match(name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but belongs to someone else (or cannot tell): assume alive
        return True
    return True


def _is_stale(entry: Path, now: float) -> bool:
    m = _TMP_RE.match(entry.name)
    if m is None:
        return False
    pid = int(m["pid"])
    if pid == os.getpid():
        return False
    try:
        age = now - entry.lstat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    return m["host"] == _HOST and not _pid_alive(pid)


def clean_stale(folder: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Remove the stale temporaries of this scheme (files or staging folders) directly in ``folder``.

    Done once per folder per process unless ``force``; errors are ignored (another process may be cleaning
    too). Returns the paths removed.
    """
    folder = Path(folder)
    key = (os.getpid(), os.path.abspath(folder))
    with _lock:
        if key in _cleaned and not force:
            return []
        _cleaned.add(key)
    removed: list[Path] = []
    now = time.time()
    try:
        entries = [e for e in folder.iterdir() if e.name.startswith(".") and ".deepexposure-" in e.name]
    except OSError:
        return removed
    for entry in entries:
        if not _is_stale(entry, now):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def blocked_by(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be created: the first ancestor that is a file or a broken / looping link, or None."""
    folder = Path(folder)
    for p in reversed([folder, *folder.parents]):
        if p.is_symlink() and not p.exists():
            return f"{p} is a broken or looping symbolic link"
        if p.exists() and not p.is_dir():
            return f"{p} is a file"
    return None


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why no file can be written in ``folder`` (made first if missing), or None: :func:`blocked_by`, else a probe
    (a temporary file of this module's scheme, removed at once) in the folder or, when it does not exist yet, in
    its nearest existing ancestor (a read-only folder or file system, no permission; also for root)."""
    folder = Path(folder)
    blocked = blocked_by(folder)
    if blocked:
        return blocked
    where = next(p for p in [folder, *folder.parents] if p.exists())
    probe = temp_path(where / "write-test")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return f"{where} is not writable ({exc.strerror or exc})"
    os.close(fd)
    with contextlib.suppress(OSError):
        probe.unlink()
    return None


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (POSIX); silently skipped where folders cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; without ``overwrite`` an existing ``path`` raises :class:`FileExistsError`."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:  # link fails if the destination appeared meanwhile: no race with another writer
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(17, "already exists", str(path)) from None
    except OSError:  # a file system without hard links
        if path.exists() or path.is_symlink():
            raise FileExistsError(17, "already exists", str(path)) from None
        os.replace(tmp, path)
    else:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object], *, overwrite: bool = True) -> Path:
    """Write a file atomically: ``write(fh)`` fills a binary temporary file, which then takes the name ``path``.

    The parent folder is created; stale temporaries in it are removed first (:func:`clean_stale`). Without
    ``overwrite`` an existing ``path`` (checked before and, race-free, at the rename) raises
    :class:`FileExistsError` and nothing is changed. On any failure the temporary file is removed and the
    exception propagates. Returns ``path``.
    """
    path = Path(path)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise FileExistsError(17, "already exists", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = temp_path(path)
    fh = open(tmp, "xb")  # noqa: SIM115 - "x": the user's umask (unlike mkstemp's 0o600), never clobbers
    try:
        with fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _commit(tmp, path, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda fh: fh.write(data), overwrite=overwrite)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """:func:`atomic_write` of UTF-8 ``text`` (newlines written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


class NotASmallFile(OSError):
    """:func:`read_small` refused a path: not a regular file (a FIFO, a device) or larger than its limit."""


def read_small(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the small regular file ``path`` (a look, a recipe): :class:`NotASmallFile` (its ``strerror``
    says why) for a FIFO or device (opened without blocking, never read: a FIFO would wait for a writer forever,
    /dev/zero never end) or a file over ``limit`` bytes (at most ``limit + 1`` bytes are ever read). Other
    failures are the usual :class:`OSError` (missing, a folder, no permission)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a folder", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotASmallFile(22, "not a regular file", str(path))
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise NotASmallFile(27, f"over {limit:,} bytes", str(path))
    return data
