"""The cohort manifest: which videos belong to which participant, group and covariates.

One row per video (CSV or Parquet)::

    participant_id,group,video,roi,age,sex
    007,ASD,videos/p007_a.mp4,,9,F
    007,ASD,videos/p007_b.mp4,,9,F
    012,TDC,/data/site2/p012.mp4,"120,40,640,720",11,M

- ``participant_id`` is text, kept verbatim (``007`` stays ``007``; CSV cells are never parsed as
  numbers, and a Parquet column must already be text) except for leading and trailing white space,
  which is removed with a warning naming the rows: ``"007 "`` would otherwise be a second participant
  beside ``007`` (and ``"videos/a.mp4 "`` a missing file). The same holds for ``group`` and ``video``.
- ``group``: diagnostic group label (text).
- ``video``: path of the video (or OpenPose JSON folder), relative to the manifest's folder or
  absolute. Its ``video_id`` (the name every stage files its artifacts under) is the file stem, or the
  folder name for a folder, as in :mod:`pipeline.pose`.
- ``roi`` (optional): ``x,y,w,h`` in source pixels; an empty cell means the whole frame.
- ``coding`` (optional): the human coding file(s) of the video (BORIS, ELAN, The Observer or CSV; several
  separated by ``|``, e.g. one ELAN file per coder), relative to the manifest's folder or absolute; an
  empty cell: the video is not coded. The flow imports them into ``RUN/codings`` before recognition
  (:mod:`pipeline.codings.plan`, docs/codings.md "In the flow"). Not a covariate.
- ``coding_format`` (optional): the format of the row's coding files (``boris``, ``elan``, ``observer``,
  ``csv``); empty: from the flow's ``codings_format`` or the extension (``.boris``, ``.eaf``). Not a covariate.
- ``video_id`` (optional): the video's id as the flow's manifest copy (``RUN/manifest.csv``) records it;
  it must equal the id derived from ``video`` and is not a covariate (it differs between a participant's
  videos, and the report listed it as a demographic).
- Every other column is a participant covariate and must be constant within a participant. CSV
  covariates whose every non-empty cell is a number become numeric; the text ``NA`` is kept as the
  text ``NA`` (never turned into a missing value); only an empty cell is missing.

Errors (:class:`ManifestError`, a :class:`pipeline.cli.BadInput`, exit 2) name the manifest and the
row: ``manifest.csv row 3 (line 4): video videos/p9.mp4 not found``. Rows are counted from 1 over the
data rows; for CSV the line number (header = line 1) is given too.

:func:`check_manifest_groups` checks, before any work, that the groups a run compares
(``statistics.groups``) are in the manifest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import BadInput

__all__ = ["ManifestError", "Manifest", "REQUIRED", "read_manifest", "video_id_of", "check_manifest_groups"]

log = logging.getLogger("pipeline.manifest")

REQUIRED: tuple[str, ...] = ("participant_id", "group", "video")
OPTIONAL: tuple[str, ...] = ("roi", "video_id", "coding", "coding_format")


class ManifestError(BadInput):
    """The manifest cannot be used; the message names the file and row."""


@dataclass(frozen=True)
class Manifest:
    """A read and checked manifest.

    Attributes
    ----------
    path : Path
        The manifest file.
    videos : pandas.DataFrame
        One row per video, in manifest order: ``participant_id`` (str), ``group`` (str), ``video``
        (absolute path, str), ``video_id`` (str), ``roi`` (tuple (x, y, w, h) or None), ``row`` (1-based
        data row in the manifest), ``coding`` (tuple of absolute paths of the row's coding files, empty
        when none or without the column) and ``coding_format`` (str, empty when not given).
    participants : pandas.DataFrame
        One row per participant in order of first appearance: ``participant_id``, ``group`` and the
        covariate columns.
    covariates : tuple of str
        Covariate column names, in manifest order.
    """

    path: Path
    videos: pd.DataFrame
    participants: pd.DataFrame
    covariates: tuple[str, ...]


def video_id_of(video: str | os.PathLike) -> str:
    """The video id of a video path: the file stem, or the folder name for a folder (as pipeline.pose)."""
    p = Path(video)
    return p.name if p.is_dir() else p.stem


def _parse_roi(text: str) -> tuple[int, int, int, int] | None:
    text = str(text).strip()
    if not text:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        vals = tuple(int(round(float(p))) for p in parts)
    except ValueError:
        vals = ()
    if len(vals) != 4 or vals[0] < 0 or vals[1] < 0 or vals[2] <= 0 or vals[3] <= 0:
        raise ValueError(f"roi must be x,y,w,h with x,y >= 0 and w,h > 0 (pixels), got {text!r}")
    return vals  # type: ignore[return-value]


def _coding_paths(cell: object, base: Path) -> tuple[str, ...]:
    """The ``coding`` cell's files (``|``-separated), absolute (relative ones from the manifest's folder)."""
    if _is_missing(cell):
        return ()
    out = []
    for part in str(cell).split("|"):
        part = part.strip()
        if part:
            p = Path(part)
            out.append(str(Path(os.path.normpath((p if p.is_absolute() else base / p).absolute()))))
    return tuple(dict.fromkeys(out))


def _read_table(path: Path) -> tuple[pd.DataFrame, bool]:
    """The raw manifest table and whether it is CSV (cells as text, nothing parsed)."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), False
        # dtype=str + keep_default_na=False: "007" stays "007", "NA" stays "NA", empty cells are "".
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=False), True
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise ManifestError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})") from None


def _strip_column(values: Sequence[object], column: str, where) -> list[object]:
    """Text cells without leading/trailing white space; one warning naming the column and the rows changed."""
    out, changed = [], []
    for i, v in enumerate(values):
        if isinstance(v, str) and v != v.strip():
            changed.append(i)
            v = v.strip()
        out.append(v)
    if changed:
        shown = ", ".join(where(i) for i in changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        log.warning("%s: leading or trailing white space removed from column %r (%d cell%s: %s)", where(None),
                    column, len(changed), "" if len(changed) == 1 else "s", shown)
    return out


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _covariate_column(values: pd.Series) -> pd.Series:
    """CSV covariate text -> numbers when every non-empty cell is a number; empty cells -> missing."""
    text = values.astype(str)
    empty = text.str.strip() == ""
    filled = text[~empty]
    if len(filled):
        nums = pd.to_numeric(filled, errors="coerce")
        if nums.notna().all():
            out = pd.Series(np.nan, index=values.index, dtype=np.float64)
            out[~empty] = nums.astype(np.float64)
            if (~empty).all() and np.all(np.mod(out.to_numpy(), 1) == 0) and not filled.str.contains(r"[.eE]").any():
                return out.astype(np.int64)
            return out
    return values.where(~empty, None).astype(object)


def read_manifest(path: str | os.PathLike, *, check_videos: bool = True) -> Manifest:
    """Read and check a cohort manifest (see the module docstring for the format).

    Parameters
    ----------
    path : path of a ``.csv`` or ``.parquet`` file
    check_videos : bool
        Require every video path to exist (the pose stage needs the videos; the aggregation stage reads
        only the windows artifacts and passes False).

    Returns
    -------
    Manifest

    Raises
    ------
    FileNotFoundError
        The manifest itself does not exist.
    ManifestError
        On the first problem: missing required column, empty required cell, participant_id not text,
        bad roi, missing video file, a video listed twice (or two videos sharing a video id), a
        participant in two groups, conflicting covariate values. The message names the row(s).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest not found: {path}")
    df, is_csv = _read_table(path)

    def where(i: int | None) -> str:  # i: 0-based data row; None: the file
        if i is None:
            return str(path)
        return f"{path} row {i + 1}" + (f" (line {i + 2})" if is_csv else "")

    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{path}: missing column {missing[0]!r} (required: {', '.join(REQUIRED)}; optional: roi, coding, coding_format; "
            f"other columns are covariates); found: {', '.join(df.columns) or 'no columns'}"
        )
    if df.columns.duplicated().any():
        raise ManifestError(f"{path}: column {df.columns[df.columns.duplicated()][0]!r} appears twice")
    if len(df) == 0:
        raise ManifestError(f"{path}: the manifest has no rows")

    pid = df["participant_id"]
    if not is_csv and not (pd.api.types.is_string_dtype(pid) or pid.dtype == object):
        raise ManifestError(
            f"{path}: column 'participant_id' has type {pid.dtype}; it must be text so that identifiers "
            f"are kept verbatim (leading zeros would be lost)"
        )
    for c in REQUIRED:
        for i, v in enumerate(df[c].tolist()):
            if _is_missing(v):
                raise ManifestError(f"{where(i)}: empty {c!r}")
            if c == "participant_id" and not isinstance(v, str):
                raise ManifestError(f"{where(i)}: participant_id {v!r} is not text")
    stripped = {c: _strip_column(df[c].tolist(), c, where) for c in REQUIRED}

    base = path.parent
    videos, video_ids, rois = [], [], []
    seen_video: dict[str, int] = {}
    seen_id: dict[str, int] = {}
    for i, v in enumerate(str(v) for v in stripped["video"]):
        p = Path(v)
        p = p if p.is_absolute() else base / p
        p = Path(os.path.normpath(p.absolute()))
        if check_videos and not p.exists():
            raise ManifestError(f"{where(i)}: video {v!r} not found ({p})")
        if str(p) in seen_video:
            raise ManifestError(f"{where(i)}: video {v!r} is listed twice (also {where(seen_video[str(p)])})")
        vid = video_id_of(p)
        if vid in seen_id:
            raise ManifestError(
                f"{where(i)}: video {v!r} has the same video id {vid!r} as {where(seen_id[vid])}; "
                f"artifacts are filed by video id, so file names must differ"
            )
        if "video_id" in df.columns and not _is_missing(df["video_id"].iloc[i]) \
                and str(df["video_id"].iloc[i]).strip() != vid:
            raise ManifestError(f"{where(i)}: video_id {df['video_id'].iloc[i]!r} is not the id of video {v!r} "
                                f"({vid!r}: its file name without the extension)")
        seen_video[str(p)], seen_id[vid] = i, i
        videos.append(str(p))
        video_ids.append(vid)
    if "roi" in df.columns:
        for i, r in enumerate(df["roi"].tolist()):
            try:
                rois.append(None if _is_missing(r) else _parse_roi(r))
            except ValueError as exc:
                raise ManifestError(f"{where(i)}: {exc}") from None
    else:
        rois = [None] * len(df)
    codings = [_coding_paths(df["coding"].iloc[i], base) if "coding" in df.columns else ()
               for i in range(len(df))]
    coding_formats = ["" if "coding_format" not in df.columns or _is_missing(df["coding_format"].iloc[i])
                      else str(df["coding_format"].iloc[i]).strip().lower() for i in range(len(df))]

    pids = [str(v) for v in stripped["participant_id"]]
    groups = [str(v) for v in stripped["group"]]
    first_group: dict[str, tuple[str, int]] = {}
    for i, (p_, g) in enumerate(zip(pids, groups)):
        if p_ in first_group and first_group[p_][0] != g:
            g0, i0 = first_group[p_]
            raise ManifestError(
                f"{where(i)}: participant {p_!r} is in group {g!r} here but in {g0!r} at {where(i0)}"
            )
        first_group.setdefault(p_, (g, i))

    covariates = tuple(c for c in df.columns if c not in REQUIRED + OPTIONAL)
    cov = pd.DataFrame(index=df.index)
    for c in covariates:
        cov[c] = _covariate_column(df[c]) if is_csv else df[c]
    for c in covariates:
        first: dict[str, tuple[object, int]] = {}
        for i, (p_, v) in enumerate(zip(pids, cov[c].tolist())):
            v_missing = _is_missing(v) or (v is pd.NA)
            if p_ in first:
                v0, i0 = first[p_]
                v0_missing = _is_missing(v0) or (v0 is pd.NA)
                if v_missing != v0_missing or (not v_missing and v != v0):
                    raise ManifestError(
                        f"{where(i)}: participant {p_!r} has conflicting {c!r} values ({v0!r} at "
                        f"{where(i0)}, {v!r} here); covariates must be constant within a participant"
                    )
            else:
                first[p_] = (v, i)

    videos_df = pd.DataFrame(
        {
            "participant_id": pids,
            "group": groups,
            "video": videos,
            "video_id": video_ids,
            "roi": rois,
            "row": np.arange(1, len(df) + 1),
            "coding": codings,
            "coding_format": coding_formats,
        }
    )
    keep = ~pd.Series(pids).duplicated().to_numpy()
    participants = pd.concat(
        [videos_df.loc[keep, ["participant_id", "group"]].reset_index(drop=True),
         cov.loc[keep].reset_index(drop=True)],
        axis=1,
    )
    return Manifest(path=path, videos=videos_df, participants=participants, covariates=covariates)


def check_manifest_groups(manifest: Manifest, groups: Iterable[str]) -> None:
    """Raise :class:`ManifestError` (a ValueError) naming ``statistics.groups`` and every requested
    group that no participant of ``manifest`` belongs to, so that a run is refused at submission instead
    of after pose and recognition, when the statistics find fewer groups than they compare."""
    present = list(dict.fromkeys(manifest.participants["group"]))
    missing = [g for g in dict.fromkeys(groups) if g not in set(present)]
    if missing:
        raise ManifestError(
            f"statistics.groups: group{'s' if len(missing) > 1 else ''} {', '.join(repr(g) for g in missing)} "
            f"not in the manifest {manifest.path} (its groups: {', '.join(repr(g) for g in present)})")
