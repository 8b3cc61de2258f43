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

Tools that write a whole folder (the hurdle outputs) keep an *output manifest* there
(:data:`OUTPUT_MANIFEST`, ``.outputs.json``: tool name -> the files it wrote) and remove on rerun only
files it lists (:func:`record_outputs`, :func:`check_no_foreign_outputs`, :func:`remove_outputs`);
they write the set in a :func:`staging_dir` beside the folder first, and a killed run's staging folder
is cleaned up by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.cli import BadInput
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
    "OUTPUT_MANIFEST",
    "ForeignOutput",
    "read_output_manifest",
    "recorded_outputs",
    "record_outputs",
    "foreign_files",
    "check_no_foreign_outputs",
    "remove_outputs",
    "stale_staging_dirs",
    "staging_dir",
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


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename.

    The file gets the permissions of a plain new file (``0o666 & ~umask``), not mkstemp's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    # A stale sidecar must never vouch for the new file: remove it before replacing the data.
    sidecar_path(path).unlink(missing_ok=True)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        if path.suffix.lower() == ".csv":
            # Flat tables only (no list columns); floats as their shortest round-trip text, nulls empty.
            table.to_pandas().to_csv(tmp, index=False)
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
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


# --------------------------------------------------------------------------------------------------
# Output manifests: which files in a folder a tool wrote, so that a rerun removes only its own files
# --------------------------------------------------------------------------------------------------

OUTPUT_MANIFEST = ".outputs.json"
_MANIFEST_FORMAT = 1


class ForeignOutput(BadInput):
    """An output folder holds a file under a name the tool would write, which no earlier run of the
    tool recorded as its own (a user's file): the tool refuses rather than overwrite or delete it."""


def _relative_name(name: str | os.PathLike) -> str | None:
    """``name`` as a clean relative POSIX path inside a folder, or None if it would leave the folder."""
    p = PurePosixPath(Path(name).as_posix())
    if p.is_absolute() or not p.parts or any(part in ("..", "") for part in p.parts) or str(p) == ".":
        return None
    return str(p)


def read_output_manifest(folder: str | os.PathLike) -> dict[str, list[str]]:
    """Tool name -> the files (relative POSIX paths) it recorded in ``folder``'s manifest.

    A missing, unreadable or malformed manifest records nothing (so every file counts as foreign).
    """
    try:
        data = json.loads((Path(folder) / OUTPUT_MANIFEST).read_text(encoding="utf-8"))
        tools = data["tools"]
        return {str(t): [n for n in (_relative_name(f) for f in entry["files"]) if n] for t, entry in tools.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def recorded_outputs(folder: str | os.PathLike, tool: str) -> set[str]:
    """The files ``tool`` recorded as its own in ``folder`` (relative POSIX paths)."""
    return set(read_output_manifest(folder).get(tool, ()))


def record_outputs(folder: str | os.PathLike, tool: str, files: Iterable[str | os.PathLike]) -> Path:
    """Record ``files`` (paths inside ``folder``, absolute or relative) as ``tool``'s outputs there.

    Replaces the tool's earlier entry and keeps other tools' entries. The manifest
    (:data:`OUTPUT_MANIFEST`, JSON) is written atomically. Record a file *before* it can appear in
    the folder, so that a crash never leaves a file of ours that no manifest vouches for.
    """
    folder = Path(folder)
    names = set()
    for f in files:
        p = Path(f)
        rel = _relative_name(p.relative_to(folder) if p.is_absolute() else p)
        if rel is None:
            raise ValueError(f"{f} is not inside {folder}")
        names.add(rel)
    tools = read_output_manifest(folder)
    tools[tool] = sorted(names)
    doc = {
        "format": _MANIFEST_FORMAT,
        "note": "files each tool wrote here; a rerun of a tool removes only its own files",
        "tools": {t: {"files": fs} for t, fs in sorted(tools.items())},
    }
    return atomic_write_text(folder / OUTPUT_MANIFEST, json.dumps(doc, indent=2) + "\n")


def foreign_files(folder: str | os.PathLike, names: Iterable[str], own: Iterable[str]) -> list[str]:
    """Of the relative ``names`` a tool is about to write in ``folder``, those already taken by
    something the tool does not own: an existing file (or folder) not in ``own``, or a non-folder
    where a subfolder is needed (e.g. a user's file called ``plots`` where ``plots/x.png`` goes)."""
    folder, own = Path(folder), set(own)
    found = []
    for name in names:
        rel = PurePosixPath(name)
        for k in range(1, len(rel.parts)):  # parent folders must be folders
            parent = folder.joinpath(*rel.parts[:k])
            if parent.exists() and not parent.is_dir() and str(PurePosixPath(*rel.parts[:k])) not in own:
                found.append(str(PurePosixPath(*rel.parts[:k])))
                break
        else:
            target = folder / rel
            if (target.exists() or target.is_symlink()) and name not in own:
                found.append(name)
    return list(dict.fromkeys(found))


def check_no_foreign_outputs(folder: str | os.PathLike, names: Iterable[str], own: Iterable[str], *, tool: str) -> None:
    """Raise :class:`ForeignOutput` (a one-line bad-input error) naming the first name in ``names`` that
    ``folder`` already holds without ``tool`` having recorded it (see :func:`foreign_files`)."""
    clash = foreign_files(folder, names, own)
    if clash:
        more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
        raise ForeignOutput(
            f"{Path(folder) / clash[0]}{more} is in the way: {tool} would write there, but no earlier run of "
            f"{tool} recorded it as its own ({OUTPUT_MANIFEST}); move it or choose another output folder"
        )


def remove_outputs(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the files ``names`` (relative, recorded as a tool's own) from ``folder``; then delete the
    subfolders they were in if that left them empty. Never touches anything outside ``folder``.

    Returns the removed files.
    """
    folder = Path(folder)
    root = folder.resolve()
    removed, parents = [], set()
    for name in names:
        rel = _relative_name(name)
        if rel is None:
            continue
        f = folder / rel
        if f.is_symlink() or (f.is_file() and root in f.resolve().parents):
            f.unlink(missing_ok=True)
            removed.append(f)
            parents.update(p for p in f.parents if p != folder and folder in p.parents)
    for d in sorted(parents, key=lambda p: len(p.parts), reverse=True):  # deepest first
        try:
            d.rmdir()  # only if empty
        except OSError:
            pass
    return removed


# --------------------------------------------------------------------------------------------------
# Staging folders: a tool writes a whole output set beside the output folder, then moves it in
# --------------------------------------------------------------------------------------------------

STAGING_MAX_AGE_S = 24 * 3600
_STAGING_NAME = re.compile(r"staging-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", platform.node() or "host")


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


def stale_staging_dirs(out: str | os.PathLike, *, max_age_s: float = STAGING_MAX_AGE_S) -> list[Path]:
    """Staging folders of earlier runs for ``out`` that no live run uses.

    A staging folder ``.<out name>.staging-<host>-<pid>-<random>`` is stale when its process is gone
    (same host), when it is older than ``max_age_s`` (another host's, or a reused pid), or when its
    name carries no host and pid (left by a version of the tool from before this naming).
    """
    out = Path(out)
    prefix, host, now = _staging_prefix(out), _host(), time.time()
    stale = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return []
    for d in entries:
        if not d.name.startswith(prefix) or d.is_symlink() or not d.is_dir():
            continue
        m = _STAGING_NAME.search(d.name[len(f".{out.name}.") :])
        try:
            old = now - d.stat().st_mtime > max_age_s
        except OSError:
            continue
        if m is None or old or (m["host"] == host and not _pid_alive(int(m["pid"]))):
            stale.append(d)
    return stale


@contextlib.contextmanager
def staging_dir(out: str | os.PathLike) -> Iterator[Path]:
    """A fresh staging folder beside ``out`` (same file system: moving files in is a rename).

    Stale staging folders of earlier runs for the same ``out`` (a killed run) are removed first; this
    run's folder is removed on exit, whatever happens.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for d in stale_staging_dirs(out):
        shutil.rmtree(d, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{_staging_prefix(out)}{_host()}-{os.getpid()}-", dir=out.parent))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
