"""Shared fixtures: real photos from ../shared/data (skipped with a reason when absent).

``DEEPEXPOSURE_SHARED_DATA`` points elsewhere, e.g. for a checkout that is not beside ``shared/``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPEXPOSURE_SHARED_DATA") or REPO.parent / "shared" / "data")


_NO_DATA = f"shared photo data not found at {SHARED_DATA} (set DEEPEXPOSURE_SHARED_DATA)"
_HOW = ("tests skipped: the shared photo data is not at {path}; put it there (see docs/data.md) or point "
        "DEEPEXPOSURE_SHARED_DATA=/path/to/shared/data at it, then rerun")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared development photos; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(_NO_DATA)
    return SHARED_DATA


def pytest_terminal_summary(terminalreporter) -> None:
    """One line saying why tests were skipped for lack of the shared data and how to run them (no -rs needed)."""
    skipped = terminalreporter.stats.get("skipped", [])
    n = sum(1 for rep in skipped if _NO_DATA in str(getattr(rep, "longrepr", "")))
    if n:
        terminalreporter.write_line(f"{n} " + _HOW.format(path=SHARED_DATA), yellow=True, bold=True)
    editors = {str(rep.longrepr[2]).removeprefix("Skipped: ") for rep in skipped
               if isinstance(getattr(rep, "longrepr", None), tuple) and len(rep.longrepr) == 3
               and "apt-get install darktable rawtherapee" in str(rep.longrepr[2])}
    for reason in sorted(editors):  # the sidecar tests that run the real RAW editors
        terminalreporter.write_line(f"sidecar tests skipped: {reason}", yellow=True, bold=True)
    for rep in skipped:  # the editor's browser test: say why it did not run
        longrepr = getattr(rep, "longrepr", "")
        text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        if "test_editor_browser" in str(getattr(rep, "nodeid", "")) or "browser test skipped" in text:
            reason = str(text).removeprefix("Skipped: ")
            line = reason if "browser test skipped" in reason else f"browser test skipped: {reason}"
            terminalreporter.write_line(line, yellow=True, bold=True)
