"""Which files in an output folder are ours: one output manifest per stage and folder, one way to remove.

Every tool that writes into a folder the user names (``--out``) records what it wrote there in an
*output manifest*, ``<folder>/.<stage>.outputs.json``::

    {"format": "microaction-cohort.outputs", "version": 1, "stage": "pose",
     "files":   {"keypoints/v1.parquet": {"size": 81234, "mtime_ns": 1764..., "sha256": "9f2c..."}, ...},
     "pending": {}}

- **Provably ours.** The format key and version must match exactly and ``stage`` must be the stage
  asking; anything else (a user's JSON file, a manifest of another tool, an older format) records
  nothing. Paths are relative POSIX paths confined to the folder (no ``..``, no absolute path, no
  symlink on the way); an entry that breaks this is dropped when read.
- **Still ours.** A listed file counts as ours only while it matches its record: same size, and the
  same modification time or else the same sha256 (the time is the fast path, the hash decides when
  the time changed). A file the user replaced or edited is *theirs*: it is never deleted or
  overwritten, and the removal reports it.
- **Claimed.** A per-item stage lists the names it is about to write under ``claimed`` (they were
  free or ours a moment before); whatever a kill leaves under them is ours and is fingerprinted by
  the next run. The item's files are recorded, and the claim dropped, when it is done.
- **Pending.** A tool that moves a staged set into place first records the staged files under
  ``pending`` (a rename keeps size and time), then moves them, then makes them ``files``; a kill in
  between leaves only files that one of the two records vouches for (:class:`StagedSet`).

One function removes: :func:`remove_owned` (only files the manifest lists, only inside the folder,
only while they match; the user's files stay). One function checks before writing:
:func:`check_free` (a name we are about to write that holds a file which is not ours stops the run
with :class:`ForeignOutput`, exit 2, one line naming the file). Per-item stages (:mod:`pipeline.stage`)
record each item's files after computing it; sets of outputs (the read-out, the statistics, the
report) are written through :class:`StagedSet`.

Updates of a manifest happen under an exclusive ``flock`` on the folder, so items finished at the same
time by a flow's parallel tasks do not lose each other's records. The manifest is written atomically.

Files from before this scheme (no manifest) are *adopted* when the caller can show they are its own
by another record it wrote (a sidecar naming the stage, the report's listing with the page's own
mark, the statistics' previous ``.outputs.json``): they are then fingerprinted and recorded once.
Nothing else is adopted; in particular a legacy listing alone never makes a file deletable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath

from pipeline.artifacts import SIDECAR_SUFFIX, atomic_write_text, named_write_error, sha256_file
from pipeline.cli import BadInput

__all__ = [
    "FORMAT", "VERSION", "ForeignOutput", "Fingerprint", "Manifest", "Removal", "manifest_path", "read_manifest",
    "relative_name", "update_manifest", "status", "foreign_names", "foreign_message", "check_free", "remove_owned",
    "StagedSet", "stale_staging_dirs", "named_write_error",
]

log = logging.getLogger("pipeline.ownership")

FORMAT = "microaction-cohort.outputs"
VERSION = 1
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ForeignOutput(BadInput):
    """An output folder holds a file under a name the tool would write that is not the tool's own (a
    user's file, or one of ours the user changed): the tool refuses rather than overwrite or delete it."""


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What a file looked like when we wrote it."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> "Fingerprint":
        st = os.lstat(path)
        return cls(int(st.st_size), int(st.st_mtime_ns), sha256_file(path))

    def matches(self, path: str | os.PathLike) -> bool:
        """The file at ``path`` is a regular file (not a link) with this content (size, then time or hash)."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if not _is_regular(st) or st.st_size != self.size:
            return False
        return st.st_mtime_ns == self.mtime_ns or sha256_file(path) == self.sha256

    def to_dict(self) -> dict:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Fingerprint":
        size, mtime, sha = d["size"], d["mtime_ns"], d["sha256"]
        if not (isinstance(size, int) and isinstance(mtime, int) and isinstance(sha, str) and len(sha) == 64
                and not sha.strip("0123456789abcdef")):
            raise ValueError("bad fingerprint")
        return cls(size, mtime, sha)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def relative_name(name: str | os.PathLike) -> str | None:
    """``name`` as a clean relative POSIX path inside a folder, or None if it could leave the folder."""
    text = Path(name).as_posix() if not isinstance(name, str) else name.replace("\\", "/")
    p = PurePosixPath(text)
    if p.is_absolute() or not p.parts or any(part in ("..", ".", "") for part in p.parts):
        return None
    return str(p)


def _inside(folder: Path, rel: str) -> Path | None:
    """The path of ``rel`` in ``folder`` if no component on the way is a symlink (so it cannot lead out)."""
    cur = folder
    for part in PurePosixPath(rel).parts:
        cur = cur / part
        if cur.is_symlink():
            return None
    return cur


@dataclasses.dataclass
class Manifest:
    """A stage's record of its files in one folder (see the module docstring)."""

    folder: Path
    stage: str
    files: dict[str, Fingerprint] = dataclasses.field(default_factory=dict)
    pending: dict[str, Fingerprint] = dataclasses.field(default_factory=dict)
    claimed: set[str] = dataclasses.field(default_factory=set)

    def owns(self, rel: str) -> bool:
        """``rel`` exists and matches what this stage recorded for it (done or pending)."""
        path = _inside(self.folder, rel)
        if path is None:
            return False
        return any(fp is not None and fp.matches(path) for fp in (self.files.get(rel), self.pending.get(rel)))

    def recorded(self, rel: str) -> bool:
        return rel in self.files or rel in self.pending

    def to_json(self) -> str:
        doc = {"format": FORMAT, "version": VERSION, "stage": self.stage,
               "note": f"files {self.stage} wrote in this folder; a rerun removes or replaces only these, "
                       "and only while they are unchanged",
               "files": {k: v.to_dict() for k, v in sorted(self.files.items())},
               "pending": {k: v.to_dict() for k, v in sorted(self.pending.items())},
               "claimed": sorted(self.claimed)}
        return json.dumps(doc, indent=1) + "\n"


def manifest_path(folder: str | os.PathLike, stage: str) -> Path:
    if not _STAGE_NAME.match(stage):
        raise ValueError(f"stage name {stage!r} cannot name a manifest file")
    return Path(folder) / f".{stage}.outputs.json"


_parsed: dict[str, tuple[tuple[int, int, int], Manifest]] = {}  # path -> (stat key, manifest as read)


def read_manifest(folder: str | os.PathLike, stage: str) -> Manifest:
    """The stage's manifest in ``folder``; empty when absent, unreadable, of another format, version or stage.

    A manifest unchanged since this process last read it (same inode, size and mtime: every write is an
    atomic replace, so a new file) is not parsed again: a rerun that skips a thousand up-to-date items
    reads it once, not a thousand times (about 60 ms each at 3000 entries).
    """
    folder = Path(folder)
    path = manifest_path(folder, stage)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Manifest(folder, stage)
    except OSError:
        st = None
    key = (st.st_ino, st.st_size, st.st_mtime_ns) if st is not None else None
    cached = _parsed.get(str(path))
    if key is not None and cached is not None and cached[0] == key:
        m = cached[1]
    else:
        m = _parse(folder, stage, path)
        if key is not None:
            _parsed[str(path)] = (key, m)
    return Manifest(folder, stage, dict(m.files), dict(m.pending), set(m.claimed))


def _write(m: Manifest) -> None:
    """Write the manifest atomically and remember it as read (no parse on the next read)."""
    path = manifest_path(m.folder, m.stage)
    atomic_write_text(path, m.to_json())
    with contextlib.suppress(OSError):
        st = os.stat(path)
        _parsed[str(path)] = ((st.st_ino, st.st_size, st.st_mtime_ns),
                              Manifest(m.folder, m.stage, dict(m.files), dict(m.pending), set(m.claimed)))


def _parse(folder: Path, stage: str, path: Path) -> Manifest:
    m = Manifest(folder, stage)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return m
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); it records nothing", path, exc)
        return m
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT and doc.get("version") == VERSION
            and doc.get("stage") == stage):
        log.warning("%s is not a version-%d output manifest of %s; it records nothing", path, VERSION, stage)
        return m
    for key, target in (("files", m.files), ("pending", m.pending)):
        entries = doc.get(key) if isinstance(doc.get(key), dict) else {}
        for name, fp in entries.items():
            rel = relative_name(name) if isinstance(name, str) else None
            if rel is None or rel != name:
                log.warning("%s: entry %r leaves the folder; ignored", path, name)
                continue
            try:
                target[rel] = Fingerprint.from_dict(fp)
            except (KeyError, TypeError, ValueError):
                log.warning("%s: entry %r has no valid fingerprint; ignored", path, name)
    claimed = doc.get("claimed") if isinstance(doc.get("claimed"), list) else []
    m.claimed = {n for n in claimed if isinstance(n, str) and relative_name(n) == n}
    return m


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (released on exit); no lock where the file system has none."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a network file system without flock
            log.debug("no lock on %s (%s)", folder, exc)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _rel_of(folder: Path, path: str | os.PathLike) -> str:
    """A ``str`` is a name relative to ``folder``; a ``Path`` is a path (absolute, or relative to the
    working folder) that must lie inside ``folder``. Returns the relative name."""
    if isinstance(path, str):
        rel = relative_name(path)
    else:
        p = Path(path)
        try:
            rel = relative_name(p.relative_to(folder))
        except ValueError:
            try:
                rel = relative_name(p.resolve().relative_to(folder.resolve()))
            except ValueError:
                rel = None
    if rel is None:
        raise ValueError(f"{path} is not inside {folder}")
    return rel


def update_manifest(
    folder: str | os.PathLike, stage: str, *, add: Iterable[str | os.PathLike] = (),
    drop: Iterable[str] = (), pending: Mapping[str, Fingerprint] | None = None,
    settle: bool = False, fingerprints: Mapping[str, Fingerprint] | None = None,
    claim: Iterable[str] = (), unclaim: Iterable[str] = (),
) -> Manifest:
    """Change the stage's manifest under the folder lock and write it atomically; returns the new record.

    ``add``: files now in the folder recorded as they are now (a ``str`` is a name relative to the
    folder, a ``Path`` a path inside it);
    ``fingerprints``: records known already (relative name -> fingerprint); ``drop``: names no longer
    ours; ``settle``: pending records whose files are in place become file records, the others are
    dropped (first, so a killed commit's files stay ours); ``pending``: replaces the pending records;
    ``claim``: names (free or ours, just checked) the stage is about to write one file at a time, so
    that what a kill leaves under them (a table without its sidecar) is known to be ours; ``unclaim``:
    names whose writing is over (recorded, or never written).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder):
        m = read_manifest(folder, stage)
        for rel in drop:
            m.files.pop(rel, None)
            m.pending.pop(rel, None)
        for p in add:
            rel = _rel_of(folder, p)
            m.files[rel] = Fingerprint.of(folder / rel)
        if fingerprints:
            m.files.update(fingerprints)
        if settle:
            for rel, fp in m.pending.items():
                path = _inside(folder, rel)
                if path is not None and fp.matches(path):
                    m.files[rel] = fp
            m.pending = {}
        if pending is not None:
            m.pending = dict(pending)
        m.claimed |= {r for r in (relative_name(c) for c in claim) if r}
        m.claimed -= set(unclaim)
        target = manifest_path(folder, stage)
        for leftover in folder.glob(f".{target.name}.*.tmp"):  # a killed writer's; we hold the lock
            leftover.unlink(missing_ok=True)
        _write(m)
    return m


# --------------------------------------------------------------------------------------------------
# Checking and removing
# --------------------------------------------------------------------------------------------------
def status(m: Manifest, rel: str) -> str:
    """``absent`` (nothing there), ``ours`` (recorded and unchanged), ``changed`` (recorded, but the file
    is not what we wrote), ``unrecorded`` (a file we never recorded) or ``blocked`` (a link, or a non-folder
    where a folder of the path must be)."""
    parts = PurePosixPath(rel).parts
    cur = m.folder
    for k, part in enumerate(parts):
        cur = cur / part
        if cur.is_symlink():
            return "blocked"
        if k < len(parts) - 1 and cur.exists() and not cur.is_dir():
            return "blocked"
    if not cur.exists():
        return "absent"
    if cur.is_dir():
        return "blocked"
    if m.owns(rel):
        return "ours"
    return "changed" if m.recorded(rel) else "unrecorded"


def _blocker(folder: Path, rel: str) -> str:
    """The part of ``rel`` that stands in the way: a link, or a file where a folder must be."""
    parts = PurePosixPath(rel).parts
    for k in range(1, len(parts) + 1):
        cur = folder.joinpath(*parts[:k])
        if cur.is_symlink() or (k < len(parts) and cur.exists() and not cur.is_dir()):
            return str(PurePosixPath(*parts[:k]))
    return rel


def foreign_names(
    folder: str | os.PathLike, stage: str, names: Iterable[str], *,
    adopt: Callable[[str], bool] | None = None, manifest: Manifest | None = None,
) -> tuple[list[str], list[str]]:
    """Of the relative ``names`` the stage is about to write: (foreign, adoptable).

    A name is fine when nothing is there or the manifest vouches for the file. A changed or unrecorded
    file is adoptable when ``adopt(rel)`` says the stage can show otherwise that it wrote it (e.g. its
    sidecar names the stage); otherwise it is foreign. Links and files where a folder must be are foreign.
    """
    m = manifest if manifest is not None else read_manifest(folder, stage)
    foreign, adoptable = [], []
    for name in names:
        rel = relative_name(name)
        if rel is None:
            raise ValueError(f"{name!r} is not a path inside an output folder")
        s = status(m, rel)
        if s in ("absent", "ours"):
            continue
        if s in ("changed", "unrecorded") and (rel in m.claimed or (adopt is not None and adopt(rel))):
            adoptable.append(rel)
        elif s == "blocked":
            foreign.append(_blocker(m.folder, rel))
        else:
            foreign.append(rel)
    return list(dict.fromkeys(foreign)), list(dict.fromkeys(adoptable))


def foreign_message(folder: str | os.PathLike, stage: str, foreign: list[str]) -> str:
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    return (f"{Path(folder) / foreign[0]}{more} is in the way: {stage} would write there, but it is not a file "
            f"{stage} wrote (or it changed since); move it or choose another output folder")


def check_free(
    folder: str | os.PathLike, stage: str, names: Iterable[str], *, adopt: Callable[[str], bool] | None = None,
) -> list[str]:
    """Raise :class:`ForeignOutput` (one line, the first foreign file) if a name in ``names`` is taken by a
    file that is not ours; return the adoptable names (not recorded yet: see :func:`foreign_names`)."""
    foreign, adoptable = foreign_names(folder, stage, names, adopt=adopt)
    if foreign:
        raise ForeignOutput(foreign_message(folder, stage, foreign))
    return adoptable


@dataclasses.dataclass
class Removal:
    """What :func:`remove_owned` did: files removed, and recorded files kept because they changed."""

    removed: list[Path] = dataclasses.field(default_factory=list)
    kept: list[Path] = dataclasses.field(default_factory=list)


def remove_owned(folder: str | os.PathLike, stage: str, names: Iterable[str] | None = None, *,
                 prune_dirs: bool = True) -> Removal:
    """Remove files of ``stage`` from ``folder``: only those its manifest lists (of ``names``, or all),
    only inside the folder, only while they match the record. The only function that deletes outputs.

    A listed file that changed since (the user replaced or edited it) is kept, reported in the result and
    in a warning, and dropped from the manifest (it is the user's now). Folders left empty by a removal
    are removed too (inside ``folder`` only), unless ``prune_dirs`` is false (per-item stages: another
    item may be about to write into the same subfolder). Returns a :class:`Removal`.
    """
    folder = Path(folder)
    out = Removal()
    if not manifest_path(folder, stage).exists():
        return out
    with _locked(folder):
        m = read_manifest(folder, stage)
        wanted = set(m.files) | set(m.pending) if names is None else {relative_name(n) for n in names} - {None}
        parents: set[Path] = set()
        for rel in sorted(wanted):
            if not m.recorded(rel):
                continue  # not ours to judge
            path = _inside(folder, rel)
            done, pend = m.files.get(rel), m.pending.get(rel)
            if path is None or not (path.exists() or path.is_symlink()):
                m.files.pop(rel, None)  # a pending record stays: its file may still arrive
            elif done is not None and done.matches(path):  # the file we recorded as written
                path.unlink()
                out.removed.append(path)
                m.files.pop(rel, None)
                parents.update(p for p in path.parents if p != folder and folder in p.parents)
            elif pend is not None and pend.matches(path):  # a file of a set that was moved in, then killed
                path.unlink()
                out.removed.append(path)
                m.files.pop(rel, None)
                m.pending.pop(rel, None)
                parents.update(p for p in path.parents if p != folder and folder in p.parents)
            else:
                log.warning("kept %s: %s recorded it, but it changed since (it is not removed)", path, stage)
                out.kept.append(path)
                m.files.pop(rel, None)
                m.pending.pop(rel, None)
        for d in sorted(parents if prune_dirs else (), key=lambda p: len(p.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                d.rmdir()  # only if empty
        _write(m)
    return out


# --------------------------------------------------------------------------------------------------
# Staged sets: write a whole output set inside the folder, then move it in
# --------------------------------------------------------------------------------------------------
STAGING_MAX_AGE_S = 24 * 3600
_STAGING = re.compile(r"^\.staging-(?P<stage>[A-Za-z0-9_.-]+?)-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_LEGACY_STAGING = re.compile(r"staging-(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", platform.node() or "host")


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


def _is_stale(d: Path, host: str, pid: int | None, now: float, max_age_s: float) -> bool:
    try:
        old = now - d.stat().st_mtime > max_age_s
    except OSError:
        return False
    return pid is None or old or (host == _host() and not _pid_alive(pid))


def stale_staging_dirs(folder: str | os.PathLike, stage: str, *, max_age_s: float = STAGING_MAX_AGE_S) -> list[Path]:
    """Staging folders of ``stage`` in ``folder`` that no live run uses (its process is gone on this host,
    or it is older than ``max_age_s``), and the statistics' older staging folders beside ``folder``
    (``.<folder name>.staging-...``, from before staging moved inside the output folder)."""
    folder = Path(folder)
    now, stale = time.time(), []
    with contextlib.suppress(OSError):
        for d in folder.iterdir():
            m = _STAGING.match(d.name)
            if m and m["stage"] == stage and d.is_dir() and not d.is_symlink() \
                    and _is_stale(d, m["host"], int(m["pid"]), now, max_age_s):
                stale.append(d)
    prefix = f".{folder.name}.staging-"
    with contextlib.suppress(OSError):
        for d in folder.parent.iterdir():
            if not d.name.startswith(prefix) or d.is_symlink() or not d.is_dir():
                continue
            m = _LEGACY_STAGING.search(d.name[len(f".{folder.name}."):])
            if _is_stale(d, m["host"] if m else "", int(m["pid"]) if m else None, now, max_age_s):
                stale.append(d)
    return stale


class StagedSet:
    """Write a set of outputs into ``<folder>/.staging-<stage>-<host>-<pid>-<random>/`` and move it in.

    ::

        with StagedSet(out, "aggregate") as st:
            with st.writing("cohort.parquet") as tmp:   # write to tmp; an OSError names out/cohort.parquet
                ...
            st.commit(keep=["segments/v1.parquet"])      # the previous set's other files go

    Entering removes stale staging folders of the stage (killed runs); leaving removes this one,
    whatever happened. :meth:`commit` (see there) makes the staged files the folder's set: until it
    runs, the folder is unchanged.
    """

    def __init__(self, folder: str | os.PathLike, stage: str, *, adopt: Callable[[str], bool] | None = None) -> None:
        self.folder = Path(folder)
        self.stage = stage
        self.adopt = adopt
        self.path: Path | None = None
        self.names: list[str] = []

    def __enter__(self) -> "StagedSet":
        self.folder.mkdir(parents=True, exist_ok=True)
        for d in stale_staging_dirs(self.folder, self.stage):
            shutil.rmtree(d, ignore_errors=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".staging-{self.stage}-{_host()}-{os.getpid()}-", dir=self.folder))
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def final(self, rel: str) -> Path:
        return self.folder / rel

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[Path]:
        """The staged path for output ``rel`` (its folder made); an OSError while writing names the final path."""
        clean = relative_name(rel)
        if clean is None or self.path is None:
            raise ValueError(f"{rel!r} is not a path inside {self.folder}")
        staged = self.path / clean
        try:
            staged.parent.mkdir(parents=True, exist_ok=True)
            yield staged
        except OSError as exc:
            raise named_write_error(exc, self.final(clean)) from exc
        if clean not in self.names:
            self.names.append(clean)

    def add_written(self, staged: str | os.PathLike) -> str:
        """Record a file a writer put into the staging folder by itself (e.g. a sidecar); returns its name."""
        rel = Path(staged).relative_to(self.path).as_posix()
        if rel not in self.names:
            self.names.append(rel)
        return rel

    def check(self, names: Iterable[str]) -> None:
        """Refuse (:class:`ForeignOutput`) if the folder holds a file of the user's under one of ``names``;
        adopt the files earlier versions of the stage can be shown to have written."""
        adoptable = check_free(self.folder, self.stage, names, adopt=self.adopt)
        if adoptable or read_manifest(self.folder, self.stage).pending:
            update_manifest(self.folder, self.stage, add=adoptable, settle=True)

    def commit(self, *, keep: Iterable[str] = ()) -> list[Path]:
        """Move the staged files in; the previous set's files not in it (and not in ``keep``) are removed.

        Order: refuse if a target is not ours (nothing changed then); record the staged files as pending;
        remove the previous sidecars among the targets (no old sidecar vouches for a file while the set is
        mixed); move data files, then sidecars (``X.json`` beside a staged ``X``), so that any file that
        has a sidecar belongs to a set whose data files are all in place; remove the previous set's files
        that the new set drops; make the pending records the manifest. Returns the final paths.
        """
        assert self.path is not None, "commit inside the with block"
        names = list(self.names)
        keep = {k for k in (relative_name(k) for k in keep) if k}
        self.check(names)
        try:
            fps = {rel: Fingerprint.of(self.path / rel) for rel in names}
        except OSError as exc:
            raise named_write_error(exc, self.folder) from exc
        update_manifest(self.folder, self.stage, pending=fps)
        name_set = set(names)
        sidecars = [n for n in names if n.endswith(SIDECAR_SUFFIX) and n[: -len(SIDECAR_SUFFIX)] in name_set]
        data = [n for n in names if n not in set(sidecars)]
        remove_owned(self.folder, self.stage, sidecars)
        final: list[Path] = []
        for rel in data + sidecars:
            dest = self.final(rel)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path / rel, dest)
            except OSError as exc:
                raise named_write_error(exc, dest) from exc
            final.append(dest)
        previous = read_manifest(self.folder, self.stage)
        drop = sorted(set(previous.files) - name_set - keep)
        remove_owned(self.folder, self.stage, drop)
        update_manifest(self.folder, self.stage, settle=True)
        return final
