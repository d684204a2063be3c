"""Import hygiene: the image modules work without loading torch (checked in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import deepexposure

IMAGE_MODULES = ("io", "color", "raw", "segmentation", "fusion", "render", "recipe")
SRC = str(Path(deepexposure.__file__).resolve().parents[1])


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter that imports this checkout's deepexposure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_image_modules_do_not_import_torch():
    mods = ", ".join(f"deepexposure.{m}" for m in IMAGE_MODULES)
    code = (f"import sys, {mods}\n"
            f"assert deepexposure.__file__.startswith({SRC!r}), deepexposure.__file__\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not loaded, loaded[:5]\n")
    r = _fresh_python(code)
    assert r.returncode == 0, r.stderr


def test_the_check_sees_torch_when_it_is_imported():
    """The same check fails once a module that needs torch (the policy) is imported: it can fail."""
    r = _fresh_python("import sys, deepexposure.io, deepexposure.policy\nassert 'torch' not in sys.modules\n")
    assert r.returncode != 0 and "AssertionError" in r.stderr
