"""Warnings and log messages as one readable line each on stderr (the command line's set-up).

Library code reports recoverable problems with :func:`warnings.warn` (callers may filter or catch them) or the
``deepexposure.*`` loggers. :func:`route_warnings` sends both to stderr as ``warning: <message>``: no source path,
no code line, whatever module (ours, numpy's) raised the warning. The CLI calls it, and so do its worker processes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings

__all__ = ["route_warnings", "warnings_routed", "stage", "PROFILE_ENV"]

#: Set this environment variable to 1 and every :func:`stage` prints its wall time to stderr (``profile: <stage>
#: <seconds>``): where the time of one photo goes (benchmarks/end_to_end.py reads these lines).
PROFILE_ENV = "DEEPEXPOSURE_PROFILE"
_PROFILE = os.environ.get(PROFILE_ENV, "") not in ("", "0")

_LOG = logging.getLogger("deepexposure")
_routed = False


class _StderrHandler(logging.Handler):
    """One line per record on the current ``sys.stderr``, through ``tqdm.write`` so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001 - showwarning API
    text = " ".join(str(message).split())  # one line
    if not issubclass(category, UserWarning):
        text = f"{text} ({category.__name__})"
    logging.getLogger("deepexposure.warnings").warning("%s", text)


def route_warnings(level: int = logging.WARNING) -> None:
    """Show warnings and ``deepexposure`` log records (``level`` and above) as ``warning: ...`` lines on stderr."""
    global _routed
    if not _routed:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname_lower)s: %(message)s"))
        handler.addFilter(_lower_level)
        _LOG.addHandler(handler)
        _routed = True
    _LOG.setLevel(level)
    warnings.showwarning = _show


def _lower_level(record: logging.LogRecord) -> bool:
    record.levelname_lower = record.levelname.lower()
    return True


def warnings_routed() -> bool:
    """Whether :func:`route_warnings` ran in this process (worker processes then do the same)."""
    return _routed


@contextlib.contextmanager
def stage(name: str):
    """Time a stage of the pipeline (decode, model, render, style, encode) when :data:`PROFILE_ENV` is set; a no-op
    otherwise."""
    if not _PROFILE:
        yield
        return
    f0, t0 = _faults(), time.perf_counter()
    try:
        yield
    finally:
        print(f"profile: {name} {time.perf_counter() - t0:.4f} s {_faults() - f0} faults", file=sys.stderr, flush=True)


def _faults() -> int:
    """Page faults of this process so far (minor: a first touch of fresh memory; 0 where unknown)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
