"""No test asserts a wall-clock limit: speed depends on the machine's load, and belongs in bench/.

A 60 s limit on one forward pass of the paper-size model failed a fresh clone's suite under load (61.7 s,
676 of 677 passed). This test reads every test module's syntax tree and fails on an ``assert`` whose
expression reads a clock (``time.perf_counter()``, ``time.time()``, ``time.monotonic()``, their ``_ns``
forms) minus something, or a name assigned such a difference in the same function (``elapsed =
time.time() - t0``). A deadline that bounds a wait (``while time.monotonic() < deadline``, or ``assert
time.monotonic() < deadline`` inside a polling loop, a hang guard with a generous bound) measures no
speed and stays allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCKS = {"perf_counter", "time", "monotonic", "perf_counter_ns", "time_ns", "monotonic_ns", "process_time"}


def _reads_clock(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CLOCKS
               and isinstance(n.func.value, ast.Name) and n.func.value.id == "time" for n in ast.walk(node))


def _clock_difference(node: ast.AST) -> bool:
    """Whether ``node`` holds a subtraction with a clock reading in it (an elapsed time)."""
    return any(isinstance(b, ast.BinOp) and isinstance(b.op, ast.Sub) and _reads_clock(b) for b in ast.walk(node))


def _clock_differences(func: ast.AST) -> set[str]:
    """Names assigned an expression with a subtraction involving a clock call."""
    names = set()
    for n in ast.walk(func):
        if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None:
            if _clock_difference(n.value):
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def timed_assertions(source: str, filename: str = "<test>") -> list[str]:
    """``file:line`` of every assertion on a wall-clock reading in ``source``."""
    tree = ast.parse(source, filename)
    found = []
    for func in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] + [tree]:
        elapsed = _clock_differences(func)
        for a in (n for n in ast.walk(func) if isinstance(n, ast.Assert)):
            names = {n.id for n in ast.walk(a.test) if isinstance(n, ast.Name)}
            if _clock_difference(a.test) or names & elapsed:
                found.append((a.lineno, f"{filename}:{a.lineno}"))
    return [hit for _, hit in sorted(set(found))]


def test_the_check_finds_timed_assertions_and_allows_deadlines():
    timed = ("import time\ndef test_a():\n    t0 = time.perf_counter()\n    run()\n"
             "    assert time.perf_counter() - t0 < 60\n"
             "def test_b():\n    t0 = time.time()\n    run()\n    elapsed = time.time() - t0\n    assert elapsed < 5\n")
    assert timed_assertions(timed) == ["<test>:5", "<test>:10"]
    deadline = ("import time\ndef test_c():\n    deadline = time.monotonic() + 120\n"
                "    while not done():\n        assert time.monotonic() < deadline\n    assert done()\n")
    assert timed_assertions(deadline) == []


def test_no_test_asserts_a_wall_clock_limit():
    found = [hit for path in sorted(TESTS.glob("*.py")) if path.name != Path(__file__).name
             for hit in timed_assertions(path.read_text(), path.name)]
    assert not found, f"timed assertions (move the timing to bench/): {', '.join(found)}"
