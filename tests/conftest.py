"""Shared fixtures: real photos from ../shared/data (skipped with a reason when absent).

``DEEPEXPOSURE_SHARED_DATA`` points elsewhere, e.g. for a checkout that is not beside ``shared/``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DEEPEXPOSURE_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the shared development photos; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared photo data not found at {SHARED_DATA} (set DEEPEXPOSURE_SHARED_DATA)")
    return SHARED_DATA
