"""Human codings in the ``cohort-analysis`` flow: imported before recognition, validated after the read-out.

Fast tests: the plain functions the flow calls (:mod:`pipeline.codings.plan`: which files, which
format, one import; :func:`flows.cohort_analysis.prepare_run`: refusal at submission and the error
correction's validation folder) on the small real videos of tests/codings_fixtures.py.

Slow tests: the flow itself against a real ``prefect server start`` (tests/flow_fixtures.py) on a
small simulated cohort coded by the simulator's simulated coders (``python -m simulator coders``,
ELAN files named per video in the manifest's ``coding`` column): what it writes is compared with a
direct import of the same files, the validation artifact is read back from the server's REST API, and a
bad coding file fails the run with one line before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from codings_fixtures import MAPPING_CSV, write_cohort
from analysis.agreement.compare import summary_markdown
from model.taxonomy import MA52
from pipeline.cli import BadInput
from pipeline.codings.importer import import_codings
from pipeline.codings.plan import CodingPlan, read_planned, resolve_codings, write_planned
from pipeline.manifest import read_manifest
from test_codings_import import SLOTS, TIERS, eaf

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# The plain functions (fast)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coded(tmp_path_factory) -> Path:
    """codings_fixtures' three videos, an ELAN file for P01_a (coders anna, Björn), one CSV for the rest."""
    root = tmp_path_factory.mktemp("coded")
    write_cohort(root)
    (root / "map.csv").write_text(MAPPING_CSV)
    (root / "codings").mkdir()
    (root / "codings" / "P01_a.eaf").write_text(eaf(TIERS, SLOTS), encoding="utf-8")
    (root / "codings" / "rest.csv").write_text("video,coder,action,start_s,stop_s\nP01_b,anna,NOD,0.5,1.5\n"
                                               "P02,carl,HS,1.0,3.0\nP02,carl,tap,3.5,\n")
    return root


def _manifest(root: Path, rows: list[str], header="participant_id,group,video,coding,coding_format,age",
              name="m.csv") -> Path:
    path = root / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


ROWS = ["P01,ASD,videos/P01_a.mp4,codings/P01_a.eaf,,9", "P01,ASD,videos/P01_b.mp4,codings/rest.csv,csv,9",
        "P02,TDC,videos/P02.mp4,codings/rest.csv,csv,7"]


def test_the_manifest_column_names_files_formats_from_cells_or_extensions(coded):
    m = read_manifest(_manifest(coded, ROWS))
    assert m.covariates == ("age",)  # coding and coding_format are not covariates
    plan = resolve_codings(m, mapping=coded / "map.csv")
    # rest.csv is named twice and read once; the .eaf's format comes from its extension
    assert plan.sources == (("elan", (coded / "codings" / "P01_a.eaf",)), ("csv", (coded / "codings" / "rest.csv",)))
    assert plan.origin == "manifest"
    # a folder instead, with its format; no coding column: the same files as the CLI finds them
    plain = read_manifest(coded / "manifest.csv")
    folder = resolve_codings(plain, folder=coded / "codings", format="csv", mapping=coded / "map.csv")
    assert folder.sources == (("csv", (coded / "codings" / "rest.csv",)),) and folder.origin == "codings"
    assert resolve_codings(plain) is None  # nothing named: no codings
    # the run's codings_format is the default of a row without a coding_format cell
    m2 = read_manifest(_manifest(coded, ["P01,ASD,videos/P01_a.mp4,codings/rest.csv,,9"], name="m2.csv"))
    assert resolve_codings(m2, format="csv", mapping=coded / "map.csv").sources[0][0] == "csv"


@pytest.mark.parametrize("rows, kw, message", [
    (["P01,ASD,videos/P01_a.mp4,codings/rest.csv,,9"], {},
     "manifest: {m} row 1 (line 2): the format of coding 'rest.csv' cannot be told from its extension"),
    (["P01,ASD,videos/P01_a.mp4,codings/P01_a.eaf|codings/none.eaf,,9"], {},
     "manifest: {m} row 1 (line 2): coding 'none.eaf' not found"),
    (["P01,ASD,videos/P01_a.mp4,codings/rest.csv,noldus,9"], {},
     "manifest: {m} row 1 (line 2): coding_format 'noldus' is not one of boris, elan, observer, csv"),
    (["P01,ASD,videos/P01_a.mp4,codings/rest.csv,csv,9", "P02,TDC,videos/P02.mp4,codings/rest.csv,observer,7"], {},
     "manifest: {m} row 2 (line 3): coding 'rest.csv' is given as observer here and as csv at {m} row 1 (line 2)"),
    (ROWS, {"folder": "codings"}, "codings: the manifest {m} names coding files (column 'coding', 3 row(s))"),
    (ROWS, {"mapping": None}, "codings_mapping: codings need an ethogram mapping"),
])
def test_unusable_codings_are_refused_in_one_line_naming_the_parameter(coded, rows, kw, message):
    m = _manifest(coded, rows, name="bad.csv")
    kw = {"mapping": coded / "map.csv", **kw}
    with pytest.raises(BadInput) as err:
        resolve_codings(read_manifest(m), **kw)
    text = str(err.value)
    assert text.startswith(message.format(m=m)) and "\n" not in text


def test_a_mapping_without_codings_and_a_folder_without_format_are_refused(coded):
    plain = read_manifest(coded / "manifest.csv")
    with pytest.raises(BadInput, match=r"^codings_mapping: given, but no codings are"):
        resolve_codings(plain, mapping=coded / "map.csv")
    with pytest.raises(BadInput, match=r"^codings_format: needed with codings"):
        resolve_codings(plain, folder=coded / "codings", mapping=coded / "map.csv")


def test_codings_fps_imports_the_codings_of_a_video_that_cannot_be_opened(coded):
    """A coded video that cannot be opened refuses the run, naming the parameter to pass (codings_fps);
    with it the coding is imported at that frame rate, its length from the coding's last event."""
    (coded / "videos" / "BROKEN.mp4").write_bytes(b"not a video")
    (coded / "broken.csv").write_text("video,coder,action,start_s,stop_s\nBROKEN,anna,NOD,0.5,1.5\n")
    m = read_manifest(_manifest(coded, ["P03,ASD,videos/BROKEN.mp4,broken.csv,csv,8"], name="broken_m.csv"))
    with pytest.raises(BadInput, match=r"^manifest: .*BROKEN.*codings_fps") as err:
        read_planned(resolve_codings(m, mapping=coded / "map.csv"), m)
    assert "\n" not in str(err.value)
    imported = read_planned(resolve_codings(m, mapping=coded / "map.csv", fps=25.0), m)
    sessions = imported.result.sessions
    assert list(sessions["video_id"]) == ["BROKEN"] and imported.config["fps"] == 25.0
    assert float(sessions["fps"].iat[0]) == 25.0
    with pytest.raises(BadInput, match=r"^codings_fps: must be a positive number"):
        resolve_codings(m, mapping=coded / "map.csv", fps=0.0)


def _cells(df: pd.DataFrame) -> list[list]:
    """Rows as plain values, every missing one None (a Parquet round trip makes None of object columns NaN)."""
    return [[None if pd.isna(v) else v for v in row] for row in df.astype(object).itertuples(index=False)]


def test_one_format_imports_exactly_as_the_importer_and_several_are_joined(coded, tmp_path):
    m = read_manifest(_manifest(coded, ROWS))
    imported = read_planned(resolve_codings(m, mapping=coded / "map.csv"), m)
    elan = import_codings([coded / "codings" / "P01_a.eaf"], format="elan", mapping=coded / "map.csv", manifest=m,
                          out=tmp_path / "e", write=False)
    csv = import_codings([coded / "codings" / "rest.csv"], format="csv", mapping=coded / "map.csv", manifest=m,
                         out=tmp_path / "c", write=False)
    r = imported.result
    pd.testing.assert_frame_equal(r.events, pd.concat([elan.events, csv.events], ignore_index=True))
    # sessions in manifest order, then by coder; every video coded, so no uncoded_video row
    assert list(zip(r.sessions["video_id"], r.sessions["coder"])) == [
        ("P01_a", "Björn"), ("P01_a", "anna"), ("P01_b", "anna"), ("P02", "carl")]
    assert "uncoded_video" not in set(r.qc["kind"])
    assert elan.qc["kind"].tolist().count("uncoded_video") == 2  # each import alone missed the other videos
    written = write_planned(imported, tmp_path / "codings")
    assert (tmp_path / "codings" / "events.parquet") in written
    assert _cells(pd.read_parquet(tmp_path / "codings" / "events.parquet")) == _cells(r.events)
    assert write_planned(imported, tmp_path / "codings") == []  # same files, mapping and manifest: up to date

    # a single format: exactly the importer's own tables
    one = _manifest(coded, ["P01,ASD,videos/P01_a.mp4,codings/P01_a.eaf,,9", "P01,ASD,videos/P01_b.mp4,,,9",
                            "P02,TDC,videos/P02.mp4,,,7"], name="one.csv")
    mo = read_manifest(one)
    alone = read_planned(resolve_codings(mo, mapping=coded / "map.csv"), mo).result
    direct = import_codings([coded / "codings" / "P01_a.eaf"], format="elan", mapping=coded / "map.csv", manifest=one,
                            out=tmp_path / "d", write=False)
    for a, b in ((alone.events, direct.events), (alone.sessions, direct.sessions), (alone.qc, direct.qc)):
        pd.testing.assert_frame_equal(a, b)


def test_a_video_coded_by_one_coder_in_two_formats_is_refused(coded, tmp_path):
    (tmp_path / "anna.csv").write_text("video,coder,action,start_s,stop_s\nP01_a,anna,NOD,0.5,1.5\n")
    m = read_manifest(coded / "manifest.csv")
    plan = CodingPlan(sources=(("elan", (coded / "codings" / "P01_a.eaf",)), ("csv", (tmp_path / "anna.csv",))),
                      mapping=coded / "map.csv", origin="codings")
    with pytest.raises(BadInput, match=r"^codings: video 'P01_a' is coded twice by coder 'anna': .*P01_a.eaf and "
                                       r".*anna.csv \(two formats\)"):
        read_planned(plan, m)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from model.checkpoint import save_checkpoint
    from model.micro_dualnet import micro_dualnet_tiny
    from model.preprocessing import ClassList, Preprocessing
    from model.windows import WindowPlan

    classes = ClassList.from_actions(["nodding", "touching nose"], background=True)
    return save_checkpoint(tmp_path_factory.mktemp("w") / "model.pt", micro_dualnet_tiny(num_classes=len(classes)),
                           classes=classes, preprocessing=Preprocessing(resize_short=72, size=64),
                           plan=WindowPlan(clip_len=4, stride=8), provenance={"trained_on": "random initialisation (test)"})


def _params(coded: Path, weights: Path, out: Path, manifest: Path, **extra):
    from flows.params import CohortAnalysisParams

    return CohortAnalysisParams(**{"manifest": manifest, "out": out, "weights": weights,
                                   "statistics": {"groups": ["ASD", "TDC"]}, **extra})


def test_prepare_run_reads_the_codings_and_refuses_a_bad_one_before_anything_is_written(coded, weights, tmp_path):
    from flows.cohort_analysis import RunRefused, prepare_run

    m = _manifest(coded, ROWS)
    plan = prepare_run(_params(coded, weights, tmp_path / "out", m, codings_mapping=coded / "map.csv"))
    assert len(plan.codings.result.sessions) == 4 and plan.statistics.validation is None
    assert not (tmp_path / "out").exists()  # read and checked, not written
    (tmp_path / "bad.csv").write_text("video,coder,action,start_s,stop_s\nP02,carl,WAVE,1.0,2.0\n")
    with pytest.raises(RunRefused) as err:
        prepare_run(_params(coded, weights, tmp_path / "out", coded / "manifest.csv", codings=tmp_path / "bad.csv",
                            codings_format="csv", codings_mapping=coded / "map.csv"))
    text = str(err.value)
    assert text.startswith("params.codings: 1 code(s) not in the mapping") and "'WAVE'" in text
    assert str(tmp_path / "bad.csv") in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_the_error_correction_reads_the_runs_own_validation(coded, weights, tmp_path):
    from flows.cohort_analysis import RunRefused, prepare_run

    m = _manifest(coded, ROWS)
    plan = prepare_run(_params(coded, weights, tmp_path / "out", m, codings_mapping=coded / "map.csv",
                               statistics={"groups": ["ASD", "TDC"], "misclassification": "acc"}))
    assert plan.statistics.misclassification == "acc" and plan.statistics.validation == str(tmp_path / "out" / "validation")
    elsewhere = tmp_path / "elsewhere"
    pacc = {"groups": ["ASD", "TDC"], "misclassification": "pacc", "validation": str(elsewhere)}
    with pytest.raises(RunRefused, match=r"^params\.statistics\.validation: no confusion\.parquet in "):
        prepare_run(_params(coded, weights, tmp_path / "out", coded / "manifest.csv", statistics=pacc))
    elsewhere.mkdir()
    for name in ("confusion.parquet", "scores.parquet"):
        (elsewhere / name).write_bytes(b"")  # only their presence is checked at submission
    given = prepare_run(_params(coded, weights, tmp_path / "out", coded / "manifest.csv", statistics=pacc))
    assert given.statistics.validation == str(elsewhere) and given.codings is None
    # the run's own validation writes confusion.parquet and scores.parquet, so pacc with codings takes it
    own = prepare_run(_params(coded, weights, tmp_path / "out", m, codings_mapping=coded / "map.csv",
                              statistics={"groups": ["ASD", "TDC"], "misclassification": "pacc"}))
    assert own.statistics.validation == str(tmp_path / "out" / "validation")
    with pytest.raises(RunRefused, match=r"^params\.statistics\.misclassification: acc corrects .* this run has none"):
        prepare_run(_params(coded, weights, tmp_path / "out", coded / "manifest.csv",
                            statistics={"groups": ["ASD", "TDC"], "misclassification": "acc"}))
    assert prepare_run(_params(coded, weights, tmp_path / "out", coded / "manifest.csv")).statistics.misclassification == "none"


# --------------------------------------------------------------------------------------------------
# The flow against a real Prefect server (slow)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_coded(tmp_path_factory):
    """flow_fixtures.small_cohort coded by three simulated coders (perfect, two jittered) as ELAN files, named
    per video in a copy of the manifest with a ``coding`` column; an identity mapping for ELAN's tier-per-action."""
    from flow_fixtures import small_cohort
    from simulator.__main__ import main as simulate

    cohort = small_cohort(tmp_path_factory.mktemp("cohort"), seconds=6)
    sim = cohort["manifest"].parent
    assert simulate(["-q", "coders", "--cohort", str(sim), "--out", str(sim / "coders"), "--coders", "2",
                     "--format", "elan", "--seed", "1"]) == 0
    coders = ["sim-perfect", "sim-coder-1", "sim-coder-2"]
    m = pd.read_csv(cohort["manifest"], dtype=str)
    m["coding"] = ["|".join(f"coders/elan/{c}/{v}.eaf" for c in coders) for v in m["participant_id"]]
    m.to_csv(sim / "manifest_coded.csv", index=False)
    mapping = sim / "ethogram.yaml"
    mapping.write_text("\n".join(["codes:", *[f"  {a!r}: {a!r}" for a in MA52.actions], "elan: {tiers: behaviour}"]) + "\n")
    return {**cohort, "coded_manifest": sim / "manifest_coded.csv", "mapping": mapping, "coders": coders}


def _artifacts(env) -> dict[str, dict]:
    """Latest artifact per key, from the server's REST API."""
    req = urllib.request.Request(env["PREFECT_API_URL"] + "/artifacts/latest/filter", data=b"{}",
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return {a["key"]: a for a in json.load(r)}


@pytest.mark.slow
def test_the_flow_imports_validates_corrects_publishes_and_reports_the_codings(prefect_env, sim_coded, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(sim_coded["coded_manifest"]),
                        "--out", str(out), "--weights", str(sim_coded["weights"]), "--groups", "ASD", "TDC",
                        "--codings-mapping", str(sim_coded["mapping"]), "--misclassification", "acc", "-q"],
                       cwd=ROOT, env=prefect_env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]

    # RUN/codings: exactly what a direct import of the same files into the same manifest gives
    files = [f for v in read_manifest(sim_coded["coded_manifest"], check_videos=False).videos["coding"] for f in v]
    direct = import_codings(files, format="elan", mapping=sim_coded["mapping"], manifest=sim_coded["coded_manifest"],
                            out=tmp_path / "direct")
    for name in ("events.parquet", "sessions.parquet", "qc.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out / "codings" / name), pd.read_parquet(tmp_path / "direct" / name))
    assert len(direct.events) and set(direct.sessions["coder"]) == set(sim_coded["coders"])

    # RUN/validation: the model against each coder, and the coders against each other
    pairs = pd.read_parquet(out / "validation" / "pairs.parquet")
    model = pairs[pairs["rater_a"] == "model"]
    assert set(sim_coded["coders"]) <= set(model["rater_b"])
    assert set(model["action"]) == {"nodding", "shaking legs", "crossing arms", "all"}  # the model's classes
    assert len(pairs[pairs["pair"] == "coder-coder"]) and (out / "validation" / "confusion.parquet").is_file()

    # the statistics corrected percent time with the error rates of this run's validation
    analysis = json.loads((out / "hurdle" / "results.parquet.json").read_text())["config"]["analysis"]
    assert (analysis["misclassification"], analysis["validation"]) == ("acc", str(out / "validation"))

    # the Prefect artifact, read back from the server: the validation summary of this run
    art = _artifacts(prefect_env)["cohort-validation"]
    assert art["type"] == "markdown"
    summary = json.loads((out / "validation" / "summary.json").read_text())
    assert art["data"] == summary_markdown(summary, pairs)  # the summary of the files written
    first = art["data"].splitlines()[0]
    assert first.startswith("**Validation against human coding**") and all(c in first for c in sim_coded["coders"])
    assert "| verdict | actions |" in art["data"] and sorted(summary["coders"]) == sorted(sim_coded["coders"])

    # the report lists every coded participant with its coders
    html = (out / "report" / "index.html").read_text()
    table = html.split('id="coded-table"')[1].split("</table>")[0]
    assert "4 of 4 participant(s)" in table
    for pid in sorted(sim_coded["videos"]):
        row = table.split(f">{pid}</a></th>")[1].split("</tr>")[0]
        assert all(c in row for c in sim_coded["coders"]), row
    assert "Human coding</h3>" in html  # the Methods' subsection


@pytest.mark.slow
def test_a_bad_coding_file_fails_the_flow_in_one_line_before_any_work(prefect_env, sim_coded, tmp_path):
    bad = tmp_path / "codings"
    shutil.copytree(sim_coded["coded_manifest"].parent / "coders" / "elan" / "sim-coder-1", bad)
    victim = sorted(bad.glob("*.eaf"))[0]
    victim.write_text(victim.read_text(encoding="utf-8").replace("</ANNOTATION_DOCUMENT>", ""), encoding="utf-8")
    params = {"manifest": str(sim_coded["manifest"]), "out": str(tmp_path / "out"), "weights": str(sim_coded["weights"]),
              "codings": str(bad), "codings_format": "elan", "codings_mapping": str(sim_coded["mapping"]),
              "statistics": {"groups": ["ASD", "TDC"]}}

    # a flow run on the server: Failed, its state message the one line naming the file
    code = ("import json, sys\nfrom flows.cohort_analysis import cohort_analysis\nfrom flows.params import CohortAnalysisParams\n"
            "state = cohort_analysis(CohortAnalysisParams(**json.loads(sys.argv[1])), return_state=True)\n"
            "print(json.dumps({'id': str(state.state_details.flow_run_id), 'type': state.type.value}))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(params)], cwd=ROOT, env=prefect_env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    ran = json.loads(r.stdout.strip().splitlines()[-1])
    assert ran["type"] == "FAILED"
    with urllib.request.urlopen(f"{prefect_env['PREFECT_API_URL']}/flow_runs/{ran['id']}", timeout=10) as resp:
        message = json.load(resp)["state"]["message"]
    assert "RunRefused: params.codings: " in message and str(victim) in message, message
    assert not (tmp_path / "out").exists()  # nothing written: no manifest copy, no pose, no recognition

    # the direct run: exit 2, one line naming the file, before a server is started
    r = subprocess.run([sys.executable, "-m", "flows.cohort_analysis", "--manifest", str(sim_coded["manifest"]),
                        "--out", str(tmp_path / "out"), "--weights", str(sim_coded["weights"]), "--groups", "ASD", "TDC",
                        "--codings", str(bad), "--codings-format", "elan", "--codings-mapping", str(sim_coded["mapping"]),
                        "-q"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                       timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("flows.cohort_analysis: error: params.codings: ") and str(victim) in lines[0]
    assert not (tmp_path / "out").exists()
