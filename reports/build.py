"""Build the HTML report of a cohort run: ``python -m reports.build --run DIR --out DIR``.

Writes ``OUT/index.html`` (the cohort report: summary, methods, quality control, results, limitations)
and ``OUT/participants/<name>.html`` (one page per participant: QC, ethogram, per-action percent time,
bouts, latency and percentile within a reference group). Every page is self-contained: the stylesheet
is inline and the figures are PNG data URIs, so a page opens from disk, prints, and can be mailed
without its folder; a Content-Security-Policy forbids scripts and any request.

Safety: the pages show the manifest's pseudonymous participant IDs only. Video file names and paths
(which may contain real names) are replaced by ``video 1``, ``video 2``... everywhere, including in
error messages, unless ``show_paths`` is set. Every string from the run is HTML-escaped by Jinja2's
autoescaping. When a sidecar says the model was trained on simulated data (or the cohort is
simulated), every page carries a banner saying the results are a demonstration.

The run-folder layout is in :mod:`reports.run` and docs/report.md.

Ownership: the pages are written into a staging folder inside ``OUT`` and committed together
(:class:`pipeline.ownership.StagedSet`, manifest ``OUT/.report.outputs.json`` with each page's
fingerprint). A file of the user's under a page name (``index.html``, ``participants/...``) stops the
build with a one-line error (exit 2) and nothing in ``OUT`` changes; a rebuild removes only pages
the manifest records and that are unchanged. The ``report.json`` listing of earlier versions is read
once: a page it lists is adopted only if it bears a page name of ours *and* our page's own
Content-Security-Policy line; then the listing is removed. A listing alone never makes a file
deletable (``{"pages": ["Documents/cv.html"]}`` deletes nothing).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined

from analysis.tables import format_p
from pipeline.artifacts import sha256_file
from pipeline.cli import BadInput, check_output_dir, handle_errors, make_parser, progress, report_written, setup_logging
from pipeline.ownership import StagedSet, read_manifest, relative_name, update_manifest
from pipeline.run_folder import RunFolder
from pipeline.run_lock import lock_for_output
from pipeline.settings import add_arguments, from_args
from reports.figures import ethogram_figure, figure_image, png_data_uri, qc_figure, violin_image
from reports.validation import coded_participants, coder_videos, validation_context
from reports.methods import methods_sections, simulated_provenance
from reports.run import Run, VideoInfo, load_run
from reports.settings import ReportSettings
from reports.summaries import (
    bout_rows,
    demographics,
    effects_table,
    error_aware_rows,
    group_summary,
    participant_actions,
    qc_by_participant,
)
from reports.summaries import reference_group as default_reference

__all__ = ["build_report", "build_report_files", "page_name", "main", "REPORT_VERSION", "STAGE"]

log = logging.getLogger(__name__)
REPORT_VERSION = "1"
STAGE = "report"  # the output manifest's stage name: OUT/.report.outputs.json
_LEGACY_LISTING = "report.json"  # earlier versions' list of pages (no fingerprints); migrated once
_PAGE_NAME = re.compile(r"^(index\.html|participants/[A-Za-z0-9-]+-[0-9a-f]{8}\.html)$")
_PAGE_MARK = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'"  # in base.html.j2


# -- formatting filters (templates escape their output; these only format numbers) ----------------
def _finite(v: Any) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _num(v: Any, digits: int = 2) -> str:
    return f"{float(v):,.{digits}f}" if _finite(v) else "—"


def _signed(v: Any, digits: int = 1) -> str:
    return f"{float(v):+.{digits}f}" if _finite(v) else "—"


def _pct(v: Any) -> str:
    return f"{100 * float(v):.0f} %" if _finite(v) else "—"


def _pval(v: Any) -> str:
    return format_p(float(v)) if _finite(v) else "—"


def _duration(seconds: Any) -> str:
    """Seconds as '2 h 05 min', '12 min 30 s' or '40 s'."""
    if not _finite(seconds):
        return "—"
    t = int(round(float(seconds)))
    h, rest = divmod(t, 3600)
    m, sec = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {sec:02d} s" if m else f"{sec} s"


def make_environment() -> Environment:
    """Jinja2 environment over the packaged templates, autoescaping every template, strict about undefined names."""
    env = Environment(loader=PackageLoader("reports", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters.update(num=_num, signed=_signed, pct=_pct, pval=_pval, duration=_duration)
    return env


def page_name(participant_id: str) -> str:
    """File name of a participant's page: a readable slug plus a hash of the exact ID (IDs differing only in
    punctuation or case stay apart; no character of the ID reaches the file system unfiltered)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", participant_id).strip("-")[:40] or "participant"
    digest = hashlib.sha256(participant_id.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}.html"


class _Redactor:
    """Replaces video paths, file names and stems by the video's pseudonymous label (``P01 video 1``)."""

    def __init__(self, run: Run, show_paths: bool) -> None:
        self.pairs: list[tuple[str, str]] = []
        self._pattern = None
        if show_paths:
            return
        for pid, videos in run.videos.items():
            for v in videos:
                label = f"[{v.label} of participant {pid}]"
                for s in {v.source or "", Path(v.source or "").name, v.video_id}:
                    if len(s) >= 3:
                        self.pairs.append((s, label))
        root = str(run.root.resolve())
        if len(root) > 1:  # the absolute path only: a relative "." or "run" would match ordinary text
            self.pairs.append((root, "<run folder>"))
        self.pairs.sort(key=lambda p: -len(p[0]))  # full paths before the names inside them

        # Whole names only (not inside a longer word or number), longest first, in one pass.
        self._labels = dict(self.pairs)
        self._pattern = (re.compile("(?<![A-Za-z0-9])(" + "|".join(re.escape(p) for p, _ in self.pairs) + ")(?![A-Za-z0-9])")
                         if self.pairs else None)  # fmt: skip

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str) or self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._labels[m.group(1)], text)


def _limitations(run: Run, banner: str | None, ref: str | None) -> list[str]:
    lim = []
    if banner:
        lim.append(f"Demonstration: {banner}. Nothing here describes real people.")
    lim += [
        "Percent time comes from an automatic recogniser, not from trained annotators. Its errors are not uniform: "
        "rare, brief or subtle actions are missed more often, and the read-out's threshold and minimum duration "
        "trade missed detections against false ones (the Methods give the values used).",
        "Micro-DualNet is trained on trimmed clips of a fixed taxonomy; in untrimmed conversation every frame is "
        "forced into that taxonomy or into 'no micro-action', and behaviour outside the taxonomy is not measured.",
        "Frames without a usable pose of the participant (out of view, occluded, implausible skeleton) are left out "
        "of the denominators; participants with much missing pose are measured over less time (see quality control).",
        "Group comparisons are cross-sectional associations, not causal effects; with many actions and contrasts, "
        "adjusted p-values control the stated error rate only within the stated family.",
        "The hurdle model separates whether an action occurs from how much of the time it occurs; odds ratios of the "
        "intensity part describe the mean share of time among participants who showed the action only.",
    ]
    if run.results is not None:
        bad = run.results["note"].fillna("").str.startswith("not estimable").sum()
        if bad:
            lim.append(f"{int(bad)} of {len(run.results)} tests could not be estimated (too few participants with the "
                       "action, or separation); their rows carry the reason.")  # fmt: skip
    lim.append("Percentiles on the participant pages compare with " + (f"the {ref} group" if ref else "the whole cohort")
               + " of this run, not with population norms.")  # fmt: skip
    return lim


def top_findings(results: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` estimable tests with the smallest p (ties: adjusted p, action, contrast, part), both parts,
    with their odds ratio, its interval and the AME: the same columns and "A vs B" wording as the
    full table (the hurdle's publication table shows the odds ratio alone and writes "A > B")."""
    est = results[results["p"].notna()]
    return est.sort_values(["p", "p_adj", "action", "contrast", "part"], kind="mergesort").head(k)


def top_findings_caption(results: pd.DataFrame, k: int) -> str:
    first = results.iloc[0] if len(results) else {}
    ci = float(first.get("ci_level", 0.95) or 0.95) if len(results) else 0.95
    return (f"The {k} tests with the smallest p of {int(results['p'].notna().sum())} "
            f"({first.get('selection', '') if len(results) else ''}). Probability part: odds of showing the action "
            "at all; intensity part: odds of the share of time among the participants who showed it. OR: odds ratio "
            f"of the first group of the contrast relative to the second, with its {100 * ci:.0f} % confidence "
            f"interval; AME: average marginal effect in percentage points. Covariates: "
            f"{first.get('covariates', 'none') if len(results) else 'none'}. p_adj: "
            f"{first.get('family', '') if len(results) else ''}.")


_SEPARATION = re.compile(r"^separation \((?P<what>[^)]*)\): ")


def contrast_note(row) -> str:
    """A results row's note as it reads on that row. The hurdle fits one model per action over all
    groups, so its separation note names the group that caused it ("separation (TDC: all engaged)")
    on every contrast of the action, also on "ASD vs PSY"; said as the action's model, it no longer
    reads as if it were about the row's groups."""
    note = getattr(row, "note", None)
    if not isinstance(note, str) or not note:
        return ""
    m = _SEPARATION.match(note)
    if m is None:
        return note
    named = {g.strip() for g in re.findall(r"(\w[\w-]*):", m["what"])}
    if named and named <= {row.group_a, row.group_b}:
        return note
    rest = note[m.end():]
    return (f"this action's model (all groups together) had separation ({m['what']}), so each of its "
            f"contrasts uses {rest}")


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in df.to_dict("records")]


def _video_rows(videos: Sequence[VideoInfo], redact: _Redactor, show_paths: bool) -> list[dict]:
    rows = []
    for v in videos:
        qc = v.qc or {}
        status = "excluded: " + v.excluded if v.excluded else ("included" if qc.get("status") != "failed" else "failed")
        rows.append({
            "label": v.label + (f" ({v.source})" if show_paths else ""),
            "duration_s": v.duration_s,
            "frames_posed": qc.get("frames_posed", "—"),
            "usable": qc.get("valid_fraction"),
            "no_pose_s": sum(b - a for a, b in v.no_pose) if v.no_pose or v.windows is not None else None,
            "windows": (f"{int(v.windows['classified'].sum())} / {len(v.windows)}" if v.windows is not None else "—"),
            "flags": str(qc.get("flags") or ""),
            "status": redact(status),
        })  # fmt: skip
    return rows


def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, reference_group: str | None = None,
                 show_paths: bool = False, show_progress: bool = False) -> Path:  # fmt: skip
    """Read a run folder and write the cohort report and one page per participant; returns ``index.html``.

    See :func:`build_report_files` (which returns every page written).
    """
    return build_report_files(run_dir, out_dir, reference_group=reference_group, show_paths=show_paths,
                              show_progress=show_progress)[0]


def build_report_files(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, reference_group: str | None = None,
                       show_paths: bool = False, show_progress: bool = False) -> list[Path]:  # fmt: skip
    """Read a run folder and write the cohort report and one page per participant.

    Parameters
    ----------
    run_dir : path
        The run folder (layout in :mod:`reports.run`).
    out_dir : path
        Where ``index.html`` and ``participants/`` go (created).
    reference_group : str, optional
        Group for the participants' percentiles; default ``"TDC"`` when present, else the whole cohort.
    show_paths : bool
        Show the manifest's video paths (off by default: file names can contain names).
    show_progress : bool
        Progress bar over the participant pages (stderr).

    Returns
    -------
    list of pathlib.Path
        The pages written, ``out_dir/index.html`` first.

    Raises
    ------
    pipeline.cli.BadInput
        Unusable run folder or a reference group absent from the cohort.
    pipeline.ownership.ForeignOutput
        A file of the user's holds a page name in ``out_dir`` (nothing there is changed then).
    """
    run = load_run(run_dir)
    ref = default_reference(run, reference_group)
    if ref is not None and ref not in set(run.cohort["group"]):
        raise BadInput(f"--reference-group {ref!r} is not a group of the cohort ({', '.join(run.groups)})")
    ref_label = f"{ref} group" if ref else "whole cohort"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = report_inputs(run_dir, reference_group=reference_group, show_paths=show_paths)
    with StagedSet(out, STAGE, adopt=_legacy_adopter(out)) as st:
        _render(run, ref, ref_label, st, show_paths=show_paths, show_progress=show_progress)
        with st.writing(INPUTS_RECORD) as record:
            record.write_text(json.dumps(inputs, sort_keys=True, indent=1) + "\n", encoding="utf-8")
        st.check(st.names)
        _migrate(out)
        final = st.commit()
    return sorted((p for p in final if p.name != INPUTS_RECORD), key=lambda p: (p.name != "index.html", str(p)))


INPUTS_RECORD = ".report-inputs.json"
# Columns of the QC tables that change on every rerun without changing what the report shows.
_VOLATILE_QC = ("seconds", "updated", "source")


def _digest_file(path: Path) -> str | None:
    """sha256 of what the report reads from ``path``: a sidecar without its creation time, a QC table
    without its timings (and "skipped" read as "ok": a resumed item is the same item), a file's bytes."""
    import hashlib

    if not path.is_file():
        return None
    if path.name.endswith(".json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(doc, dict):
            doc = {k: v for k, v in doc.items() if k not in ("created", "updated")}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    if path.name.startswith("qc") and path.suffix == ".parquet":
        qc = pd.read_parquet(path).drop(columns=list(_VOLATILE_QC), errors="ignore")
        if "status" in qc:
            qc["status"] = qc["status"].replace({"skipped": "ok"})
        return hashlib.sha256(qc.to_csv(index=False).encode()).hexdigest()
    return sha256_file(path)


def report_inputs(run_dir: str | os.PathLike, *, reference_group: str | None = None, show_paths: bool = False) -> dict:
    """What a report of ``run_dir`` depends on: the report's version and settings, and a digest of each
    file it reads (manifest, QC tables, windows and keypoints sidecars, read-out, statistics, codings,
    validation), so an
    unchanged rerun can skip it (:func:`report_up_to_date`). Keypoint and window tables themselves are
    not read by the report, only their sidecars."""
    folder = RunFolder(run_dir)
    files = [folder.manifest, folder.pose_qc, folder.recognize / "qc_recognize.parquet", folder.cohort, folder.bouts,
             folder.exclusions, folder.results, folder.hurdle / "sensitivity.csv", *sorted(folder.segments.glob("*.parquet")),
             folder.codings / "events.parquet", folder.codings / "sessions.parquet",
             *sorted(f for f in folder.validation.glob("*") if f.is_file()),  # the validation section's tables
             *sorted(folder.root.glob("**/*.parquet.json"))]  # every sidecar: keypoints, windows, stages
    digests = {}
    for f in dict.fromkeys(files):
        if folder.report in f.parents:
            continue
        d = _digest_file(f)
        if d is not None:
            digests[f.relative_to(folder.root).as_posix()] = d
    return {"report_version": REPORT_VERSION, "reference_group": reference_group, "show_paths": bool(show_paths),
            "files": digests}


def report_up_to_date(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, reference_group: str | None = None,
                      show_paths: bool = False) -> bool:
    """Whether ``out_dir`` holds a report of these inputs and settings (its record matches, its index exists)."""
    out = Path(out_dir)
    try:
        recorded = json.loads((out / INPUTS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (out / "index.html").is_file() and recorded == json.loads(json.dumps(
        report_inputs(run_dir, reference_group=reference_group, show_paths=show_paths), sort_keys=True))


def _legacy_adopter(out: Path):
    """Pages listed by an earlier version's ``report.json`` that are provably pages of ours."""
    listed: set[str] = set()
    try:
        doc = json.loads((out / _LEGACY_LISTING).read_text(encoding="utf-8"))
        listed = {str(p) for p in doc.get("pages", []) if isinstance(p, str)} if isinstance(doc, dict) else set()
    except (OSError, ValueError, AttributeError):
        pass

    def adopt(rel: str) -> bool:
        if rel not in listed or not _PAGE_NAME.match(rel):
            return False
        path = out / rel
        if path.is_symlink() or not path.is_file():
            return False
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                return _PAGE_MARK in f.read(4096)
        except OSError:
            return False

    adopt.listed = listed
    return adopt


def _migrate(out: Path) -> None:
    """Adopt the provable pages of an old ``report.json`` (so a rebuild can retire them), then drop it."""
    listing = out / _LEGACY_LISTING
    if not listing.is_file() or listing.is_symlink():
        return
    adopt = _legacy_adopter(out)
    m = read_manifest(out, STAGE)
    names = [n for n in (relative_name(p) for p in sorted(adopt.listed)) if n and not m.recorded(n) and adopt(n)]
    update_manifest(out, STAGE, add=names)
    try:
        doc = json.loads(listing.read_text(encoding="utf-8"))
        ours = isinstance(doc, dict) and set(doc) <= {"report_version", "created", "pages"} and "pages" in doc
    except (OSError, ValueError):
        ours = False
    if ours:
        listing.unlink()
        log.info("%s: migrated the old page listing %s (%d page(s) adopted)", out, listing.name, len(names))


def _render(run: Run, ref: str | None, ref_label: str, st: StagedSet, *, show_paths: bool, show_progress: bool) -> None:
    """Render every page into the staging folder of ``st``."""
    env = make_environment()
    redact = _Redactor(run, show_paths)
    banner = simulated_provenance(run)
    common = {
        "banner": banner,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "version": REPORT_VERSION,
        "show_paths": show_paths,
    }
    qc = qc_by_participant(run)
    ids = list(qc["participant_id"])
    pages = {pid: f"participants/{page_name(pid)}" for pid in ids}
    if len(set(pages.values())) != len(pages):  # 8 hex digits of sha256: a clash is astronomically unlikely
        raise BadInput("two participant IDs map to the same page name")

    # -- cohort page -------------------------------------------------------------------------------
    qc_threshold = ((run.qc_meta or {}).get("config") or {}).get("qc", {}).get("min_detected")
    qc_rows = _records(qc)
    for r in qc_rows:
        r["page"] = pages[r["participant_id"]]
        r["excluded"] = [(label, redact(why)) for label, why in r["excluded"]]
    usable = qc["usable_pose"].dropna()
    qc_summary = (f"Median usable-pose share {100 * usable.median():.0f} % (range {100 * usable.min():.0f}–"
                  f"{100 * usable.max():.0f} %); {int((qc['flags'] != '').sum())} participant(s) flagged, "
                  f"{int(qc['excluded'].map(len).gt(0).sum())} with excluded videos." if len(usable) else
                  "No pose QC is available.")  # fmt: skip
    ctx: dict[str, Any] = dict(common)
    ctx.update(
        n_participants=len(run.participants),
        groups=run.groups,
        total_s=float(run.participant_table()["observed_s"].sum()),
        notes=[redact(n) for n in run.notes],
        group_rows=_records(group_summary(run)),
        demographics=demographics(run),
        methods=methods_sections(run, show_paths=show_paths),  # built without path-valued entries
        qc_rows=qc_rows,
        qc_summary=qc_summary,
        qc_figure=figure_image(qc_figure(qc, run.groups, threshold=qc_threshold)) if len(usable) else None,
        qc_alt=qc_summary,
        qc_threshold=qc_threshold,
        limitations=_limitations(run, banner, ref),
        ref_label=ref_label,
        participant_links=[{"participant_id": pid, "page": pages[pid], "group": g} for pid, g in zip(qc["participant_id"], qc["group"])],
        results_rows=None,
        validation=validation_context(run),
        coding=coded_participants(run),
        below=sorted(run.below_coder_range()),
    )
    for r in (ctx["coding"] or {}).get("rows", []):
        r["page"] = pages.get(r["participant_id"])
    if run.results is not None:
        res = effects_table(run)
        out_cfg = ((run.results_meta or {}).get("config") or {}).get("output") or {}
        k = int(out_cfg.get("table_rows", 10))
        res["note"] = [contrast_note(r) for r in res.itertuples(index=False)]
        pub = top_findings(res, k)
        p_col = "p" if out_cfg.get("plot_p") == "raw" else "p_adj"
        alpha = float(out_cfg.get("alpha", 0.05))
        violins = []
        for a in dict.fromkeys(res["action"]):
            sig = res[(res["action"] == a) & (res["part"] == "intensity") & (res[p_col] < alpha)]
            alt = (f"Violin plot of percent time among engagers of '{a}' by group ({', '.join(run.groups)}). "
                   + (f"Significant intensity contrasts: {', '.join(sig['direction'].fillna(sig['contrast']))}."
                      if len(sig) else "No significant intensity contrast."))  # fmt: skip
            image, small = violin_image(run.cohort, a, run.groups, res, p_column=p_col, alpha=alpha)
            caption = ("; ".join(f"{g}: {'no participant' if m == 0 else 'one participant'} showed it, so no violin "
                                 f"is drawn{' (the dot is theirs)' if m == 1 else ''}" for g, m in small.items()) + ".")
            violins.append({"action": a, **image, "alt": alt + (" " + caption if small else ""),
                            "caption": caption if small else ""})
        below = run.below_coder_range()
        pub_rows = _records(pub)
        results_rows = _records(res)
        for r in pub_rows + results_rows:
            r["below"] = r["action"] in below
        ctx.update(
            pub_rows=pub_rows, pub_caption=top_findings_caption(res, len(pub)),
            violins=violins, plot_p="adjusted" if p_col == "p_adj" else "raw", alpha=f"{alpha:g}",
            results_rows=results_rows, ame_note=str(res["ame_source"].iloc[0]) if len(res) else "",
            error_rows=error_aware_rows(res, k), error_corrected="effect_uncorrected" in res.columns,
            error_sensitivity="sensitivity" in res.columns, bout_rows=bout_rows(res, k),
            sensitivity_figure=_sensitivity_figure(run, p_col, alpha),
        )  # fmt: skip
    with st.writing("index.html") as index:
        index.write_text(env.get_template("index.html.j2").render(ctx), encoding="utf-8")

    # -- participant pages -------------------------------------------------------------------------
    template = env.get_template("participant.html.j2")
    parts = run.participant_table().set_index("participant_id")
    for i, pid in enumerate(progress(ids, desc="participant pages", unit="page") if show_progress else ids):
        videos = run.videos.get(pid, [])
        in_cohort = pid in parts.index
        actions = participant_actions(run, pid, ref) if in_cohort else pd.DataFrame(columns=["action", "percent_time"])
        shown = actions[(actions["percent_time"] > 0) | actions.get("analysed", False)] if in_cohort else actions
        shown = shown.sort_values(["percent_time", "action"], ascending=[False, True], kind="stable")
        seg_actions = list(dict.fromkeys(a for v in videos if v.segments is not None for a in v.segments["action"]))
        eth_actions = [a for a in shown["action"] if a in seg_actions] + [a for a in seg_actions if a not in set(shown["action"])]
        has_segments = any(v.segments is not None for v in videos)
        eth = figure_image(ethogram_figure(videos, eth_actions)) if videos and has_segments else None
        eth_alt = (f"Ethogram of participant {pid}: " + ("; ".join(
            f"{v.label}, {_num(v.duration_s, 0)} s, {0 if v.segments is None else len(v.segments)} segments, "
            f"{_num(sum(b - a for a, b in v.no_pose), 0)} s without usable pose" for v in videos)) + ".") if eth else ""  # fmt: skip
        coders = coder_videos(run, videos) if videos else []
        coder_eth = [{"coder": c, "src": png_data_uri(ethogram_figure(cv, eth_actions + [a for a in acts if a not in eth_actions],
                                                                     gap_label="not coded")),
                      "alt": f"Ethogram of participant {pid} as coded by {c}: " + "; ".join(
                          f"{v.label}, {0 if v.segments is None else len(v.segments)} coded events, "
                          f"{_num(sum(b - a for a, b in v.no_pose), 0)} s not coded" for v in cv) + "."}
                     for c, cv, acts in coders]
        segment_rows = [{"video": v.label, "action": r.action, "start_s": r.start_s, "end_s": r.end_s,
                         "score": r.score} for v in videos if v.segments is not None and not v.excluded
                        for r in v.segments.itertuples(index=False)]  # fmt: skip
        covs = [(c, parts.at[pid, c]) for c in run.covariates] if in_cohort else []
        pctx = dict(common)
        pctx.update(
            participant_id=pid,
            group=qc.loc[qc["participant_id"] == pid, "group"].iloc[0],
            covariates=[(c, _num(v, 1) if isinstance(v, float) else v) for c, v in covs],
            observed_s=parts.at[pid, "observed_s"] if in_cohort else None,
            in_cohort=in_cohort,
            videos=_video_rows(videos, redact, show_paths),
            ethogram=eth,
            ethogram_alt=eth_alt,
            coder_ethograms=coder_eth,
            segment_rows=segment_rows,
            ethogram_missing=("No video information (the run has no manifest)." if not videos else
                              "No segments were recorded for this run (readout/segments/ is missing)."),  # fmt: skip
            action_rows=_records(shown),
            never=sorted(set(actions["action"]) - set(shown["action"])) if in_cohort else [],
            actions_caption="† analysed in the group comparison. Actions never detected are listed below the table."
                            if in_cohort else "",  # fmt: skip
            ref_label=ref_label,
            prev_page=Path(pages[ids[i - 1]]).name if i > 0 else None,
            next_page=Path(pages[ids[i + 1]]).name if i + 1 < len(ids) else None,
        )
        with st.writing(pages[pid]) as path:
            path.write_text(template.render(pctx), encoding="utf-8")


def _sensitivity_figure(run: Run, p_col: str, alpha: float) -> dict | None:
    """The top findings' effects along the read-out's threshold grid (hurdle/sensitivity.csv), drawn by
    the analysis' own figure function; None without a grid."""
    if run.sensitivity is None or run.results is None or not len(run.sensitivity):
        return None
    from analysis.sensitivity import sensitivity_figure

    pt = run.results[run.results["part"].isin(["probability", "intensity"])]
    top = 6
    best = pt[pt["p"].notna()].sort_values(["p", "action", "contrast", "part"], kind="mergesort").head(top)
    image = figure_image(sensitivity_figure(pt, run.sensitivity, top=top, alpha=alpha, p_column=p_col))
    scales = ", ".join(f"{s:g}" for s in sorted(run.sensitivity["scale"].unique()))
    alt = (f"Small multiples, one per top finding: the effect and its confidence interval at each read-out threshold "
           f"factor ({scales}); filled markers where {'adjusted ' if p_col == 'p_adj' else ''}p < {alpha:g}. "
           + "; ".join(f"{r.action}, {r.contrast}, {r.part}: {r.sensitivity}" for r in best.itertuples()) + ".")  # fmt: skip
    return {**image, "alt": alt, "scales": scales}


def build_parser():
    p = make_parser("Build the HTML cohort report and one page per participant from a run folder.", prog="python -m reports.build")
    p.add_argument("--run", required=True, type=Path, metavar="DIR",
                   help="run folder (pipeline.run_folder layout: manifest.csv, pose/, recognize/, readout/, hurdle/)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder for index.html and participants/")
    add_arguments(p, ReportSettings)  # --reference-group, --show-paths (the flow's params.report)
    p.epilog = "exit status: 0 written, 2 bad input (nothing written)"
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose, quiet=args.quiet)
    with handle_errors("reports.build"), contextlib.ExitStack() as held:  # held: the run lock
        held.enter_context(lock_for_output(args.out, command='python -m reports.build'))
        check_output_dir(args.out)
        if not args.run.is_dir():
            raise BadInput(f"--run {args.run} is not a folder")
        settings = from_args(ReportSettings, args, stage="report").settings
        pages = build_report_files(args.run, args.out, reference_group=settings.reference_group,
                                   show_paths=settings.show_paths, show_progress=not args.quiet)
        for path in pages:
            report_written(path)
        print(f"report: {pages[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
