"""Stage settings are one source of truth (pipeline.settings): every field of the read-out's settings
walks through the CLI (same flag, same default, parsed back), the flow's parameter schema (same
bounds and default), the sidecar and the report's Methods; a bad value or file is refused before any
work, naming the field; the checkpoint's own read-out is the default.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from flows.params import CohortAnalysisParams
from pipeline.aggregate import build_parser as aggregate_parser
from pipeline.readout import ReadoutConfig
from pipeline.settings import SettingsError, field_specs, from_args, merge_settings, validate_settings

FIELDS = [f.name for f in dataclasses.fields(ReadoutConfig)]
DEFAULTS = ReadoutConfig()

# A non-default value per field, as the CLI spells it and as the settings hold it. A field added to
# ReadoutConfig without an entry here fails test_every_field_has_a_walk_value.
CHANGED = {
    "scores": (["--scores", "interpolate"], "interpolate"),
    "rule": (["--rule", "multi-label"], "multi-label"),
    "threshold": (["--threshold", "0.35"], 0.35),
    "thresholds": (["--class-threshold", "nodding=0.3", "--class-threshold", "waving=0.6"], {"nodding": 0.3, "waving": 0.6}),
    "thresholds_file": (["--thresholds", "t.json"], Path("t.json")),
    "min_duration_s": (["--min-duration", "0.4"], 0.4),
    "merge_gap_s": (["--merge-gap", "1.5"], 1.5),
    "min_observed_s": (["--min-observed", "10"], 10.0),
}
# Fields whose value changes the results, so the Methods text must change with them (thresholds_file
# matters only through the thresholds read from it, which the Methods state).
AFFECTS_RESULTS = {"scores", "rule", "threshold", "thresholds", "min_duration_s", "merge_gap_s", "min_observed_s"}


def test_every_field_has_a_walk_value():
    assert sorted(CHANGED) == sorted(FIELDS)


def _cli_settings(parser, argv):
    args = parser.parse_args(argv)
    return from_args(ReadoutConfig, args, stage="readout")


@pytest.mark.parametrize("make_parser, required", [
    (aggregate_parser, ["--windows", "w", "--manifest", "m.csv", "--out", "o"]),
    (lambda: __import__("flows.cohort_analysis", fromlist=["build_parser"]).build_parser(),
     ["--manifest", "m.csv", "--out", "o"]),
], ids=["pipeline.aggregate", "flows.cohort_analysis"])
def test_cli_has_every_field_with_its_default_and_parses_it_back(make_parser, required):
    parser = make_parser()
    by_dest = {a.dest: a for a in parser._actions}
    for spec in field_specs(ReadoutConfig):
        assert spec.name in by_dest, f"{spec.name} has no flag"
        assert spec.flag in by_dest[spec.name].option_strings
        assert f"(default: " in by_dest[spec.name].help  # --help states the dataclass default
    # no flags: every field is the dataclass default, and said to be
    resolved = _cli_settings(parser, required)
    assert resolved.settings == DEFAULTS and set(resolved.sources.values()) == {"default"}
    # each flag sets exactly its field
    for name, (argv, value) in CHANGED.items():
        extra = ["--rule", "per-class"] if name in ("thresholds", "thresholds_file") else []
        resolved = _cli_settings(parser, [*required, *extra, *argv])
        assert getattr(resolved.settings, name) == value, name
        assert resolved.sources[name] == "user"
        untouched = [f for f in FIELDS if f != name and not (extra and f == "rule")]
        assert all(getattr(resolved.settings, f) == getattr(DEFAULTS, f) for f in untouched), name


def test_flow_schema_has_every_field_with_the_same_default_and_bounds():
    schema = CohortAnalysisParams.model_json_schema()
    props = schema["$defs"]["ReadoutSettings"]["properties"]
    assert sorted(props) == sorted(FIELDS)
    for spec in field_specs(ReadoutConfig):
        default = spec.default
        assert props[spec.name].get("default") == (str(default) if isinstance(default, Path) else default), spec.name
    assert props["threshold"]["exclusiveMinimum"] == 0 and props["threshold"]["maximum"] == 1
    assert props["min_duration_s"]["minimum"] == 0
    # values given to the flow are the settings' values; unset ones are not overrides
    for name, (_, value) in CHANGED.items():
        extra = {"rule": "per-class"} if name in ("thresholds", "thresholds_file") else {}
        p = CohortAnalysisParams(manifest="m.csv", out="o", readout={**extra, name: value})
        assert p.readout.user_values() == {**extra, name: value}
        assert getattr(p.readout.settings(stage="readout").settings, name) == value


def test_sidecar_records_every_field_and_reads_back():
    cfg = ReadoutConfig(**{n: v for n, (_, v) in CHANGED.items() if n != "rule"}, rule="per-class")
    record = cfg.to_dict()
    assert set(FIELDS) <= set(record)
    assert ReadoutConfig.from_dict(json.loads(json.dumps(record))) == cfg


def test_methods_change_with_every_field_that_affects_results(tmp_path):
    from reports.methods import methods_sections
    from reports.run import Run
    import pandas as pd

    def text(cfg: ReadoutConfig) -> str:
        run = Run(root=tmp_path, cohort=pd.DataFrame({"participant_id": ["1"], "group": ["ASD"]}),
                  cohort_meta={"readout": cfg.to_dict()})
        return " ".join(next(s for s in methods_sections(run) if s.title.startswith("Read-out")).text)

    base = ReadoutConfig(rule="multi-label", thresholds={"nodding": 0.7})
    for name in AFFECTS_RESULTS:
        value = CHANGED[name][1]
        if name == "rule":
            value = "top1"
        if name == "thresholds":
            value = {"nodding": 0.7, "waving": 0.6}
        changed = dataclasses.replace(base, **{name: value})
        assert text(changed) != text(base), f"Methods do not mention {name}"


@pytest.mark.parametrize("values, field", [
    ({"threshold": 0}, "readout.threshold"),
    ({"threshold": 1.5}, "readout.threshold"),
    ({"thresholds": {"nodding": 0}}, "readout.thresholds.nodding"),
    ({"min_duration_s": -1}, "readout.min_duration_s"),
    ({"merge_gap_s": float("nan")}, "readout.merge_gap_s"),
    ({"rule": "per-class"}, "readout.thresholds"),
    ({"rule": "nearest"}, "readout.rule"),
    ({"smoothing": 3}, "readout.smoothing"),
])
def test_one_validation_names_the_field(values, field):
    with pytest.raises(SettingsError) as err:
        merge_settings(ReadoutConfig, user=values, stage="readout")
    assert str(err.value).startswith(field + ":") and "\n" not in str(err.value)
    with pytest.raises(SettingsError):  # the same check on an object built around it
        validate_settings({**dataclasses.asdict(DEFAULTS), **values}, ReadoutConfig, stage="readout")


def test_user_values_lie_over_the_base_field_by_field():
    base = {"rule": "per-class", "thresholds": {"nodding": 0.4}, "scores": "interpolate", "min_duration_s": 0.2}
    r = merge_settings(ReadoutConfig, user={"min_duration_s": 0.0}, base=base, base_name="checkpoint", stage="readout")
    assert r.settings == ReadoutConfig(rule="per-class", thresholds={"nodding": 0.4}, scores="interpolate")
    assert r.sources == {"scores": "checkpoint", "rule": "checkpoint", "threshold": "default",
                         "thresholds": "checkpoint", "thresholds_file": "default", "min_duration_s": "user",
                         "merge_gap_s": "default", "min_observed_s": "default"}


def test_a_thresholds_file_replaces_base_thresholds(tmp_path):
    (tmp_path / "t.json").write_text('{"waving": 0.6}')
    r = merge_settings(ReadoutConfig, user={"thresholds_file": tmp_path / "t.json"},
                       base={"rule": "per-class", "thresholds": {"nodding": 0.4}}, stage="readout")
    assert r.settings.resolved().thresholds == {"waving": 0.6}
    assert r.settings.resolved().to_dict()["thresholds_file"] == str(tmp_path / "t.json")


# -- the flow refuses bad read-out settings before any work --------------------------------------
@pytest.fixture
def manifest(tmp_path) -> Path:
    """A manifest whose videos need not exist: the checks must not need them."""
    path = tmp_path / "cohort.csv"
    path.write_text("participant_id,group,video\nA1,ASD,a.mp4\nT1,TDC,t.mp4\n")
    return path


@pytest.fixture
def demo_weights() -> Path:
    from recipes.demo_model import demo_checkpoint_path

    return demo_checkpoint_path()


@pytest.mark.parametrize("argv, field", [
    (["--threshold", "0"], "params.readout.threshold"),
    (["--rule", "per-class", "--thresholds", "/nonexistent/thresholds.json"], "params.readout.thresholds_file"),
    (["--class-threshold", "flying=0.3"], "params.readout.thresholds"),
    (["--groups", "ASD", "PSY"], "params.statistics.groups"),
], ids=["threshold-0", "missing-thresholds-file", "class-not-in-checkpoint", "group-not-in-manifest"])
def test_flow_cli_refuses_before_any_work(tmp_path, capsys, monkeypatch, manifest, demo_weights, argv, field):
    import flows.cohort_analysis as ca

    def no_run(*a, **k):  # fault injection: reaching the run means the check came too late
        raise AssertionError("the run was started")

    monkeypatch.setattr(ca, "run_cohort_analysis", no_run)
    out = tmp_path / "run"
    t0 = time.monotonic()
    groups = [] if "--groups" in argv else ["--groups", "ASD", "TDC"]
    code = ca.main(["--manifest", str(manifest), "--out", str(out), "--weights", str(demo_weights), "-q", *groups, *argv])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2 and field in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # no pose folder, no manifest copy: nothing was written
    print(f"refused in {elapsed:.2f} s: {err}")


def test_flow_itself_checks_before_creating_folders(tmp_path, manifest, demo_weights):
    """A served run skips the CLI: prepare_run (the flow's first step) refuses it the same way."""
    from flows.cohort_analysis import RunRefused, prepare_run

    params = CohortAnalysisParams(manifest=manifest, out=tmp_path / "run", weights=demo_weights,
                                  readout={"thresholds": {"flying": 0.3}}, statistics={"groups": ["ASD", "TDC"]})
    with pytest.raises(RunRefused, match=r"^params\.readout\.thresholds: .*'flying'"):
        prepare_run(params)
    assert not (tmp_path / "run").exists()


def test_flow_defaults_to_the_checkpoints_readout(tmp_path, manifest, demo_weights):
    from flows.cohort_analysis import prepare_run
    from recipes.demo_model import demo_readout

    plan = prepare_run(CohortAnalysisParams(manifest=manifest, out=tmp_path / "run", weights=demo_weights,
                                            statistics={"groups": ["ASD", "TDC"]}))
    assert plan.readout == demo_readout()
    assert plan.readout_sources["thresholds"] == "checkpoint"
    plan = prepare_run(CohortAnalysisParams(manifest=manifest, out=tmp_path / "run", weights=demo_weights,
                                            readout={"min_duration_s": 0.0}, statistics={"groups": ["ASD", "TDC"]}))
    assert plan.readout == dataclasses.replace(demo_readout(), min_duration_s=0.0)
    assert plan.readout_sources["min_duration_s"] == "user"


@pytest.mark.slow
def test_aggregate_uses_the_checkpoints_readout_by_default(tmp_path, capsys, demo_weights):
    """Real chain: simulated videos -> pose -> recognition with the demo checkpoint -> aggregate with no
    read-out flags: the sidecar shows the checkpoint's calibrated read-out and says so per field."""
    from pipeline.aggregate import main as aggregate_main
    from pipeline.artifacts import read_sidecar
    from pipeline.pose import main as pose_main
    from pipeline.recognize import main as recognize_main
    from recipes.demo_model import DEMO_PLAN, demo_readout
    from simulator.__main__ import main as simulate

    assert simulate(["-q", "cohort", "--out", str(tmp_path / "sim"), "--groups", "ASD=1,TDC=1", "--seconds", "5",
                     "--size", "240x288", "--seed", "5"]) == 0
    videos = sorted(str(p) for p in (tmp_path / "sim").rglob("*.mp4"))
    plan = ["--clip-len", str(DEMO_PLAN.clip_len), "--stride", str(DEMO_PLAN.stride), "--hop", str(DEMO_PLAN.hop_s)]
    assert pose_main([*videos, "--out", str(tmp_path / "run" / "pose"), "--frames", "sampled", *plan, "-q"]) == 0
    assert recognize_main([*videos, "--keypoints", str(tmp_path / "run" / "pose"), "--weights", str(demo_weights),
                           "--out", str(tmp_path / "run" / "recognize"), "--workers", "0", "-q"]) == 0
    (tmp_path / "run" / "manifest.csv").write_bytes((tmp_path / "sim" / "manifest.csv").read_bytes())
    capsys.readouterr()
    assert aggregate_main(["--run", str(tmp_path / "run"), "-q"]) == 0
    side = read_sidecar(tmp_path / "run" / "readout" / "cohort.parquet")
    assert ReadoutConfig.from_dict(side["readout"]) == demo_readout()
    assert {k for k, v in side["readout_sources"].items() if v == "checkpoint"} >= {"scores", "rule", "thresholds"}
    # one flag overrides one field only
    assert aggregate_main(["--run", str(tmp_path / "run"), "--min-duration", "0", "-q"]) == 0
    side = read_sidecar(tmp_path / "run" / "readout" / "cohort.parquet")
    assert ReadoutConfig.from_dict(side["readout"]) == dataclasses.replace(demo_readout(), min_duration_s=0.0)
    assert side["readout_sources"]["min_duration_s"] == "user" and side["readout_sources"]["rule"] == "checkpoint"


# -- the pose stage's settings ---------------------------------------------------------------------
POSE_CHANGED = {
    "frames": (["--frames", "sampled"], "sampled"),
    "model_complexity": (["--model-complexity", "0"], 0),
    "plausibility": (["--no-plausibility"], False),
    "min_detected": (["--min-detected", "0.6"], 0.6),
    "layout": (["--layout", "imigue"], "imigue"),
}


def test_pose_settings_walk_cli_flow_and_config():
    from pipeline.pose import build_parser as pose_parser
    from pipeline.pose_config import PoseSettings

    names = [f.name for f in dataclasses.fields(PoseSettings)]
    assert sorted(POSE_CHANGED) == sorted(names)
    parser = pose_parser()
    required = ["v.mp4", "--out", "o"]
    assert from_args(PoseSettings, parser.parse_args(required), stage="pose").settings == PoseSettings()
    props = CohortAnalysisParams.model_json_schema()["$defs"]["PoseSettings"]["properties"]
    assert sorted(props) == sorted(names)
    for name, (argv, value) in POSE_CHANGED.items():
        cli = from_args(PoseSettings, parser.parse_args([*required, *argv]), stage="pose").settings
        assert getattr(cli, name) == value and props[name]["default"] == getattr(PoseSettings(), name)
        flow = CohortAnalysisParams(manifest="m.csv", out="o", pose={name: value}).pose.settings(stage="pose").settings
        assert flow == cli
    # every field reaches the run's PoseConfig, which the keypoints' sidecars and QC table record
    cfg = PoseSettings(frames="sampled", model_complexity=1, plausibility=False, min_detected=0.6, layout="imigue").config()
    assert (cfg.frames, cfg.mediapipe.model_complexity, cfg.plausibility.enabled, cfg.qc.min_detected, cfg.qc.layout) == \
        ("sampled", 1, False, 0.6, "imigue")
    # auto: sampled only when the plan is the checkpoint's
    assert PoseSettings().config(plan_from_checkpoint=True).frames == "sampled"
    assert PoseSettings().config().frames == "all"
    with pytest.raises(SettingsError, match=r"^pose\.min_detected:"):
        merge_settings(PoseSettings, user={"min_detected": 2}, stage="pose")


# -- a rerun with nothing changed skips the read-out and the statistics ---------------------------
def test_readout_and_statistics_know_when_they_are_up_to_date(tmp_path):
    """The flow's skip tests (pipeline.aggregate.readout_up_to_date, flows.cohort_analysis
    .statistics_up_to_date) against real outputs: true after writing, false after any input change."""
    from dataclasses import replace

    from analysis.cohort import load_cohort
    from analysis.config import HurdleConfig, OutputConfig
    from analysis.hurdle import hurdle_analysis
    from analysis.outputs import write_outputs as write_hurdle
    from flows.cohort_analysis import statistics_up_to_date
    from pipeline.aggregate import aggregate, readout_up_to_date, write_outputs
    from pipeline.manifest import read_manifest
    from windows_fixtures import write_windows  # the aggregate tests' windows writer

    w = tmp_path / "windows"
    rows = []
    for k in range(8):
        vid = f"v{k}"
        write_windows(w, vid, [0, 10, 20], [10, 20, 30], [[.8, .1, .1], [.1, .8, .1], [.3, .3, .4]][k % 3:] +
                      [[.6, .3, .1]] * (k % 3))
        rows.append(f"{k},{'ASD' if k < 4 else 'TDC'},{vid}.mp4")
    (tmp_path / "m.csv").write_text("participant_id,group,video\n" + "\n".join(rows) + "\n")
    manifest = read_manifest(tmp_path / "m.csv", check_videos=False)
    cfg, sources = ReadoutConfig(), {"threshold": "user"}
    out = tmp_path / "readout"
    assert not readout_up_to_date(manifest, w, out, cfg, sources)
    write_outputs(aggregate(manifest, w, cfg, sources=sources), out)
    assert readout_up_to_date(manifest, w, out, cfg, sources)
    assert not readout_up_to_date(manifest, w, out, replace(cfg, threshold=0.4), sources)
    assert not readout_up_to_date(manifest, w, out, cfg, {"threshold": "checkpoint"})
    write_windows(w, "v0", [0, 10, 20], [10, 20, 30], [[.1, .1, .8]] * 3)  # one video's windows change
    assert not readout_up_to_date(manifest, w, out, cfg, sources)

    hcfg = HurdleConfig(groups=("ASD", "TDC"), top_actions=None, min_engaged=2)
    cohort = load_cohort(out / "cohort.parquet")
    assert not statistics_up_to_date(out / "cohort.parquet", tmp_path / "hurdle", hcfg)
    write_hurdle(hurdle_analysis(cohort, hcfg), cohort, hcfg, OutputConfig(), tmp_path / "hurdle",
                 source=out / "cohort.parquet")
    assert statistics_up_to_date(out / "cohort.parquet", tmp_path / "hurdle", hcfg)
    assert not statistics_up_to_date(out / "cohort.parquet", tmp_path / "hurdle", replace(hcfg, correction="holm"))
    write_outputs(aggregate(manifest, w, cfg, sources=sources), out)  # a changed cohort table
    assert not statistics_up_to_date(out / "cohort.parquet", tmp_path / "hurdle", hcfg)


# -- the statistics' settings: HurdleConfig is the flow's parameter model; its CLI maps 1:1 --------
def test_statistics_fields_map_one_to_one_to_the_cli_flow_and_methods(tmp_path):
    """``python -m analysis.hurdle`` keeps its hand-written flags (its interface is fixed); this test is
    the field-by-field mapping: every HurdleConfig field is a flag of the same name and default, a
    flow parameter of the same default, recorded in the results' sidecar and listed in the Methods."""
    from analysis.config import HurdleConfig, OutputConfig
    from analysis.hurdle import build_parser as hurdle_parser

    names = [f.name for f in dataclasses.fields(HurdleConfig)]
    parser = hurdle_parser()
    args = parser.parse_args(["--cohort", "c.parquet"])
    dests = {a.dest for a in parser._actions}
    default = HurdleConfig()
    for name in names:
        assert name in dests, f"analysis.hurdle has no flag for {name}"
        assert HurdleConfig(**{n: getattr(args, n) for n in names if n in vars(args)}) == default
    props = CohortAnalysisParams.model_json_schema()["$defs"]["StatisticsSettings"]["properties"]
    assert sorted(props) == sorted(names)
    for name in names:
        want = getattr(default, name)
        assert props[name].get("default") == (list(want) if isinstance(want, tuple) else want), name
    # the flow's only own default: participants of other groups are dropped, not refused
    from flows.cohort_analysis import hurdle_config

    cfg = hurdle_config(CohortAnalysisParams(manifest="m.csv", out="o"))
    assert dataclasses.replace(cfg, ignore_other_groups=False) == default
    # sidecar and Methods: every field by name (analysis.outputs records config.analysis)
    import pandas as pd
    from reports.methods import methods_sections
    from reports.run import Run

    from analysis.hurdle import hurdle_analysis
    from analysis.simulate import SimConfig, simulate_cohort

    cohort, _ = simulate_cohort(SimConfig(n_actions=3, seed=1))
    small = dataclasses.replace(cfg, top_actions=None)
    results = hurdle_analysis(cohort, small)
    run = Run(root=tmp_path, cohort=cohort, cohort_meta={}, results=results,
              results_meta={"config": {"analysis": dataclasses.asdict(small), "output": dataclasses.asdict(OutputConfig())}})
    stats = next(s for s in methods_sections(run) if s.title.startswith("Statistical"))
    listed = {k.split(".", 1)[1] for k, _ in stats.params if k.startswith("analysis.")}
    assert listed >= set(names)


def test_report_settings_walk_cli_and_flow():
    from reports.build import build_parser as report_parser
    from reports.settings import ReportSettings

    changed = {"reference_group": (["--reference-group", "ASD"], "ASD"), "show_paths": (["--show-paths"], True)}
    names = [f.name for f in dataclasses.fields(ReportSettings)]
    assert sorted(changed) == sorted(names)
    parser = report_parser()
    required = ["--run", "r", "--out", "o"]
    assert from_args(ReportSettings, parser.parse_args(required), stage="report").settings == ReportSettings()
    props = CohortAnalysisParams.model_json_schema()["$defs"]["ReportSettings"]["properties"]
    assert sorted(props) == sorted(names)
    for name, (argv, value) in changed.items():
        cli = from_args(ReportSettings, parser.parse_args([*required, *argv]), stage="report").settings
        flow = CohortAnalysisParams(manifest="m.csv", out="o", report={name: value}).report.settings(stage="report").settings
        assert getattr(cli, name) == value and flow == cli
        assert props[name].get("default") == getattr(ReportSettings(), name)


def test_recognition_settings_walk_cli_flow_and_options():
    from pipeline.recognize.cli import build_parser as recognize_parser
    from pipeline.recognize.options import RecognitionSettings

    changed = {"device": (["--device", "cuda:1"], "cuda:1"), "batch_size": (["--batch-size", "8"], 8),
               "amp": (["--no-amp"], False), "compile": (["--compile"], True),
               "channels_last": (["--no-channels-last"], False), "min_valid": (["--min-valid", "0.7"], 0.7),
               "decoder": (["--decoder", "nvdec"], "nvdec")}
    names = [f.name for f in dataclasses.fields(RecognitionSettings)]
    assert sorted(changed) == sorted(names)
    parser = recognize_parser()
    required = ["v.mp4", "--keypoints", "k", "--weights", "w.pt", "--out", "o"]
    assert from_args(RecognitionSettings, parser.parse_args(required), stage="recognition").settings == RecognitionSettings()
    props = CohortAnalysisParams.model_json_schema()["$defs"]["RecognitionSettings"]["properties"]
    assert sorted(props) == sorted(names)
    for name, (argv, value) in changed.items():
        cli = from_args(RecognitionSettings, parser.parse_args([*required, *argv]), stage="recognition").settings
        flow = CohortAnalysisParams(manifest="m.csv", out="o", recognition={name: value}).recognition
        assert getattr(cli, name) == value and flow.settings(stage="recognition").settings == cli
        assert props[name]["default"] == getattr(RecognitionSettings(), name)
        # every field reaches the options the engine runs with
        assert getattr(cli.options(workers=0), name) == value
    with pytest.raises(SettingsError, match=r"^recognition\.batch_size:"):
        merge_settings(RecognitionSettings, user={"batch_size": 10**9}, stage="recognition")
