"""Shared pytest fixtures.

Tests that need the benchmark's reference data (``../shared/data/ma52``) use the ``ma52_dir`` or
``ma52_clips`` fixtures, which skip with a clear reason when the folder is absent (a user's fresh
clone has no ``../shared``; CI has it). Set ``MA52_DATA=/path/to/ma52`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_MA52 = REPO.parent / "shared" / "data" / "ma52"


def _ma52_dir() -> Path:
    return Path(os.environ.get("MA52_DATA", _DEFAULT_MA52))


@pytest.fixture(scope="session")
def ma52_dir() -> Path:
    d = _ma52_dir()
    if not (d / "taxonomy.csv").exists():
        pytest.skip(f"MA-52 reference data not found at {d} (set MA52_DATA or place ../shared/data/ma52)")
    return d


@pytest.fixture(scope="session")
def ma52_clips(ma52_dir: Path) -> list[Path]:
    clips = sorted((ma52_dir / "clips").glob("*.mp4"))
    if not clips:
        pytest.skip(f"no MA-52 sample clips in {ma52_dir / 'clips'}")
    return clips


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A real Prefect server on a free loopback port (one per test module that asks for it); yields the
    environment that points at it (``PREFECT_API_URL``, ``PREFECT_HOME``, ``PYTHONPATH`` = the repo).
    ``tests/test_flow_slurm.py`` overrides it with one that also reaches the Slurm cluster."""
    from flow_fixtures import prefect_server

    with prefect_server(tmp_path_factory.mktemp("prefect-home"), {**os.environ, "PYTHONPATH": str(REPO)}) as env:
        yield env
