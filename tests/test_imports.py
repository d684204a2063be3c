"""Import hygiene: the image modules work without loading torch (checked in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import deepexposure

#: Every module of the torch-free layers: the root modules, image/, data/ and inference/ (see docs/architecture.md).
TORCH_FREE = ("errors", "atomic", "logs", "image", "data", "inference")


def _modules(*folders: str) -> list[str]:
    """Dotted names of the package's modules under ``folders`` (a root module's name stands for itself)."""
    root = Path(deepexposure.__file__).resolve().parent
    out = []
    for f in folders:
        if (root / f"{f}.py").is_file():
            out.append(f"deepexposure.{f}")
        for p in sorted((root / f).rglob("*.py")) if (root / f).is_dir() else ():
            rel = p.relative_to(root.parent).with_suffix("")
            out.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return out


SRC = str(Path(deepexposure.__file__).resolve().parents[1])


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter that imports this checkout's deepexposure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_image_modules_do_not_import_torch():
    mods = ", ".join(_modules(*TORCH_FREE))
    assert "deepexposure.image.fusion" in mods and "deepexposure.inference.loader" in mods
    code = (f"import sys, {mods}\n"
            f"assert deepexposure.__file__.startswith({SRC!r}), deepexposure.__file__\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not loaded, loaded[:5]\n")
    r = _fresh_python(code)
    assert r.returncode == 0, r.stderr


def test_the_check_sees_torch_when_it_is_imported():
    """The same check fails once a module that needs torch (the policy) is imported: it can fail."""
    r = _fresh_python("import sys, deepexposure.image.io, deepexposure.learning.policy\nassert 'torch' not in sys.modules\n")
    assert r.returncode != 0 and "AssertionError" in r.stderr


def test_inference_modules_do_not_import_torch():
    """Importing the ONNX inference path (and the CLI, whose sub-commands load lazily) loads no torch."""
    mods = ", ".join(["deepexposure.inference.enhance", "deepexposure.apps.pipeline", "deepexposure.apps.batch",
                      *_modules("apps/cli")])
    code = (f"import sys, {mods}\n"
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "assert not loaded, loaded[:5]\n")
    r = _fresh_python(code)
    assert r.returncode == 0, r.stderr


#: Prepended to code run "without torch": any import of torch or torch.* raises ModuleNotFoundError, as on a
#: machine where only ``pip install deepexposure`` was run.
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def test_enhance_runs_with_torch_blocked(tmp_path):
    """The library API and the CLI enhance a real photo with the shipped (ONNX) model where torch cannot be imported."""
    photo = Path(SRC).parent / "samples" / "dicm_02.jpg"
    code = BLOCK_TORCH + (
        "import numpy as np\n"
        "import deepexposure, deepexposure.inference.enhance, deepexposure.image.io, deepexposure.image.render, deepexposure.inference.onnx_policy\n"
        "from deepexposure import Enhancer\n"
        "from deepexposure.image.io import read_photo\n"
        f"rgb = read_photo({str(photo)!r}).pixels\n"
        "out, recipe = Enhancer().enhance(rgb)\n"
        "assert out.shape == rgb.shape and len(recipe.evs) == 1 and np.abs(out - rgb).mean() > 0.01\n"
        "out, paper = Enhancer('paper', look='expert').enhance(rgb)\n"
        "assert len(paper.evs) >= 2 and paper.model.startswith('de-') and paper.look == 'expert'\n"
        "from deepexposure.apps.cli import main\n"
        f"main(['enhance', {str(photo)!r}, '-o', {str(tmp_path / 'out.jpg')!r}, '--recipe'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules\n"
        "print(recipe.model)\n")
    r = _fresh_python(code)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.jpg").is_file() and (tmp_path / "out.recipe.json").is_file()
    assert r.stdout.strip().startswith("natural")


def _cli_without_torch(*args) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + "from deepexposure.apps.cli import main\nmain()\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_torch_commands_say_how_to_get_the_training_extra(tmp_path):
    """A .pt model, export-onnx and train without torch: one error line naming the training extra, exit 2."""
    from deepexposure.inference.loader import default_model_path

    photo = Path(SRC).parent / "samples" / "dicm_02.jpg"
    cases = [
        ("enhance", photo, "-o", tmp_path / "a.jpg", "--model", default_model_path("pt")),
        ("segment", photo, "-o", tmp_path / "a.png", "--model", default_model_path("pt")),
        ("export-onnx", default_model_path("pt"), "-o", tmp_path / "a.onnx"),
        ("train", "--inputs", photo, "--experts", photo, "--out", tmp_path / "run"),
        ("evaluate", "--unpaired", photo.parent, "--reference", photo.parent, "-m", default_model_path("pt"),
         "-o", tmp_path / "eval"),
    ]
    for args in cases:
        r = _cli_without_torch(*args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, (args[0], r.stderr)
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1 and "needs the training extra (torch is not installed)" in errors[0], (args[0], lines)
        assert errors[0].endswith("pip install 'deepexposure[train]'"), errors[0]
    assert not list(tmp_path.iterdir())
