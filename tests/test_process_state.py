"""Importing a project module changes no process-wide state (issue 8, item 6).

Library code never calls ``matplotlib.use``, configures logging, installs warning filters, edits
``os.environ`` or prints; only ``main()`` functions do. A fresh interpreter first imports every
third-party module the project's files name (their own import-time side effects are not ours), takes a
snapshot of the matplotlib backend setting, the root logger (handlers, level), ``warnings.filters`` and
``os.environ``, then imports each project module in turn and compares. Anything printed to stdout during
the imports counts too.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "pipeline", "analysis", "reports", "flows")

CHECKER = textwrap.dedent(
    r'''
    import importlib, json, logging, os, sys, warnings
    modules, third_party = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    for name in third_party:  # "pkg.mod", or "pkg:attr" for "from pkg import attr" (lazy attributes load on access)
        mod, _, attr = name.partition(":")
        try:
            m = importlib.import_module(mod)
            if attr:
                getattr(m, attr)
        except Exception:
            pass
    import matplotlib

    def snapshot():
        return {
            # the raw setting: reading rcParams["backend"] would itself resolve (and pick) a backend
            "matplotlib backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),
            "logging root handlers": [repr(h) for h in logging.root.handlers],
            "logging root level": logging.root.level,
            "warnings.filters": [repr(f) for f in warnings.filters],
            "os.environ": dict(os.environ),
        }

    def diff(a, b):
        out = []
        for key in a:
            if a[key] == b[key]:
                continue
            if key == "os.environ":
                changed = sorted(k for k in set(a[key]) | set(b[key]) if a[key].get(k) != b[key].get(k))
                out.append(f"os.environ: {', '.join(changed)}")
            else:
                out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
        return out

    real_stdout, problems, unimportable = sys.stdout, {}, {}
    before = snapshot()
    for name in modules:
        printed = __import__("io").StringIO()
        sys.stdout = printed
        try:
            importlib.import_module(name)
        except Exception as exc:  # judged by the tests of that module, not here; its side effects still count
            unimportable[name] = f"{type(exc).__name__}: {exc}"
        finally:
            sys.stdout = real_stdout
        after = snapshot()
        found = diff(before, after)
        if printed.getvalue():
            found.append(f"printed {printed.getvalue()[:80]!r}")
        if found:
            problems[name] = found
        before = after
    print(json.dumps({"changed": problems, "unimportable": unimportable}))
    '''
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules(root: Path, packages: tuple[str, ...]) -> list[str]:
    mods = [_module_name(p, root) for pkg in packages for p in sorted((root / pkg).rglob("*.py"))]
    return [m for m in mods if not m.endswith("__main__")]


def _third_party(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Every absolute, non-project module name imported anywhere in the packages' files."""
    names: set[str] = set()
    for pkg in packages:
        for path in (root / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                    names.add(node.module)
                    names.update(f"{node.module}.{a.name}" for a in node.names)  # submodules, if any
                    names.update(f"{node.module}:{a.name}" for a in node.names)  # attributes, lazy ones too
    return sorted(n for n in names if n.split(".")[0].split(":")[0] not in packages)


def check_imports(root: Path, packages: tuple[str, ...]) -> dict[str, list[str]]:
    """Module -> the process-wide changes its import made (empty when none did)."""
    r = subprocess.run(
        [sys.executable, "-c", CHECKER, json.dumps(_project_modules(root, packages)), json.dumps(_third_party(root, packages))],
        cwd=root, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])["changed"]


def test_the_checker_sees_each_kind_of_change(tmp_path):
    """A module that does every forbidden thing on import is caught on every count."""
    pkg = tmp_path / "badpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("import matplotlib.figure\nimport logging\nlog = logging.getLogger(__name__)\n")
    (pkg / "bad.py").write_text(
        "import logging, os, warnings\nimport matplotlib\nmatplotlib.use('Agg')\nlogging.basicConfig()\n"
        "warnings.simplefilter('ignore')\nos.environ['SOME_FLAG'] = '1'\nprint('hello')\n"
    )
    problems = check_imports(tmp_path, ("badpkg",))
    assert set(problems) == {"badpkg.bad"}
    text = " | ".join(problems["badpkg.bad"])
    for what in ("matplotlib backend", "logging root handlers", "warnings.filters", "os.environ: SOME_FLAG", "printed 'hello"):
        assert what in text, (what, text)


@pytest.mark.slow
def test_importing_project_modules_changes_no_process_state():
    problems = check_imports(ROOT, PACKAGES)
    assert problems == {}, "\n".join(f"{m}: {'; '.join(p)}" for m, p in problems.items())
