"""The artifact store: atomic Parquet writes with a JSON sidecar that records what produced them.

Every artifact ``X.parquet`` gets a sidecar ``X.parquet.json``::

    {"stage": "pose", "contract": "keypoints", "contract_version": 1, "input_hash": "<sha256>",
     "config_hash": "<sha256>", "config": {...}, "versions": {"python": ..., "torch": ...},
     "created": "2026-...Z", "rows": 180}

A stage whose sidecar matches its inputs and the contract's current version (:func:`is_up_to_date`) is
skipped on rerun, so a crashed or extended cohort run redoes only what is missing, and an artifact
written under an older contract is redone. Writes are atomic: the Parquet file is written to a
temporary file in the same folder and renamed into place, then the sidecar likewise. A crash between
the two leaves an artifact without sidecar, which counts as *not* up to date and is redone. Files get
the permissions of a plain new file (``0o666 & ~umask``).

A write that fails raises an OSError naming the final path (not the temporary file) and the reason
(:func:`named_write_error`), e.g. ``cannot write out/cohort.parquet: No space left on device``.

Which files in an output folder are ours, what a rerun may replace or remove, and how a set of files
is committed together: :mod:`pipeline.ownership`.
"""

from __future__ import annotations

import dataclasses
import functools
import datetime as _dt
import errno
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contracts import CONTRACTS, Contract, conform

__all__ = [
    "sha256_file",
    "sha256_files",
    "config_hash",
    "package_versions",
    "sidecar_path",
    "write_artifact",
    "read_artifact",
    "read_sidecar",
    "is_up_to_date",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "named_write_error",
]

SIDECAR_SUFFIX = ".json"
_VERSIONED_PACKAGES = ("numpy", "pandas", "pyarrow", "torch", "torchvision", "mediapipe", "statsmodels", "opencv-contrib-python")


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[str | os.PathLike]) -> str:
    """One hash over several files (order-independent: sorted by name, then content hashes)."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return obj


def config_hash(config: Any) -> str:
    """Stable sha256 of a config (dataclass, mapping or JSON-able value), independent of key order."""
    text = json.dumps(_jsonable(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _package_versions() -> tuple[tuple[str, str], ...]:
    # Reading distribution metadata costs 9-37 ms per call; versions do not change within a process.
    out = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tuple(out.items())


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour changes artifacts (recorded in sidecars)."""
    return dict(_package_versions())


def sidecar_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def current_umask() -> int:
    """The process's file-creation mask, read without changing it for longer than an instant.

    Linux reports it in ``/proc/self/status`` (``Umask:`` line), which changes nothing; elsewhere it
    is read by setting a mask and restoring the old one at once (``os.umask`` has no read-only form).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def _file_mode() -> int:
    """Permissions a plain ``open(path, "w")`` would give a new file: ``0o666 & ~umask``.

    :func:`tempfile.mkstemp` creates its files 0600 whatever the umask; an artifact renamed from such a
    file would be unreadable to colleagues on a shared server, so its mode is set to this first.
    """
    return 0o666 & ~current_umask()


def _temp_file(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` (same file system, so the final rename is atomic), opened,
    with the permissions a plain new file would get."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def named_write_error(exc: OSError, path: str | os.PathLike) -> OSError:
    """``exc`` as an OSError that names ``path`` (the output, not a temporary or staged file) and the reason.

    pyarrow's and ``f.write``'s errors carry no file name, and a temporary file's name would mislead;
    :func:`pipeline.cli.handle_errors` prints ``cannot write <path>: <reason>`` from this.
    """
    reason = exc.strerror or (os.strerror(exc.errno) if exc.errno else None) or str(exc)
    return OSError(exc.errno if exc.errno is not None else errno.EIO, reason, str(path))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename.

    The file gets the permissions of a plain new file (``0o666 & ~umask``), not mkstemp's 0600.
    An OSError names ``path`` (:func:`named_write_error`).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_file(path)
    except OSError as exc:
        raise named_write_error(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise named_write_error(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_artifact(
    data: pa.Table | pd.DataFrame,
    path: str | os.PathLike,
    *,
    contract: Contract | str | None,
    stage: str,
    input_hash: str = "",
    config: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Validate ``data`` against ``contract``, write it atomically as Parquet, then its sidecar.

    Parameters
    ----------
    data : pyarrow.Table or pandas.DataFrame
    path : path of the ``.parquet`` file (a ``.csv`` path gets CSV text instead, for flat tables)
    contract : Contract, contract name, or None (no validation, e.g. for a QC table)
    stage : name of the producing stage (``"pose"``, ``"infer"``, ...)
    input_hash : sha256 of the input (video or upstream artifact)
    config : the stage config (dataclass or mapping); stored and hashed
    extra : further JSON-able facts to record in the sidecar

    Returns
    -------
    pathlib.Path of the written Parquet file.

    Raises
    ------
    pipeline.contracts.ContractError
        If the table breaks the contract; nothing is written then.
    """
    path = Path(path)
    if contract is not None:
        c = CONTRACTS[contract] if isinstance(contract, str) else contract
        table = conform(data, c)
        contract_name, contract_version = c.name, c.version
    else:
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        contract_name = contract_version = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A stale sidecar must never vouch for the new file: remove it before replacing the data.
        sidecar_path(path).unlink(missing_ok=True)
        fd, tmp = _temp_file(path)
        os.close(fd)
    except OSError as exc:
        raise named_write_error(exc, path) from exc
    try:
        if path.suffix.lower() == ".csv":
            # Flat tables only (no list columns); floats as their shortest round-trip text, nulls empty.
            table.to_pandas().to_csv(tmp, index=False)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise named_write_error(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sidecar = {
        "stage": stage,
        "contract": contract_name,
        "contract_version": contract_version,
        "input_hash": input_hash,
        "config_hash": config_hash(config),
        "config": _jsonable(config),
        "versions": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rows": table.num_rows,
    }
    if extra:
        sidecar.update(_jsonable(dict(extra)))
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2, sort_keys=True, default=str))
    return path


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar of an artifact, or None if absent or unreadable."""
    sp = sidecar_path(path)
    try:
        return json.loads(sp.read_text())
    except (OSError, ValueError):
        return None


def read_artifact(path: str | os.PathLike, contract: Contract | str | None = None) -> pa.Table:
    """Read a Parquet artifact and validate it against ``contract`` (errors name the file)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"artifact not found: {path}")
    table = pq.read_table(path)
    if contract is not None:
        table = conform(table, contract, source=str(path))
    return table


def is_up_to_date(
    path: str | os.PathLike, *, input_hash: str, config: Any, contract: Contract | str | None = None
) -> bool:
    """Whether ``path`` exists with a sidecar recording the same input, config and contract version.

    Parameters
    ----------
    path : the artifact
    input_hash, config : what the artifact would be made from now
    contract : Contract or name, optional
        The contract the caller would write now; the sidecar must name it and record its current
        version. Without it, an artifact whose sidecar names a contract must match that contract's
        current version in :data:`pipeline.contracts.CONTRACTS` (an unknown contract name, or a
        sidecar without ``contract_version``, i.e. from before versioning, is out of date).

    An artifact written under an older (or any other) contract version is therefore redone, never reused.
    """
    path = Path(path)
    if not path.exists():
        return False
    meta = read_sidecar(path)
    if not meta:
        return False
    if meta.get("input_hash") != input_hash or meta.get("config_hash") != config_hash(config):
        return False
    return _contract_matches(meta, contract)


def _contract_matches(meta: Mapping[str, Any], contract: Contract | str | None) -> bool:
    recorded = meta.get("contract")
    if contract is not None:
        c = CONTRACTS.get(contract) if isinstance(contract, str) else contract
        return c is not None and recorded == c.name and meta.get("contract_version") == c.version
    if recorded is None:  # written without a contract (e.g. a QC table): nothing to compare
        return True
    current = CONTRACTS.get(recorded)
    return current is not None and meta.get("contract_version") == current.version
