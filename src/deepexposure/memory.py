"""How the processes that work through photos use memory (issue 23): glibc and Linux only, a no-op elsewhere.

A page of fresh memory costs a fault on its first touch: 3-6 us on the 2-core VM this was measured on, 80,000 of
them inside a 12 MP fusion. Two habits cut that cost, for the command line's process and its workers (never for a
library caller, whose allocator is its own business):

* :func:`keep_freed_memory`: memory freed after one photo is kept for the next (no ``mmap`` for large blocks, no
  heap trimming), so a folder of photos is faulted in once.
* :func:`prefault`: the memory a photo will need is paged in ahead, by one ``madvise(MADV_POPULATE_WRITE)`` on a
  background thread (about half the cost per page, on a core that is otherwise idle while the interpreter imports
  and the photo decodes), and the photo's arrays are then carved from pages that are in.

Written with ``ctypes`` and no numpy, so that the command line can start it before its heavy imports.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path

__all__ = ["available_memory", "keep_freed_memory", "prefault"]

_KEEP_FREED = False
_MADV_POPULATE_WRITE = 23  # Linux 5.14; EINVAL before: nothing is done
_MIN_BYTES = 16 << 20
_MAX_BYTES = 1 << 30  # far below the trim threshold keep_freed_memory sets, so a freed block stays mapped


def keep_freed_memory() -> bool:
    """Make this process keep the memory it frees for its next allocations (glibc: no ``mmap`` for large blocks,
    no trimming of the heap), instead of returning every freed photo-sized array to the kernel and having the next
    one zeroed and faulted in again, page by page. For the processes that work through photos (the command line's,
    its workers): one 12 MP ``render`` touches about 780 MB of fresh pages for a 500 MB peak, a folder of them
    three times as many page faults (6 photos of 12 MP, 218,000 page faults -> 44,000, 2.4-3.5 s of system time
    -> 1.2-1.8 s). The process keeps its peak size until it exits. False where this is not glibc."""
    global _KEEP_FREED
    if _KEEP_FREED or not sys.platform.startswith("linux"):
        return _KEEP_FREED
    try:
        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_max = -1, -4
        _KEEP_FREED = bool(libc.mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
                           and libc.mallopt(m_mmap_max, ctypes.c_int(0)))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        _KEEP_FREED = False
    return _KEEP_FREED


def available_memory() -> int | None:
    """Bytes this process can still allocate: the smaller of the system's available memory and the cgroup
    (container) headroom; None where neither can be read (non-Linux)."""
    found: list[int] = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            lim = Path(limit).read_text().strip()
            if lim.isdigit() and int(lim) < 1 << 60:
                found.append(max(0, int(lim) - int(Path(usage).read_text().strip())))
            break
        except (OSError, ValueError):
            continue
    return min(found) if found else None


#: Bytes paged in by one madvise call: the call holds the process's memory-map lock, which every mmap, brk and
#: dlopen of the other threads waits for (one call for 288 MB blocked an import in the main thread for 71 ms).
_CHUNK_BYTES = 8 << 20


def _populate(libc: ctypes.CDLL, start: int, length: int) -> None:
    """madvise(MADV_POPULATE_WRITE) over [start, start + length) in :data:`_CHUNK_BYTES` steps; stops at the first
    failure (an old kernel: EINVAL)."""
    for off in range(0, length, _CHUNK_BYTES):
        if libc.madvise(start + off, min(_CHUNK_BYTES, length - off), _MADV_POPULATE_WRITE):
            return


def prefault(nbytes: int) -> threading.Thread | None:
    """Have the next ``nbytes`` (at most 1 GB, and a quarter of the available memory) of this process's
    allocations land on memory that is paged in: the block is taken from the heap and given back at once (kept:
    :func:`keep_freed_memory`), and a background thread (returned) pages it in while this one goes on. A no-op
    (None) below 16 MB, where memory is not kept (not glibc), or on kernels before 5.14. The pages stay the
    process's own; nothing is read or written in them."""
    avail = available_memory()
    nbytes = min(int(nbytes), _MAX_BYTES, avail // 4 if avail else _MAX_BYTES)
    if nbytes < _MIN_BYTES or not keep_freed_memory():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    block = libc.malloc(nbytes)
    if not block:
        return None
    start = (block + 4095) & ~4095
    length = (block + nbytes - start) & ~4095
    libc.free(block)  # back on the heap, still mapped (never trimmed): the next allocations reuse it
    thread = threading.Thread(target=_populate, args=(libc, start, length), daemon=True, name="prefault")
    thread.start()
    return thread
