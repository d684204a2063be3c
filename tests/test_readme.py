"""The README's two set-up commands stay true: CI runs the README's test command verbatim."""

from __future__ import annotations

import re

from conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert block, "README must open with a shell block holding the set-up commands"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_readme_opens_with_main_and_test_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert "deepexposure enhance samples/" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [ln.strip() for ln in ci]


def test_readme_warns_of_the_cuda_torch_next_to_the_test_command():
    """The test extra pulls torch: the paragraph explaining the test command says that Linux gets the multi-GB CUDA
    build from the public index and gives the CPU index instead (not only the training extra's paragraph)."""
    text = (REPO / "README.md").read_text()
    para = next(p for p in text.split("\n\n") if "The second installs the test extras" in p)
    assert "CUDA" in para and "GB" in para
    assert "download.pytorch.org/whl/cpu" in para and "'.[test]'" in para


def test_sample_photos_exist():
    samples = sorted((REPO / "samples").glob("*.jpg"))
    assert len(samples) >= 3


def test_readme_python_example_runs(monkeypatch, tmp_path):
    """The README's Python block runs as written (beside a copy of samples/), imports only what it uses, and its
    edit changes the output it writes."""
    import ast

    import numpy as np

    from deepexposure import read_photo

    text = (REPO / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README must show the Python API"
    tree = ast.parse(block.group(1))
    imported = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported <= used, f"the example imports names it never uses: {imported - used}"
    (tmp_path / "samples").symlink_to(REPO / "samples")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), ns)  # noqa: S102 - our own README
    rgb, out, out2, recipe = ns["rgb"], ns["out"], ns["out2"], ns["recipe"]
    assert out.shape == rgb.shape and out.dtype == rgb.dtype
    assert len(recipe.evs) >= 1 and not np.array_equal(out, out2)
    written = [p for p in tmp_path.iterdir() if p.name != "samples"]
    assert len(written) == 1
    saved = read_photo(written[0]).pixels  # JPEG: lossy, so closer to the edit than to the unedited output
    assert np.abs(saved - out2).mean() < 3 / 255 and np.abs(saved - out2).mean() < np.abs(saved - out).mean() / 2
