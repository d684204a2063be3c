"""The package's layout holds: the folders import one way (docs/architecture.md), no import cycle, no torch in the
torch-free layers, no oversized module. Read from the source with ``ast`` (every import, also those inside
functions), so a lazy import cannot hide an upward arrow."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deepexposure

ROOT = Path(deepexposure.__file__).resolve().parent

#: Layer of each folder (and root module): a module may import its own folder and lower layers only. data and
#: inference share a layer and may not import each other.
LAYERS = {"errors": 0, "atomic": 0, "logs": 0, "memory": 0, "image": 1, "data": 2, "inference": 2, "learning": 3,
          "evaluation": 4, "apps": 5, "__init__": 6, "__main__": 6}
#: Upward imports that are allowed, each with its reason (made inside a function, on demand).
EXCEPTIONS = {
    ("deepexposure.inference.loader", "deepexposure.learning.policy"):
        "a torch policy.pt is loaded by the one model loader; torch is needed only then",
}
TORCH_FREE = ("errors", "atomic", "logs", "memory", "image", "data", "inference")
MAX_LINES = 600
#: Modules allowed over MAX_LINES, with the reason their docstring gives.
LONG_MODULES = {"deepexposure.image.fusion": "the tiled fusion kernels and their OpenCV-matching reference"}


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _folder(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """Package modules named by a ``from X import a, b`` (a, b may be modules themselves)."""
    if node.level:
        pkg = module.split(".")
        if not MODULES[module].name == "__init__.py":
            pkg = pkg[:-1]
        base = ".".join(pkg[:len(pkg) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
    return found or ([base] if base in MODULES else [m for m in MODULES if base.startswith(m + ".")][-1:])


def _only_the_version(node: ast.AST) -> bool:
    """``from deepexposure import __version__`` or ``import deepexposure`` used for ``deepexposure.__version__``."""
    if isinstance(node, ast.ImportFrom):
        return node.module == "deepexposure" and not node.level and [a.name for a in node.names] == ["__version__"]
    return isinstance(node, ast.Import) and [a.name for a in node.names] == ["deepexposure"]


def imports(module: str, *, top_level_only: bool = False) -> list[tuple[str, int, bool]]:
    """(imported package module, line, inside a function or a TYPE_CHECKING block) for every import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    out: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if _only_the_version(child):
                pass  # the root package for its __version__ (it imports nothing else eagerly)
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name in MODULES or a.name.startswith("deepexposure."):
                        out.append((a.name if a.name in MODULES else a.name.rsplit(".", 1)[0], child.lineno, nested))
                    elif a.name.split(".")[0] == "torch":
                        out.append(("torch", child.lineno, nested))
            elif isinstance(child, ast.ImportFrom):
                if (child.module or "").split(".")[0] == "torch":
                    out.append(("torch", child.lineno, nested))
                elif child.level or (child.module or "").split(".")[0] == "deepexposure":
                    out.extend((m, child.lineno, nested) for m in _resolve(module, child))
            visit(child, inner)

    visit(tree, False)
    return [i for i in out if not (top_level_only and i[2])]


def test_the_layout_is_what_the_architecture_says():
    folders = {_folder(m) for m in MODULES}
    assert folders == set(LAYERS), folders ^ set(LAYERS)
    assert len(MODULES) > 60


def test_folders_import_one_way():
    wrong = []
    for mod in MODULES:
        for target, line, _ in imports(mod):
            if target == "torch" or (mod, target) in EXCEPTIONS:
                continue
            a, b = _folder(mod), _folder(target)
            if a != b and not LAYERS[b] < LAYERS[a]:
                wrong.append(f"{MODULES[mod].relative_to(ROOT.parent)}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_every_exception_is_still_needed():
    for mod, target in EXCEPTIONS:
        assert any(t == target for t, _, _ in imports(mod)), (mod, target)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := dfs(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := dfs(n)):
            return found
    return None


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    return {m: {t for t, _, _ in imports(m, top_level_only=top_level_only)
                if t != "torch" and t != m and not (t == m.rsplit(".", 1)[0] and MODULES[m].name != "__init__.py")}
            for m in MODULES}


@pytest.mark.parametrize("top_level_only", [True, False], ids=["module-level", "also-lazy"])
def test_no_import_cycle(top_level_only):
    graph = _graph(top_level_only=top_level_only)
    # a package's __init__ re-exporting its own modules is not a cycle: drop the edges from a module to the
    # __init__ of its own package
    for m, targets in graph.items():
        graph[m] = {t for t in targets if not m.startswith(t + ".")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_can_fail():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_torch_free_layers_never_import_torch():
    bad = [f"{MODULES[m].relative_to(ROOT.parent)}:{line}" for m in MODULES if _folder(m) in TORCH_FREE
           for t, line, _ in imports(m) if t == "torch"]
    assert not bad, bad
    assert any(t == "torch" for t, _, _ in imports("deepexposure.learning.models"))  # the check sees torch


def test_no_module_is_oversized():
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert set(big) <= set(LONG_MODULES), {m: n for m, n in big.items() if m not in LONG_MODULES}
    for m in LONG_MODULES:
        doc = ast.get_docstring(ast.parse(MODULES[m].read_text())) or ""
        assert f"over {MAX_LINES} lines" in doc, f"{m} is over {MAX_LINES} lines; its docstring must say why"
