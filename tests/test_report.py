"""The report builder without a browser: content, safety, methods from configs, missing parts, CLI.

The run folders are built by tests/test_report_fixture.py with the real read-out and hurdle stages.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.artifacts import read_artifact
from pipeline.readout import ReadoutConfig
from reports.build import build_report, build_report_files, main, page_name
from reports.run import load_run, uncovered
from reports.summaries import bouts_from_segments, effects_table, participant_actions, percentile_of
from test_report_fixture import ACTIONS, EVIL_ID, REAL_NAME, make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("rep") / "run")


@pytest.fixture(scope="module")
def bare_run(run_dir: Path) -> Path:
    """Only the cohort table and its sidecar: the least a report accepts (quick to build)."""
    bare = run_dir.parent / "bare"
    (bare / "readout").mkdir(parents=True)
    for f in ("cohort.parquet", "cohort.parquet.json"):
        shutil.copy2(run_dir / "readout" / f, bare / "readout" / f)
    return bare


@pytest.fixture(scope="module")
def report(run_dir: Path) -> Path:
    return build_report(run_dir, run_dir.parent / "report")


def _pages(report: Path) -> list[Path]:
    return [report, *sorted((report.parent / "participants").glob("*.html"))]


def _text(page: Path) -> str:
    """Visible text of a page (tags, styles and data URIs removed, entities decoded)."""
    s = page.read_text(encoding="utf-8")
    s = re.sub(r"<style>.*?</style>", " ", s, flags=re.S)
    s = re.sub(r"<[^>]+>", " ", s)
    return re.sub(r"\s+", " ", html.unescape(s))


def _section(page: Path, sid: str) -> str:
    s = page.read_text(encoding="utf-8")
    m = re.search(rf'<section id="{sid}".*?</section>', s, flags=re.S)
    assert m, sid
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", m.group(0))))


# -- pure functions ----------------------------------------------------------------------------------
def test_percentile_is_the_mid_rank() -> None:
    rng = np.random.default_rng(0)
    ref = np.round(rng.exponential(3, 200), 1)
    ref[:80] = 0.0
    for x in (0.0, 0.1, 2.0, 5.3, 100.0):
        expected = 100 * ((ref < x).sum() + 0.5 * (ref == x).sum()) / ref.size
        assert percentile_of(ref, x) == pytest.approx(expected)
    assert percentile_of([0, 0, 0, 0], 0) == 50  # ties share the middle
    assert np.isnan(percentile_of([], 1.0))


def test_violins_recoloured_by_group_position(run_dir: Path) -> None:
    """Each group's violin body and dots take the Okabe-Ito colour of the group's x position."""
    from matplotlib.collections import PathCollection, PolyCollection
    from matplotlib.colors import to_hex

    from analysis.plots import violin_figure
    from reports.figures import OKABE_ITO, recolour_groups

    run = load_run(run_dir)
    a = "turning head"
    engaged = run.cohort[(run.cohort["action"] == a) & (run.cohort["percent_time"] > 0)]
    fig = violin_figure(engaged, a, run.groups)
    recolour_groups(fig, len(run.groups))
    seen = set()
    for coll in fig.axes[0].collections:
        if isinstance(coll, PathCollection):
            i = int(round(float(np.mean(coll.get_offsets()[:, 0]))))
        elif isinstance(coll, PolyCollection):
            i = int(round(float(np.mean(coll.get_paths()[0].vertices[:, 0]))))
        else:
            continue
        assert to_hex(coll.get_facecolor()[0], keep_alpha=False) == OKABE_ITO[i].lower()
        seen.add(i)
    assert seen == set(range(len(run.groups)))


def test_ethogram_draws_no_file_names(run_dir: Path) -> None:
    """Text drawn into a figure escapes HTML redaction, so the ethogram shows labels only."""
    from reports.figures import ethogram_figure

    run = load_run(run_dir)
    videos = run.videos["P00001"]
    videos[1].excluded = f"pose failed: videos/{REAL_NAME}.mp4: cannot open"
    fig = ethogram_figure(videos, list(ACTIONS))
    texts = [t.get_text() for ax in fig.axes for t in ax.texts + [ax.title, ax._left_title, ax.xaxis.label]]
    texts += [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert "video 2 (excluded)" in texts
    assert not any(REAL_NAME in t or "rec" in t for t in texts)


def test_redaction_replaces_whole_names_only(run_dir: Path) -> None:
    from reports.build import _Redactor

    run = load_run(run_dir)
    v = run.videos["P00000"][0]
    red = _Redactor(run, show_paths=False)
    msg = f"pose failed: {v.source}: cannot open; see {Path(v.source).name} and {v.video_id}.parquet"
    out = red(msg)
    assert REAL_NAME not in out and out.count("[video 1 of participant P00000]") == 3
    assert red(f"x{v.video_id}y and {v.video_id}0") == f"x{v.video_id}y and {v.video_id}0"  # inside longer names
    assert _Redactor(run, show_paths=True)(msg) == msg


def test_uncovered_spans() -> None:
    assert uncovered([(0, 2), (1, 3), (5, 6)], 0, 8) == [(3, 5), (6, 8)]
    assert uncovered([], 0, 4) == [(0, 4)]
    assert uncovered([(0, 10)], 0, 4) == []


# -- the run as the report reads it ------------------------------------------------------------------
def test_no_pose_stretches_are_exactly_the_time_outside_the_denominator(run_dir: Path) -> None:
    """Per participant, duration - no-pose time equals the read-out's observed_s (computed independently)."""
    run = load_run(run_dir)
    observed = run.participant_table().set_index("participant_id")["observed_s"]
    checked = 0
    for pid, videos in run.videos.items():
        if pid not in observed.index:
            continue
        seen = sum(v.duration_s - sum(b - a for a, b in v.no_pose) for v in videos if not v.excluded)
        assert seen == pytest.approx(observed[pid], abs=1e-6)
        checked += any(v.no_pose for v in videos)
    assert checked >= 3  # the fixture has participants with a no-pose stretch


def test_bouts_from_segments_match_the_readout_bouts_table(run_dir: Path) -> None:
    """The report's fallback (bouts from segments) agrees with the read-out's own bouts table."""
    run = load_run(run_dir)
    table = run.bouts.set_index(["participant_id", "action"])
    compared = 0
    for pid, videos in run.videos.items():
        if pid not in set(run.participants):
            continue
        for r in bouts_from_segments(videos).itertuples():
            t = table.loc[(pid, r.action)]
            assert r.bout_count == t["bout_count"]
            assert r.mean_bout_s == pytest.approx(t["mean_bout_s"], abs=1e-6)
            assert r.latency_s == pytest.approx(t["latency_s"], abs=1e-6)
            compared += 1
    assert compared > 20


def test_participant_actions_cover_every_action_with_percentiles(run_dir: Path) -> None:
    run = load_run(run_dir)
    tab = participant_actions(run, EVIL_ID, "TDC")
    assert sorted(tab["action"]) == sorted(ACTIONS)
    tdc = run.cohort[run.cohort["group"] == "TDC"]
    for r in tab.itertuples():
        ref = tdc.loc[tdc["action"] == r.action, "percent_time"].to_numpy()
        if r.percent_time > 0:
            assert r.percentile == pytest.approx(percentile_of(ref, r.percent_time))
        else:  # never shown: no percentile, the count of the reference at 0 % instead
            assert np.isnan(r.percentile) and r.ref_zero == int((np.asarray(ref) == 0).sum()) and r.ref_n == len(ref)
        assert (r.bout_count == 0) == (r.percent_time == 0)


def test_marginal_effects_fallback_is_the_observed_difference(run_dir: Path) -> None:
    """Without ame_pp in the results, the report uses observed differences; they equal the model's AME
    when the model has group dummies only (checked against a fit without covariates)."""
    from analysis.config import HurdleConfig
    from analysis.hurdle import hurdle_analysis

    run = load_run(run_dir)
    plain = hurdle_analysis(run.cohort, HurdleConfig(top_actions=None, min_engaged=2))
    run.results = plain.drop(columns=["ame_pp"]).assign(covariates="none")
    fallback = effects_table(run)
    est = plain["p"].notna() & ~plain["method"].str.startswith("Firth")
    assert est.sum() > 10
    np.testing.assert_allclose(fallback.loc[est, "ame_pp"], plain.loc[est, "ame_pp"], atol=1e-5)


# -- pages -------------------------------------------------------------------------------------------
def test_pages_exist_and_link_to_each_other(report: Path, run_dir: Path) -> None:
    run = load_run(run_dir)
    pages = _pages(report)
    ids = set(run.participants) | set(run.videos)
    assert len(pages) == 1 + len(ids)
    s = report.read_text(encoding="utf-8")
    for pid in ids:
        assert f'href="participants/{page_name(pid)}"' in s
    for p in pages[1:]:
        body = p.read_text(encoding="utf-8")
        assert 'href="../index.html"' in body
        for target in re.findall(r'href="([^"#]+\.html)"', body):
            assert (p.parent / target).resolve().exists(), target


def test_participant_page_lists_every_segment(report: Path, run_dir: Path) -> None:
    run = load_run(run_dir)
    for pid in ("P00000", "P00001"):
        n = sum(len(v.segments) for v in run.videos[pid] if v.segments is not None)
        page = (report.parent / "participants" / page_name(pid)).read_text(encoding="utf-8")
        body = re.search(r'<table id="segments-table">.*?<tbody>(.*?)</tbody>', page, flags=re.S).group(1)
        assert n > 0 and body.count("<tr>") == n


def test_hostile_id_is_escaped_and_nothing_executable_is_written(report: Path) -> None:
    escaped = html.escape(EVIL_ID)
    for p in _pages(report):
        s = p.read_text(encoding="utf-8")
        assert EVIL_ID not in s, p.name
        assert "<script" not in s.lower()
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", re.sub(r'"[^"]*"', '""', s), flags=re.I)  # no event handlers
    assert escaped in report.read_text(encoding="utf-8")
    assert escaped in (report.parent / "participants" / page_name(EVIL_ID)).read_text(encoding="utf-8")
    assert re.fullmatch(r"script-alert-1-script-[0-9a-f]{8}\.html", page_name(EVIL_ID))


def test_video_names_hidden_unless_asked(report: Path, run_dir: Path, tmp_path: Path) -> None:
    for p in _pages(report):
        s = p.read_text(encoding="utf-8")
        assert REAL_NAME not in s and "rec00_0" not in s and str(run_dir.resolve()) not in s, p.name
    shown = build_report(run_dir, tmp_path / "paths", show_paths=True)
    assert REAL_NAME in (shown.parent / "participants" / page_name("P00000")).read_text(encoding="utf-8")


def test_banner_on_every_page_only_for_simulated_models(report: Path, tmp_path: Path) -> None:
    for p in _pages(report):
        assert 'id="demo-banner"' in p.read_text(encoding="utf-8"), p.name
    real = make_run(tmp_path / "real", simulated_model=False, hurdle=False)
    out = build_report(real, tmp_path / "real_report")
    for p in _pages(out):
        assert "demo-banner" not in p.read_text(encoding="utf-8")


def test_results_table_has_one_row_per_result_and_summary_counts(report: Path, run_dir: Path) -> None:
    results = read_artifact(run_dir / "hurdle" / "results.parquet", "hurdle_results").to_pandas()
    s = report.read_text(encoding="utf-8")
    body = re.search(r'<table id="results-table">.*?<tbody>(.*?)</tbody>', s, flags=re.S).group(1)
    assert body.count("<tr>") + body.count('<tr class="has-note">') == len(results)  # a note is a row of its own
    cohort = read_artifact(run_dir / "readout" / "cohort.parquet", "cohort").to_pandas()
    per_group = cohort.drop_duplicates("participant_id")["group"].value_counts()
    summary = _section(report, "summary")
    for g, n in per_group.items():
        assert re.search(rf"\b{g} {n} ", summary), (g, n)
    # the QC section names the failed video's cause and the excluded participant
    qc = _section(report, "qc")
    assert "pose failed" in qc and "moov atom" in qc


def test_methods_follow_the_configs(run_dir: Path, report: Path, tmp_path: Path) -> None:
    """Two runs differing only in the read-out threshold (and minimum duration) get different Methods."""
    other = make_run(tmp_path / "run2", threshold=0.7, min_duration_s=1.0, windows_from=run_dir, hurdle=False)
    out = build_report(other, tmp_path / "report2")
    a, b = _section(report, "methods"), _section(out, "methods")
    assert "at least 0.5," in a and "at least 0.7," in b
    assert "shorter than 0.5 s" in a and "shorter than 1 s" in b
    assert "checkpoint c0ffee000000" in a and "MediaPipe BlazePose" in a and "Covariates: age." in a
    assert "No group comparison was run." in b
    assert "No hurdle/results.parquet" in _text(out)  # the missing part is said, not hidden
    assert a != b


@pytest.mark.parametrize("rule, extra, phrase", [
    ("threshold", {}, "at least 0.35, and no micro-action otherwise"),
    ("top1", {}, "every valid frame is labelled"),
    ("per-class", {"thresholds": {"nodding": 0.3, "head up": 0.6}}, "per-class thresholds: 2 classes set, the others 0.35"),
    ("multi-label", {}, "every class whose score reached its threshold (0.35)"),
    ("background", {}, "background class meaning no micro-action"),
])  # fmt: skip
def test_methods_state_each_readout_rule(run_dir: Path, rule: str, extra: dict, phrase: str) -> None:
    from pipeline.frame_labels import RULES
    from reports.methods import methods_sections

    assert rule in RULES
    run = load_run(run_dir)
    run.cohort_meta["readout"] = {"rule": rule, "threshold": 0.35, "thresholds": {}, "min_duration_s": 0.0,
                                 "merge_gap_s": 1.5, "order": "merge then drop", **extra}  # fmt: skip
    text = " ".join(next(s for s in methods_sections(run) if s.title.startswith("Read-out")).text)
    assert phrase in text
    assert "gaps of up to 1.5 s" in text and "no minimum duration was applied" in text


@pytest.mark.parametrize("scores, phrase", [
    ("mean", "mean of the probabilities of the classified windows covering the frame"),
    ("interpolate", "interpolated linearly between the centres of the classified windows"),
])  # fmt: skip
def test_methods_state_how_frame_scores_were_made(run_dir: Path, scores: str, phrase: str) -> None:
    from reports.methods import methods_sections

    run = load_run(run_dir)
    run.cohort_meta["readout"] = {**ReadoutConfig(scores=scores).to_dict()}
    text = " ".join(next(s for s in methods_sections(run) if s.title.startswith("Read-out")).text)
    assert phrase in text


def test_missing_optional_parts_are_noted_not_fatal(bare_run: Path, tmp_path: Path, monkeypatch) -> None:
    bare = bare_run
    monkeypatch.chdir(bare)  # a relative run folder ("."): its name must not be "redacted" out of the text
    out = build_report(".", tmp_path / "bare_report")
    text = _text(out)
    assert "<run folder>" not in text and "pose/qc.parquet" in text
    for phrase in ("No manifest", "No pose/qc.parquet", "No recognize/windows/", "No readout/segments/", "No hurdle/results.parquet"):
        assert phrase in text
    pages = _pages(out)
    assert len(pages) == 1 + load_run(bare).cohort["participant_id"].nunique()
    assert "Ethogram" in pages[1].read_text(encoding="utf-8")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_rebuild_removes_only_its_own_stale_pages(bare_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    build_report(bare_run, out)
    manifest = json.loads((out / ".report.outputs.json").read_text())
    assert manifest["stage"] == "report" and "index.html" in manifest["files"]
    # a page of an earlier build for a participant no longer in the run (recorded, unchanged) goes;
    # one the user edited since, and the user's own page, stay
    stale, edited = sorted(manifest["files"])[1:3]
    users = out / "participants" / "notes.html"
    users.write_text("mine")
    fake_ids = {"zz-old-00000000.html": "stale", "zz-edit-11111111.html": "edited"}
    for name in fake_ids:
        (out / "participants" / name).write_bytes((out / stale).read_bytes())
    from pipeline.ownership import update_manifest

    update_manifest(out, "report", add=[f"participants/{n}" for n in fake_ids])
    (out / "participants" / "zz-edit-11111111.html").write_text("my annotations")
    build_report(bare_run, out)
    assert not (out / "participants" / "zz-old-00000000.html").exists()
    assert (out / "participants" / "zz-edit-11111111.html").read_text() == "my annotations"
    assert users.read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.startswith(".staging")]


def test_an_old_report_json_folder_is_migrated(bare_run: Path, tmp_path: Path) -> None:
    """A folder built before output manifests: pages listed in report.json that are provably ours (our
    page names and our CSP line) are adopted once, so the rebuild retires the stale one."""
    out = tmp_path / "old"
    pages = build_report_files(bare_run, out)
    (out / ".report.outputs.json").unlink()
    (out / ".report-inputs.json").unlink()  # newer than output manifests: an old folder has none
    stale = out / "participants" / "gone-00000000.html"
    stale.write_bytes(pages[1].read_bytes())  # a page of a participant no longer in the run
    names = [p.relative_to(out).as_posix() for p in pages] + ["participants/gone-00000000.html"]
    (out / "report.json").write_text(json.dumps({"report_version": "1", "created": "x", "pages": names}))
    build_report(bare_run, out)
    assert not stale.exists() and not (out / "report.json").exists()
    assert all(p.exists() for p in pages)


def test_a_forged_old_listing_deletes_nothing_of_the_users(bare_run: Path, tmp_path: Path, capsys) -> None:
    """Issue 19: reports.build deleted every .html listed in any report.json under --out, even the
    user's ({"pages": ["Documents/cv.html"]} emptied a folder). Old listings are now read once and make
    nothing deletable unless the page is provably one of ours."""
    home = tmp_path / "home"
    cv = home / "Documents" / "cv.html"
    cv.parent.mkdir(parents=True)
    cv.write_text("<html>my CV</html>")
    (home / "participants").mkdir()
    look_alike = home / "participants" / "someone-0123abcd.html"  # our name pattern, not our page
    look_alike.write_text("<html>mine</html>")
    outside = tmp_path / "outside.html"
    outside.write_text("keep")
    forged = {"report_version": "1", "pages": ["Documents/cv.html", "../outside.html", str(outside),
                                               "participants/someone-0123abcd.html"]}
    (home / "report.json").write_text(json.dumps(forged))
    pages = build_report_files(bare_run, home)
    assert cv.read_text() == "<html>my CV</html>" and look_alike.read_text() == "<html>mine</html>"
    assert outside.read_text() == "keep"
    assert not (home / "report.json").exists()  # migrated: read once, then gone
    recorded = set(json.loads((home / ".report.outputs.json").read_text())["files"])
    assert recorded == {p.relative_to(home).as_posix() for p in pages} | {".report-inputs.json"}
    # the same attack with a forged manifest of the new format: fingerprints that do not match
    # the user's files, and a path outside, remove nothing either
    doc = json.loads((home / ".report.outputs.json").read_text())
    entry = doc["files"]["index.html"]
    doc["files"].update({"Documents/cv.html": entry, "../outside.html": entry})
    (home / ".report.outputs.json").write_text(json.dumps(doc))
    build_report(bare_run, home)
    assert cv.read_text() == "<html>my CV</html>" and outside.read_text() == "keep"
    # a user's own index.html (listed or not) is refused, exit 2, and nothing in the folder changes
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "index.html").write_text("<html>my site</html>")
    (user_dir / "report.json").write_text(json.dumps({"pages": ["index.html"]}))
    before = _snapshot(user_dir)
    capsys.readouterr()  # what the builds above logged
    with pytest.raises(SystemExit) as exc:
        main(["--run", str(bare_run), "--out", str(user_dir), "-q"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and str(user_dir / "index.html") in err
    assert _snapshot(user_dir) == before


# -- command line ------------------------------------------------------------------------------------
def test_cli_writes_and_reports(bare_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["--run", str(bare_run), "--out", str(tmp_path / "cli"), "--reference-group", "ASD"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'cli' / 'index.html'}" in out
    assert out.count("wrote ") == 1 + len(list((tmp_path / "cli" / "participants").glob("*.html")))
    assert "among the ASD group" in (tmp_path / "cli" / "participants" / page_name("P00000")).read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["--run", "{tmp}/nowhere"], "is not a folder"),
    (["--run", "{run}", "--reference-group", "XYZ"], "'XYZ' is not a group"),
    (["--run", "{tmp}"], "no readout/cohort.parquet"),
])  # fmt: skip
def test_cli_bad_input_exit_2_nothing_written(args, message, run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in args] + ["--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (out / "index.html").exists()


@pytest.mark.parametrize("method, phrase", [
    ("permutation", "a permutation test of the group labels among the two groups' engagers"),
    ("hc0-z", "Wald tests with HC0 x n/(n-1) robust (sandwich) standard errors and a normal reference"),
    ("hc3-t", "HC3 robust (sandwich) standard errors and a t reference with n - p degrees of freedom"),
    (None, "the run does not record which test"),
])  # fmt: skip
def test_methods_state_the_intensity_test_from_the_config(run_dir: Path, method: str | None, phrase: str) -> None:
    from reports.methods import methods_sections

    run = load_run(run_dir)
    cfg = run.results_meta["config"]["analysis"]
    assert cfg["intensity_se"] == "permutation" and cfg["min_engaged_test"] == 12  # recorded by the hurdle stage
    if method is None:
        del cfg["intensity_se"]
    else:
        cfg["intensity_se"] = method
    text = " ".join(next(s for s in methods_sections(run) if s.title == "Statistical model").text)
    assert phrase in text
    if method is not None:
        assert f"intensity_se = {method}" in text and "fewer than 12 engagers in a group" in text
    assert ("the default:" in text) == (method == "permutation")


def test_top_findings_give_intervals_both_parts_and_the_full_tables_wording(report: Path, run_dir: Path) -> None:
    results = read_artifact(run_dir / "hurdle" / "results.parquet", "hurdle_results").to_pandas()
    s = report.read_text(encoding="utf-8")
    body = re.search(r'<table id="publication-table">.*?<tbody>(.*?)</tbody>', s, flags=re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)
    best = results[results["p"].notna()].sort_values(["p", "p_adj", "action", "contrast", "part"], kind="mergesort")
    assert len(rows) == min(10, len(best))
    for row, r in zip(rows, best.itertuples()):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
        assert cells[:3] == [r.action, f"{r.group_a} vs {r.group_b}", r.part] and " > " not in cells[1]
        assert cells[3] == f"{r.effect:.2f}" and cells[4] == f"{r.ci_low:.2f}–{r.ci_high:.2f}"


def test_a_separation_note_names_the_actions_model_on_other_groups_rows() -> None:
    from types import SimpleNamespace

    from reports.build import contrast_note

    note = "separation (TDC: all engaged): Firth penalised likelihood, penalised LR p, profile CI"
    own = SimpleNamespace(note=note, group_a="ASD", group_b="TDC")
    other = SimpleNamespace(note=note, group_a="ASD", group_b="PSY")
    assert contrast_note(own) == note
    text = contrast_note(other)
    assert text.startswith("this action's model (all groups together) had separation (TDC: all engaged)")
    assert text.endswith("uses Firth penalised likelihood, penalised LR p, profile CI")
    assert contrast_note(SimpleNamespace(note=None, group_a="A", group_b="B")) == ""


def test_violins_are_sharp_and_say_when_a_group_has_no_violin(run_dir: Path) -> None:
    import base64
    import io

    from PIL import Image

    from reports.figures import violin_image

    run = load_run(run_dir)
    cohort = run.cohort.copy()
    engagers = cohort[cohort["percent_time"] > 0].groupby("action")["participant_id"].nunique()
    action = engagers.idxmax()  # every group has 2 or more engagers of it before the cut
    g0, g1 = run.groups[0], run.groups[1]
    keep = ~((cohort["action"] == action) & (cohort["group"] == g0))  # nobody of g0 shows it
    one = cohort[(cohort["action"] == action) & (cohort["group"] == g1) & (cohort["percent_time"] > 0)]
    keep &= ~cohort.index.isin(one.index[1:])  # one engager of g1 left
    image, small = violin_image(cohort[keep], action, run.groups, effects_table(run))
    before = cohort[(cohort["action"] == action) & (cohort["percent_time"] > 0)].groupby("group").size()
    assert small == {g0: 0, g1: 1, **{g: int(n) for g, n in before.items() if n < 2 and g not in (g0, g1)}}
    png = Image.open(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1])))
    assert png.size == (2 * image["width"], 2 * image["height"])  # twice the pixels of its CSS size


def test_an_action_never_shown_gets_no_percentile_on_the_page(report: Path, run_dir: Path) -> None:
    page = report.parent / "participants" / page_name(EVIL_ID)
    s = page.read_text(encoding="utf-8")
    body = re.search(r'<table id="actions-table">.*?<tbody>(.*?)</tbody>', s, flags=re.S).group(1)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S) for r in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S)]
    zero = [r[4] for r in rows if r[0] == "0.00"]
    shown = [r[4] for r in rows if r[0] != "0.00"]
    assert zero and all(re.fullmatch(r'<span class="zero">not shown \(\d+/\d+ at 0 %\)</span>', c) for c in zero)
    assert all('class="bar"' in c for c in shown)


def test_an_unchanged_run_needs_no_new_report_and_a_changed_one_does(run_dir: Path, tmp_path: Path) -> None:
    from reports.build import report_up_to_date

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    out = tmp_path / "report"
    pages = build_report_files(run, out)
    assert ".report-inputs.json" not in {p.name for p in pages} and (out / ".report-inputs.json").is_file()
    assert report_up_to_date(run, out)
    assert not report_up_to_date(run, out, reference_group="ASD")  # other settings
    qc = run / "pose" / "qc.parquet"
    import pandas as pd

    table = pd.read_parquet(qc)
    table["seconds"] = table["seconds"] * 2 + 1  # a rerun's timings: not what the report shows
    table.to_parquet(qc)
    assert report_up_to_date(run, out)
    table.loc[0, "valid_fraction"] = 0.1234  # a changed video
    table.to_parquet(qc)
    assert not report_up_to_date(run, out)
