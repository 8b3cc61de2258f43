"""The report's Methods section, written from the configs and versions recorded in the run's sidecars.

Nothing here is boilerplate typed once: every number and choice in the text comes from a sidecar, so
two runs with different settings (e.g. read-out thresholds) get different Methods text, and a setting
a sidecar does not record is said to be unknown rather than guessed. Each section also lists every
recorded parameter verbatim (flattened ``a.b = value`` pairs) below its prose.

Also here: :func:`simulated_provenance`, which decides whether the demonstration banner is shown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from analysis.config import HurdleConfig
from analysis.intensity_tests import INTENSITY_METHODS, describe
from pipeline.readout import ReadoutConfig
from reports.run import Run, find_value

__all__ = ["MethodsSection", "methods_sections", "flatten", "simulated_provenance", "software_versions"]


@dataclass
class MethodsSection:
    """One subsection: a title, sentences of prose and the recorded parameters (key, value text)."""

    title: str
    text: list[str] = field(default_factory=list)
    params: list[tuple[str, str]] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return json.dumps(v, sort_keys=True, default=str)
    return "none" if v is None else str(v)


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested mapping -> sorted ``("a.b", "value")`` pairs (lists kept whole)."""
    if not isinstance(obj, Mapping):
        return [(prefix or "value", _fmt(obj))]
    out: list[tuple[str, str]] = []
    for k in sorted(obj, key=str):
        key = f"{prefix}.{k}" if prefix else str(k)
        v = obj[k]
        if isinstance(v, Mapping) and v:
            out += flatten(v, key)
        else:
            out.append((key, _fmt(v)))
    return out


def _distinct(configs: list[Any]) -> list[Any]:
    seen, out = set(), []
    for c in configs:
        key = json.dumps(c, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(c)
    return out


# -- simulated-data provenance -------------------------------------------------------------------
_SIM_FLAGS = ("simulated", "trained_on_simulated", "synthetic", "trained_on_synthetic", "simulated_data")
_DATA_KEYS = ("training_data", "trained_on", "train_data", "dataset", "data_source", "source_data")
_SIM_WORDS = ("simulat", "synthetic", "kinematic simulator")


def _walk(obj: Any, path: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            p = f"{path}.{k}" if path else str(k)
            items.append((p, v))
            items += _walk(v, p)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            items += _walk(v, path)
    return items


def simulated_provenance(run: Run) -> str | None:
    """Why the results are a demonstration (a model trained on simulated data, or a simulated cohort), or None.

    Looks in the recognition (windows) and read-out sidecars for a provenance flag (``simulated: true``
    and similar) or a training-data description mentioning simulated/synthetic data; and at the
    cohort sidecar's stage (``simulate`` for a cohort written by :mod:`analysis.simulate`).
    """
    metas = [*run.windows_meta.values(), run.cohort_meta or {}, run.segments_meta or {}]
    for meta in metas:
        for path, v in _walk(meta):
            key = path.rsplit(".", 1)[-1].lower()
            if key in _SIM_FLAGS and v is True:
                what = find_value(meta, _DATA_KEYS)
                return f"the recognition model was trained on simulated data{f' ({what})' if isinstance(what, str) else ''}"
            if key in _DATA_KEYS and isinstance(v, str) and any(w in v.lower() for w in _SIM_WORDS):
                detail = find_value(meta, ("training_data",))
                detail = detail if isinstance(detail, str) and detail.strip().lower() != "simulated" else (
                    v if v.strip().lower() != "simulated" else None)
                return "the recognition model was trained on simulated data" + (f" ({detail})" if detail else "")
    stage = (run.cohort_meta or {}).get("stage", "")
    if isinstance(stage, str) and "simulat" in stage.lower():
        return "the cohort table itself is simulated (analysis.simulate), not measured from videos"
    return None


# -- sections --------------------------------------------------------------------------------------
def _pose_section(run: Run) -> MethodsSection:
    sec = MethodsSection("Pose estimation")
    configs = _distinct([m.get("config", {}) for m in run.keypoint_meta.values() if m.get("config")])
    qc_cfg = (run.qc_meta or {}).get("config") or {}
    if not configs and not qc_cfg:
        sec.text.append("The run folder records no pose configuration (no pose/ sidecars).")
        return sec
    cfg = configs[0] if configs else qc_cfg
    backend = cfg.get("backend") or qc_cfg.get("backend") or "an unrecorded backend"
    settings = cfg.get("settings") or {}
    if backend == "mediapipe":
        desc = (f"Body keypoints were estimated with MediaPipe BlazePose (model complexity "
                f"{_fmt(settings.get('model_complexity', '?'))}, detection confidence ≥ "
                f"{_fmt(settings.get('min_detection_confidence', '?'))}, tracking confidence ≥ "
                f"{_fmt(settings.get('min_tracking_confidence', '?'))}, landmark smoothing "
                f"{'on' if settings.get('smooth_landmarks') else 'off'}) and mapped to the BODY_25 layout.")  # fmt: skip
    elif backend == "openpose-json":
        desc = (f"Body keypoints were imported from OpenPose BODY_25 JSON files (target person rule: "
                f"{_fmt(settings.get('select', '?'))}).")  # fmt: skip
    else:
        desc = f"Body keypoints were estimated with the backend {backend!r}."
    sec.text.append(desc)
    frames = cfg.get("frames") or qc_cfg.get("frames")
    if frames == "sampled":
        sec.text.append("Pose was computed only on the frames the recognition windows sample.")
    elif frames == "all":
        sec.text.append("Pose was computed on every frame.")
    pl = cfg.get("plausibility") or qc_cfg.get("plausibility") or {}
    if pl.get("enabled", False):
        sec.text.append(
            f"A detected skeleton was rejected as implausible when its hips lay less than "
            f"{_fmt(pl.get('min_torso_ratio'))} shoulder widths below its shoulders or when shoulders and hips "
            f"spanned less than {_fmt(pl.get('min_body_frac'))} of the image diagonal."
        )
    elif pl:
        sec.text.append("The anatomical plausibility check was switched off.")
    if cfg.get("roi"):
        sec.text.append("Pose was restricted to a region of interest around the participant.")
    qc = qc_cfg.get("qc") or {}
    if qc:
        sec.text.append(f"A video was flagged when fewer than {100 * float(qc.get('min_detected', 0)):.0f} % of its "
                        "posed frames had a usable pose.")  # fmt: skip
    if len(configs) > 1:
        sec.text.append(f"Note: the videos of this run were posed with {len(configs)} different configurations; "
                        "the first is described, all are listed below.")  # fmt: skip
    for k, c in enumerate(configs or [qc_cfg]):
        sec.params += flatten(c, f"config {k + 1}" if len(configs) > 1 else "")
    if qc_cfg and configs:
        sec.params += flatten(qc_cfg.get("qc", {}), "qc")
    return sec


def checkpoint_id(meta: Mapping) -> str | None:
    """The checkpoint's sha256 recorded by the recognition stage (``model.sha256``, ``config.model_sha256``)."""
    model = meta.get("model") if isinstance(meta.get("model"), Mapping) else {}
    cfg = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    for v in (model.get("sha256"), cfg.get("model_sha256"), meta.get("checkpoint_sha256"), model.get("id")):
        if isinstance(v, str) and v:
            return v
    return None


_PATH_KEYS = ("path", "source", "manifest", "video", "keypoints_path")


def _without_paths(obj: Any) -> Any:
    """A copy of a sidecar without path-valued entries (they can name people)."""
    if isinstance(obj, Mapping):
        return {k: _without_paths(v) for k, v in obj.items() if not (k in _PATH_KEYS and isinstance(v, str))}
    return obj


def window_sentence(plan: Mapping, fps: Any = None) -> str:
    """The window plan in words a clinician reads: how long a window is, how many frames the model sees
    in it, how often a window starts (the recorded numbers stay in "Recorded parameters").

    >>> window_sentence({"clip_len": 6, "stride": 8, "hop_s": 0.266667}, 30.0)
    'The model classified short overlapping stretches of video (windows) of 1.6 s each, seeing 6 frames spread evenly over each (one frame in 8); a new window started every 0.27 s.'
    """
    clip, stride, hop = plan.get("clip_len"), plan.get("stride"), plan.get("hop_s")
    try:
        frames = int(clip) * int(stride)
    except (TypeError, ValueError):
        return "The window plan is not fully recorded in the run."
    length = f"{frames / float(fps):.2g} s" if isinstance(fps, (int, float)) and fps > 0 else f"{frames} video frames"
    start = f"; a new window started every {float(hop):.2f} s" if isinstance(hop, (int, float)) else ""
    return (f"The model classified short overlapping stretches of video (windows) of {length} each, seeing "
            f"{int(clip)} frames spread evenly over each (one frame in {int(stride)}){start}.")


def _model_section(run: Run, show_paths: bool) -> MethodsSection:
    sec = MethodsSection("Recognition model and windows")
    metas = list(run.windows_meta.values())
    if not metas:
        sec.text.append("The run folder records no recognition stage (no windows/ sidecars): the model and "
                        "its window plan are unknown to this report.")  # fmt: skip
        return sec
    meta = metas[0]
    ckpt = checkpoint_id(meta)
    classes = find_value(meta, ("classes", "class_names", "class_list", "names"))
    if isinstance(classes, Mapping):
        classes = classes.get("names", list(classes))
    n_classes = len(classes) if isinstance(classes, (list, tuple)) else None
    ids = _distinct([checkpoint_id(m) for m in metas])
    recorded = meta.get("model") if isinstance(meta.get("model"), Mapping) else {}
    title = recorded.get("family_title") or "Micro-DualNet"  # sidecars before model families: Micro-DualNet
    text = f"Micro-action probabilities were computed with a {title} model"
    text += f" (checkpoint {str(ckpt)[:12]})" if ckpt else " (checkpoint not recorded)"
    if isinstance(classes, (list, tuple)) and classes:
        actions = [c for c in classes if c != "background"]
        text += (f", which recognises {len(actions)} micro-actions"
                 + (" (and a background class for stretches showing none of them)" if len(actions) < len(classes) else ""))
    sec.text.append(text + ".")
    if recorded.get("inputs") == ["keypoints"]:
        sec.text.append("The model read body keypoints only: no video pixels were used for recognition.")
    data = find_value(meta, ("training_data", "trained_on", "train_data", "dataset", "data_source"))
    sim = simulated_provenance(run)
    if isinstance(data, str):
        sec.text.append(f"Training data recorded in the checkpoint: {data}.")
    elif sim and "model" in sim:
        sec.text.append("The checkpoint states that it was trained on simulated data.")
    else:
        sec.text.append("The checkpoint's training data is not recorded in the run.")
    if len(ids) > 1:
        sec.text.append(f"Warning: the videos of this run were processed by {len(ids)} different checkpoints.")
    plan = find_value(meta, ("plan", "window_plan"))
    if isinstance(plan, Mapping):
        sec.text.append(window_sentence(plan, find_value(meta, ("fps",))))
    else:
        sec.text.append("The window plan is not recorded in the run.")
    min_valid = find_value(meta, ("min_valid",))
    if min_valid is not None:
        sec.text.append(f"Windows in which less than {100 * float(min_valid):.0f} % of the sampled frames had a usable "
                        "pose were not classified.")  # fmt: skip
    shown = {k: v for k, v in meta.items() if k not in ("versions", "created", "rows", "input_hash", "video", "video_id",
                                                         "source", "keypoints", "windows", "config_hash")}  # fmt: skip
    if not show_paths:
        shown = _without_paths(shown)
    if isinstance(shown.get("classes"), (list, tuple)) and len(shown["classes"]) > 12:
        shown["classes"] = [*shown["classes"][:12], f"... ({len(shown['classes'])} in all)"]
    sec.params = flatten(shown)
    return sec


_RULES = {
    "threshold": "each valid frame took the class with the highest score when that score was at least {thr}, and "
                 "no micro-action otherwise",
    "top1": "each valid frame took the class with the highest score (closed-set top-1: every valid frame is labelled)",
    "per-class": "each valid frame took the highest-scoring class among those whose score reached the class's own "
                 "threshold (per-class thresholds{src}), and no micro-action otherwise",
    "multi-label": "each valid frame took every class whose score reached its threshold ({thr}), so actions may co-occur",
    "background": "each valid frame took the class with the highest score, the model's background class meaning no "
                  "micro-action",
}  # fmt: skip


def _readout_section(run: Run, show_paths: bool) -> MethodsSection:
    """From the read-out sidecar's ``readout`` record, read by :class:`ReadoutConfig`'s field names."""
    sec = MethodsSection("Read-out: from windows to percent time")
    meta = run.cohort_meta or {}
    record = meta.get("readout") or meta.get("config") or {}
    try:
        cfg = ReadoutConfig.from_dict(record) if record else None
    except (TypeError, ValueError) as exc:
        cfg = None
        sec.text.append(f"The read-out's record could not be read by this version ({exc}).")
    if cfg is None and not record:
        sec.text.append("The read-out's rule and parameters are not recorded (readout/cohort.parquet has no "
                        "sidecar config).")  # fmt: skip
    elif cfg is not None:
        if cfg.scores == "interpolate":
            sec.text.append("Per-frame class scores were interpolated linearly between the centres of the "
                            "classified windows (each window's probabilities read at its centre frame, as for a "
                            "model trained on windows labelled by the class covering most of their span); frames "
                            "no classified window covers have no usable pose and count in no denominator.")  # fmt: skip
        else:
            sec.text.append("Per-frame class scores are the mean of the probabilities of the classified windows "
                            "covering the frame; frames no classified window covers have no usable pose and count "
                            "in no denominator.")  # fmt: skip
        per_class = cfg.thresholds
        src = f"{len(per_class)} classes set, the others {_fmt(cfg.threshold)}" if per_class else None
        if cfg.thresholds_file is not None and show_paths:
            src = (src or "none set") + f", from {cfg.thresholds_file}"
        sec.text.append(f"Labelling rule '{cfg.rule}': "
                        + _RULES[cfg.rule].format(thr=_fmt(cfg.threshold), src=f": {src}" if src else "") + ".")
        if per_class and cfg.rule in ("per-class", "multi-label"):
            sec.text.append("Per-class thresholds: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(per_class.items()))
                            + ".")
        gap, mind = cfg.merge_gap_s, cfg.min_duration_s
        if not gap and not mind:
            sec.text.append("Runs of one label form segments, with no gap merging and no minimum duration.")
        else:
            merge = (f"gaps of up to {_fmt(gap)} s between two runs of the same action were merged"
                     if gap else "no gaps were merged")  # fmt: skip
            drop = f"segments shorter than {_fmt(mind)} s were dropped" if mind else "no minimum duration was applied"
            sec.text.append(f"Runs of one label form segments: {merge}, then {drop}.")
        sec.text.append(f"Participants with less than {_fmt(cfg.min_observed_s)} s of valid pose were left out of "
                        "the cohort table (listed under quality control)." if cfg.min_observed_s else
                        "Every participant with at least one valid frame was kept.")
        sources = meta.get("readout_sources") or {}
        from_ckpt = sorted(k for k, v in sources.items() if v == "checkpoint")
        if from_ckpt:
            sec.text.append("The checkpoint's calibrated read-out set " + ", ".join(from_ckpt)
                            + ("; the user set " + ", ".join(sorted(k for k, v in sources.items() if v == "user"))
                               if any(v == "user" for v in sources.values()) else "") + ".")  # fmt: skip
    if record:
        extra = {k: v for k, v in meta.items() if k in ("model_id", "readout_text", "readout_sources")}
        sec.params = flatten(record) + flatten(extra if show_paths else _without_paths(extra))
    sec.text.append("Percent time of an action = 100 × valid frames inside the action's final segments / valid "
                    "frames; observed time = valid frames / frame rate. A participant's videos are pooled by frames.")  # fmt: skip
    return sec


def _intensity_test_sentence(cfg: Mapping) -> str:
    """How the intensity contrasts were tested, from the recorded ``intensity_se`` (and its draws)."""
    method = cfg.get("intensity_se")
    if method is None:
        return ("Intensity contrasts were tested with robust sandwich standard errors; the run does not record which "
                "test (runs before the test was made a setting used HC0 x n/(n-1) with a normal reference).")  # fmt: skip
    if method not in INTENSITY_METHODS:
        return f"Intensity contrasts were tested by the method {method!r}, which this report does not know."
    text = (f"Intensity contrasts were tested by {describe(method, cfg.get('intensity_resamples', 1999), cfg.get('intensity_seed', 0))}"
            f" (setting intensity_se = {method}")  # fmt: skip
    if method == HurdleConfig.intensity_se:
        text += (", the default: the one test that held its size at alpha 0.05 in a null calibration study over 12-100 "
                 "engagers per group, skewed and frame-quantised shares and unequal group sizes; docs/hurdle.md")  # fmt: skip
    k = cfg.get("min_engaged_test")
    if k:
        text += f"); a contrast with fewer than {k} engagers in a group has an estimate but no p-value, since no test held its size there."
    else:
        text += ")."
    return text


def _error_aware_sentences(res, cfg: Mapping, validation_source: str | None = None) -> list[str]:
    """What issue 23 added to a run, in words: the read-out error correction (or that none was used) and
    the validation set it used (``validation_source``, in words), the sensitivity grid, the bout models."""
    out = []
    pt = res[res["part"].isin(["probability", "intensity"])]
    if "misclassification" in res.columns and pt["misclassification"].notna().any():
        out.append("Read-out errors: " + str(pt["misclassification"].dropna().iloc[0]) + "; Rubin's rules with "
                   "Barnard-Rubin degrees of freedom, then the same multiple-comparison correction.")  # fmt: skip
        if validation_source:
            out.append(f"Validation set of the correction: {validation_source}.")
    elif cfg.get("misclassification", "none") == "none":
        out.append("Percent time was analysed as read out, without correction for the read-out's errors.")
    if "sensitivity" in res.columns:
        counts = pt["sensitivity"].value_counts()
        out.append("Sensitivity to the read-out: the read-out and the analysis were repeated with every threshold "
                   "multiplied by 0.8, 0.9, 1, 1.1 and 1.25; results are stable (same sign and significance at every "
                   "factor), fragile or reversed (" + ", ".join(f"{counts.get(k, 0)} {k}" for k in ("stable", "fragile", "reversed")) + ").")  # fmt: skip
    if res["part"].isin(["count", "duration"]).any():
        out.append("Bouts: counts per participant by negative binomial GLM (Poisson without over-dispersion) with log "
                   "observed minutes as offset (rate ratios); mean bout duration among participants with bouts by Gamma "
                   "GLM with log link; each outcome its own correction family.")  # fmt: skip
    return out


def _validation_source(run: Run, cfg: Mapping) -> str | None:
    """Where the correction's validation set came from, without a path: this run's validation/ folder (the
    coded participants of the Validation section) or a folder outside the run."""
    from pathlib import Path

    from pipeline.run_folder import RunFolder

    where = cfg.get("validation")
    if not where:
        return None
    ref = cfg.get("validation_reference") or "consensus, or the only coder"
    try:
        own = Path(where).resolve() == RunFolder(run.root).validation.resolve()
    except (OSError, ValueError):
        own = False
    if own:
        return (f"this run's validation/ folder (confusion.parquet{', scores.parquet' if cfg.get('misclassification') == 'pacc' else ''}; "
                f"the coded participants of the section Validation against human coding; reference {ref})")  # fmt: skip
    return f"a validation folder outside this run (its path is in the statistics' sidecar; reference {ref})"


def _stats_section(run: Run) -> MethodsSection:
    sec = MethodsSection("Statistical model")
    if run.results is None:
        sec.text.append("No group comparison was run.")
        return sec
    res = run.results
    cfg = ((run.results_meta or {}).get("config") or {}).get("analysis") or {}
    groups = cfg.get("groups") or list(dict.fromkeys([*res["group_a"], *res["group_b"]]))
    methods = list(dict.fromkeys(res["method"].dropna()))
    n_actions = res["action"].nunique()
    sec.text.append(
        f"Groups ({', '.join(map(str, groups))}) were compared pairwise on {n_actions} actions "
        f"({res['selection'].iloc[0] if 'selection' in res else 'selection not recorded'}) with a two-part hurdle model: "
        "the probability of any engagement (percent time > 0) by logistic regression, and the share of time among "
        "participants with engagement by fractional logit (binomial quasi-likelihood)."
    )
    sec.text.append(_intensity_test_sentence(cfg))
    if methods:
        sec.text.append("Models fitted: " + "; ".join(methods) + ".")
    cov = res["covariates"].iloc[0] if "covariates" in res else ", ".join(cfg.get("covariates", [])) or "none"
    sec.text.append(f"Covariates: {cov}.")
    sec.text.append(
        "Effects are odds ratios of the first group relative to the second with "
        f"{100 * float(res['ci_level'].iloc[0] if 'ci_level' in res else cfg.get('ci_level', 0.95)):.0f} % confidence "
        "intervals, and average marginal effects in percentage points (prediction with everybody in the first group "
        "minus with everybody in the second, averaged over the sample)."
    )
    sec.text.append(f"Multiple comparisons: {res['family'].iloc[0]} (correction '{res['correction'].iloc[0]}').")
    sec.text += _error_aware_sentences(res, cfg, _validation_source(run, cfg))
    if cfg.get("min_engaged") is not None:
        sec.text.append(f"The intensity part needs at least {cfg['min_engaged']} participants with engagement in each "
                        "group of a contrast; separation in the probability part switches that action to Firth's "
                        f"penalised likelihood (mode '{cfg.get('firth', 'auto')}').")  # fmt: skip
    sec.params = flatten(cfg, "analysis") + flatten(((run.results_meta or {}).get("config") or {}).get("output") or {}, "output")
    return sec


def software_versions(run: Run) -> list[tuple[str, str]]:
    """Package versions recorded by the sidecars: ``(package, "v1" or "v1 (pose), v2 (hurdle)")``."""
    seen: dict[str, dict[str, list[str]]] = {}
    for stage, meta in run.sidecars():
        for pkg, ver in (meta.get("versions") or {}).items():
            seen.setdefault(pkg, {}).setdefault(str(ver), [])
            if stage not in seen[pkg][str(ver)]:
                seen[pkg][str(ver)].append(stage)
    out = []
    for pkg in sorted(seen):
        vers = seen[pkg]
        out.append((pkg, next(iter(vers)) if len(vers) == 1 else ", ".join(f"{v} ({'/'.join(s)})" for v, s in vers.items())))
    return out


def methods_sections(run: Run, *, show_paths: bool = False) -> list[MethodsSection]:
    """Pose, recognition, read-out, statistics and software, in pipeline order."""
    soft = MethodsSection("Software")
    soft.params = software_versions(run)
    soft.text.append("Package versions recorded by the stages' sidecars (several values: stages ran with different versions)."
                     if soft.params else "No package versions are recorded in the run.")  # fmt: skip
    sections = [_pose_section(run), _model_section(run, show_paths), _readout_section(run, show_paths), _stats_section(run)]
    if run.coder_sessions is not None and len(run.coder_sessions):
        sections.append(_codings_section(run, show_paths))
    if run.validation_meta:
        sections.append(_validation_section(run))
    return sections + [soft]


_FORMAT_NAMES = {"boris": "BORIS", "elan": "ELAN", "observer": "Noldus The Observer XT", "csv": "CSV",
                 "simulator": "the simulator's simulated coders"}


def _codings_section(run: Run, show_paths: bool) -> MethodsSection:
    """Which participants were coded by hand, by whom, from which tool, and how the codes were mapped
    (``codings/sessions.parquet`` and ``events.parquet``'s sidecar)."""
    ses = run.coder_sessions
    cfg = (run.coder_meta or {}).get("config") or {}
    sec = MethodsSection("Human coding")
    coders = list(dict.fromkeys(ses["coder"].astype(str)))
    formats = list(dict.fromkeys(ses["format"].astype(str)))
    n_part, n_vid = ses["participant_id"].astype(str).nunique(), ses["video_id"].astype(str).nunique()
    per = ses.groupby(ses["coder"].astype(str), sort=False)["participant_id"].nunique()
    sec.text.append(
        f"{n_part} of {len(run.participants)} participant(s) ({n_vid} video(s)) were coded by hand by {len(coders)} "
        f"coder(s): " + ", ".join(f"{c} ({int(per[c])} participant(s))" for c in coders) + ". The codings were made in "
        + " and ".join(_FORMAT_NAMES.get(f, f) for f in formats)
        + " and imported with python -m pipeline.codings (docs/codings.md): the lab's codes were mapped to MA-52 actions "
        "through an ethogram mapping" + (f" ({cfg['mapping']})" if show_paths and cfg.get("mapping") else "")
        + ", each coding matched to its video by file name, and times converted to the video's frames "
        "(an event covers the frames from round(start × fps) to round(stop × fps)).")
    repairs = [t for k, t in (("allow_unmapped", "codes the mapping does not list were dropped"),
                              ("close_open_states", "states never stopped were closed at the video's end"))
               if cfg.get(k)]
    if repairs:
        sec.text.append("Repairs allowed at import: " + "; ".join(repairs) + " (counted in codings/qc.parquet).")
    shown = {k: v for k, v in cfg.items() if k not in ("sources", "formats", "mapping")}
    if "formats" in cfg:
        shown["files"] = {f: len(v) for f, v in cfg["formats"].items()}
    elif "sources" in cfg:
        shown["files"] = {cfg.get("format", "?"): len(cfg["sources"])}
    if show_paths and cfg.get("mapping"):
        shown["mapping"] = cfg["mapping"]
    sec.params = flatten({"codings": shown})
    return sec


def _validation_section(run: Run) -> MethodsSection:
    """Which participants, coders, bins, tolerance and reference the validation used (validation/ sidecar)."""
    meta = run.validation_meta or {}
    cfg = meta.get("config") or {}
    sec = MethodsSection("Validation against human coding")
    coders = meta.get("coders") or []
    part = run.validation_participants
    n = int(part["participant_id"].nunique()) if part is not None and len(part) else 0
    model = bool(meta.get("model"))
    sec.text.append(
        (f"The model's read-out was compared frame by frame with {len(coders)} human coder(s) ({', '.join(coders)}) "
         if model else f"{len(coders)} human coders ({', '.join(coders)}) were compared with each other ")
        + f"on {n} coded participant(s); every coder was also compared with every other coder (the human ceiling). "
        f"Only frames observed by both sides counted: frames without a usable pose of the participant and frames "
        f"outside a coder's coded span were excluded from both.")
    sec.text.append(
        f"Time-unit Cohen's kappa was computed per action on bins of {meta.get('bin_text', 'unknown width')} "
        f"(scikit-learn), with percent agreement; where an action covered less than "
        f"{100 * float(cfg.get('min_prevalence', 0)):g} % of the bins, or kappa was undefined, Gwet's AC1 and the "
        "prevalence are given instead. Per-participant percent time was compared with ICC(2,1) (absolute agreement) "
        "and ICC(3,1) (consistency) of Shrout and Fleiss (pingouin), Bland-Altman bias and 95 % limits of agreement "
        "and the mean absolute error; engagement (any vs none) with kappa over participants.")
    sec.text.append(
        f"Events (runs of frames of one action) were matched one to one when their onsets lay within "
        f"{cfg.get('tolerance_s', 'unknown')} s and they overlapped by at least {100 * float(cfg.get('min_overlap', 0)):g} % "
        "of the shorter one (maximum bipartite matching), giving precision, recall and F1. "
        f"Intervals: percentile bootstrap over participants ({cfg.get('bootstrap', 'unknown')} draws, seed "
        f"{cfg.get('seed', 'unknown')}). " + (
            f"Reference for ICC, Bland-Altman and the confusion counts: {meta.get('reference')}"
            + (f" (a frame is coded when at least {100 * float(cfg.get('consensus_share', 0.5)):g} % of the coders "
               "observing it coded it)" if meta.get("reference") == "consensus" else "")
            + ". An action's verdict is 'below the coder range' when the 95 % interval of the difference between the "
            "mean model-vs-coder kappa and the mean coder-vs-coder kappa lies below zero, and 'not enough coded "
            f"data' when the raters shared fewer than {cfg.get('min_participants', 'unknown')} participants or both "
            f"coders of a pair coded the action in fewer than {cfg.get('min_engaged', 'unknown')}." if model else ""))
    for n_ in meta.get("notes") or []:
        sec.text.append(str(n_))
    sec.params = flatten({"validation": cfg})
    return sec
