"""Layering: model/ <- pipeline/ <- analysis/ <- reports/ <- flows/ (docs/architecture.md).

A module may import its own package and any package below it, never one above; and no two modules
import each other, directly or through others (an import cycle makes "the bottom layer" meaningless).
The checker parses imports with :mod:`ast` (nothing is imported), so it also sees imports inside
functions, which are the usual way a cycle is hidden.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("model", "pipeline", "analysis", "reports", "simulator", "recipes", "flows")  # bottom first


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(path: Path, root: Path, packages: tuple[str, ...]) -> set[str]:
    """Project modules imported anywhere in ``path`` (module-level, in functions, under TYPE_CHECKING)."""
    me = module_name(path, root)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = me.split(".")[: -node.level] if not path.name == "__init__.py" else me.split(".")[: len(me.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import mod" imports pkg.mod; "from pkg.mod import name" imports pkg.mod
            names = [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in packages:
                found.add(name)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> project modules it imports (names resolved to modules that exist as files)."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets = set()
        for name in project_imports(path, root, packages):
            # "from pkg.mod import thing" names pkg.mod.thing; keep the longest prefix that is a module
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                cand = ".".join(parts[:k])
                if cand in files and cand != mod:
                    targets.add(cand)
                    break
        graph[mod] = targets
    return graph


def layer_violations(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    rank = {pkg: i for i, pkg in enumerate(layers)}
    out = []
    for mod, targets in sorted(graph.items()):
        for t in sorted(targets):
            if rank[t.split(".")[0]] > rank[mod.split(".")[0]]:
                out.append(f"{mod} imports {t} (a higher layer)")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_layers_import_only_downward():
    assert layer_violations(import_graph(ROOT, LAYERS), LAYERS) == []


def test_no_import_cycles_between_modules():
    assert cycles(import_graph(ROOT, LAYERS)) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in LAYERS:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize("statement", [
    "from pipeline.video import probe",           # module level
    "def f():\n    import pipeline.video\n",       # hidden in a function
    "from pipeline import video",                 # package form
])
def test_checker_catches_a_forbidden_import(tmp_path, statement):
    """The same checker on a copy with one upward import added (model -> pipeline) reports it."""
    root = _tree(tmp_path, {"model/net.py": statement + "\n", "pipeline/video.py": "def probe(): pass\n"})
    assert layer_violations(import_graph(root, LAYERS), LAYERS) == ["model.net imports pipeline.video (a higher layer)"]


def test_checker_catches_a_cycle_inside_a_layer(tmp_path):
    root = _tree(tmp_path, {
        "model/a.py": "from model.b import x\n",
        "model/b.py": "def f():\n    from model.a import y\n",
        "model/c.py": "from model.a import z\n",
    })
    graph = import_graph(root, LAYERS)
    assert layer_violations(graph, LAYERS) == []
    assert cycles(graph) == [["model.a", "model.b"]]
