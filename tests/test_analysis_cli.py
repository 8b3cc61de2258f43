"""Command lines: bad input gives exit 2 and writes nothing; a good run writes the whole output set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import hurdle, simulate
from analysis.simulate import SimConfig, simulate_cohort

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_cohort() -> pd.DataFrame:
    cfg = SimConfig(groups=(("ASD", 40), ("PSY", 20), ("TDC", 40)), n_actions=6, covariates=True, seed=1)
    return simulate_cohort(cfg)[0]


def _run(tmp_path: Path, df: pd.DataFrame, *extra: str, capsys=None) -> tuple[int, Path]:
    path = tmp_path / "cohort.parquet"
    df.to_parquet(path)
    out = tmp_path / "out"
    try:
        rc = hurdle.main(["--cohort", str(path), "--out", str(out), "-q", *extra])
    except SystemExit as exc:
        rc = exc.code
    return rc, out


def _corrupt(df: pd.DataFrame, how: str) -> pd.DataFrame:
    df = df.copy()
    if how == "missing column":
        return df.drop(columns="percent_time")
    if how == "missing covariate":
        return df.drop(columns="age")
    if how == "percent range":
        df.loc[7, "percent_time"] = 130.0
        df.loc[9, "percent_time"] = -1.0
    elif how == "nan":
        df.loc[5, "percent_time"] = np.nan
    elif how == "nan covariate":
        df.loc[4, "age"] = np.nan
    elif how == "duplicate":
        df = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    elif how == "conflicting group":
        df.loc[1, "group"] = "TDC" if df.loc[1, "group"] != "TDC" else "ASD"
    elif how == "conflicting covariate":
        df.loc[2, "age"] = df.loc[2, "age"] + 10
    elif how == "unknown group":
        df.loc[df["participant_id"] == df.loc[0, "participant_id"], "group"] = "XYZ"
    elif how == "one group":
        df = df[df["group"] == "ASD"]
    elif how == "missing row":
        df = df.drop(index=0)
    return df


BAD = {
    "missing column": "missing column 'percent_time'",
    "missing covariate": "missing covariate column 'age'",
    "percent range": "must be in [0, 100]; 2 value(s) outside at rows 7, 9",
    "nan": "column 'percent_time' has missing values (NaN/null) at row 5",
    "nan covariate": "column 'age' has missing values (NaN/null) at row 4 (participant 'P00000')",
    "duplicate": "duplicate participant x action rows at rows 3, ",
    "conflicting group": "conflicting 'group' values",
    "conflicting covariate": "conflicting 'age' values",
    "unknown group": "unknown group 'XYZ' at rows 0, ",
    "one group": "fewer than 2 groups",
    "missing row": "has no row for action(s)",
}


@pytest.mark.parametrize("how", list(BAD))
def test_bad_input_exits_2_names_problem_and_writes_nothing(tmp_path, capsys, small_cohort, how):
    rc, out = _run(tmp_path, _corrupt(small_cohort, how), "--covariates", "age,sex")
    err = capsys.readouterr()
    assert rc == 2
    assert BAD[how] in err.err, err.err
    assert err.err.startswith("analysis.hurdle: error:")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort.parquet"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--actions", "nodding,flying"], "'flying' not in the cohort"),
        (["--groups", "ASD,PSY,TDC,XX"], "'XX' requested but absent"),
        (["--min-engaged", "1"], "min_engaged must be >= 2"),
        (["--categorical", "age"], "not in --covariates"),
        (["--intensity-resamples", "10"], "intensity_resamples must be >= 99"),
        (["--min-engaged-test", "-1"], "min_engaged_test must be >= 0"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, small_cohort, args, message):
    rc, out = _run(tmp_path, small_cohort, *args)
    assert rc == 2 and message in capsys.readouterr().err and not out.exists()


def test_intensity_se_option_reaches_the_results(tmp_path, capsys, small_cohort):
    """--intensity-se hc0-z gives the method before issue 28 (HC0 x n/(n-1), Wald z); the default is
    recorded in the sidecar by its field name; both runs share every estimate."""
    from analysis.config import HurdleConfig

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    rc_old, out_old = _run(tmp_path / "old", small_cohort, "--no-plots", "--intensity-se", "hc0-z", "--min-engaged-test", "0")
    rc_new, out_new = _run(tmp_path / "new", small_cohort, "--no-plots")
    assert rc_old == rc_new == 0
    old = pd.read_parquet(out_old / "results.parquet")
    new = pd.read_parquet(out_new / "results.parquet")
    inten_old, inten_new = old[old["part"] == "intensity"], new[new["part"] == "intensity"]
    assert (inten_old["method"] == "fractional logit (Bernoulli QML, robust SE HC0 x n/(n-1))").all()
    assert (inten_old["test"] == "Wald z (robust)").all()
    assert inten_new["method"].str.contains("permutation of group labels among engagers, 1999 draws").all()
    np.testing.assert_allclose(inten_new["estimate"], inten_old["estimate"], rtol=1e-12)
    # probability rows are untouched by the option
    pd.testing.assert_frame_equal(old[old["part"] == "probability"].drop(columns="p_adj").reset_index(drop=True),
                                  new[new["part"] == "probability"].drop(columns="p_adj").reset_index(drop=True))  # fmt: skip
    side = json.loads((out_new / "results.parquet.json").read_text())
    assert side["config"]["analysis"]["intensity_se"] == HurdleConfig().intensity_se


def test_missing_cohort_file_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        hurdle.main(["--cohort", str(tmp_path / "nope.parquet")])
    assert exc.value.code == 2 and "not found" in capsys.readouterr().err


def test_ignore_other_groups(tmp_path, capsys, small_cohort):
    rc, out = _run(tmp_path, _corrupt(small_cohort, "unknown group"), "--ignore-other-groups", "--no-plots")
    assert rc == 0
    res = pd.read_parquet(out / "results.parquet")
    assert set(res["group_a"]) | set(res["group_b"]) == {"ASD", "PSY", "TDC"}


def test_full_run_writes_complete_output_set(tmp_path, capsys, small_cohort):
    rc, out = _run(tmp_path, small_cohort, "--covariates", "age,sex", "--top-actions", "3", "--correction", "holm",
                   "--family", "all", "--table-rows", "5")  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out.splitlines()
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"results.parquet", "results.parquet.json", "results.csv", "descriptives.csv", "table.html", "table.md",
                "table.tex", "overview.png", "overview.svg"}  # fmt: skip
    assert expected <= files
    assert len([f for f in files if f.startswith("plots/") and f.endswith(".png")]) == 3
    assert len([f for f in files if f.startswith("plots/") and f.endswith(".svg")]) == 3
    assert printed[-1] == f"wrote {out / 'results.parquet'}"  # results.parquet is written last
    assert {line.removeprefix("wrote ") for line in printed} == {str(out / f) for f in files if not f.endswith(".json")}
    assert not list(tmp_path.glob(".out.staging-*")) and not list(out.glob(".staging-*"))
    res = pd.read_parquet(out / "results.parquet")
    csv = pd.read_csv(out / "results.csv")
    assert len(res) == len(csv) == 3 * 3 * 2
    assert (res["correction"] == "holm").all() and res["family"].str.startswith("Holm over all tests").all()
    assert res["selection"].iloc[0] == "top 3 actions by share of participants engaged"
    assert res["covariates"].iloc[0] == "age, sex"
    for col in ("action", "contrast", "group_a", "group_b", "part", "n_a", "n_b", "engaged_a", "engaged_b", "effect",
                "ci_low", "ci_high", "p", "p_adj", "note"):  # fmt: skip
        assert col in csv.columns
    side = json.loads((out / "results.parquet.json").read_text())
    assert side["contract"] == "hurdle_results" and side["config"]["analysis"]["correction"] == "holm"
    md = (out / "table.md").read_text()
    assert "| Action | Contrast | Type | Effect | p | p_adj |" in md and "Holm over all tests" in md
    assert md.count("\n| ") == 1 + 5
    tex = (out / "table.tex").read_text()
    assert "\\toprule" in tex and "Holm" in tex
    assert "<table>" in (out / "table.html").read_text()
    desc = pd.read_csv(out / "descriptives.csv")
    assert len(desc) == 3 * 3 and {"n", "n_engaged", "pct_engaged", "mean_percent_engaged", "median_percent_engaged"} <= set(desc.columns)
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_into_existing_folder_replaces_results(tmp_path, capsys, small_cohort):
    rc, out = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "2")
    assert rc == 0
    rc, out = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "4")
    assert rc == 0
    assert pd.read_parquet(out / "results.parquet")["action"].nunique() == 4
    assert pd.read_csv(out / "results.csv")["action"].nunique() == 4


def test_rerun_removes_stale_files_of_the_previous_run(tmp_path, capsys, small_cohort):
    """A second run with other actions (and then without plots) leaves no file of the first run."""
    actions = sorted(small_cohort["action"].unique())
    rc, out = _run(tmp_path, small_cohort, "--actions", ",".join(actions[:2]))
    assert rc == 0
    old_plots = {p.name for p in (out / "plots").iterdir()}
    assert len(old_plots) == 4
    (out / "notes.txt").write_text("mine")  # a user's own file is left alone
    rc, out = _run(tmp_path, small_cohort, "--actions", actions[2])
    assert rc == 0
    from analysis.outputs import slug

    assert {p.name for p in (out / "plots").iterdir()} == {f"{slug(actions[2])}.png", f"{slug(actions[2])}.svg"}
    side = json.loads((out / "results.parquet.json").read_text())
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == set(side["files"]) | {"results.parquet", "results.parquet.json", "notes.txt", ".hurdle.outputs.json"}
    manifest = json.loads((out / ".hurdle.outputs.json").read_text())["files"]
    assert set(manifest) == files - {"notes.txt", ".hurdle.outputs.json"}
    rc, out = _run(tmp_path, small_cohort, "--actions", actions[2], "--no-plots")
    assert rc == 0
    assert not (out / "plots").exists() and not (out / "overview.png").exists()
    assert (out / "notes.txt").read_text() == "mine"


def test_failed_write_leaves_no_results_parquet(tmp_path, capsys, small_cohort, monkeypatch):
    rc, out = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "2")
    assert (out / "results.parquet").exists()
    from analysis import outputs

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outputs, "describe_groups", boom)
    with pytest.raises(RuntimeError):
        _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "3")
    # the old complete set is still intact (nothing was moved), and no staging folder is left behind
    assert (out / "results.parquet").exists() and not list(tmp_path.glob(".out.staging-*"))
    assert pd.read_parquet(out / "results.parquet")["action"].nunique() == 2


def test_help_explains_every_option():
    for mod, opts in (
        ("analysis.hurdle", ["--cohort", "--out", "--groups", "--actions", "--top-actions", "--rank-by", "--covariates",
                             "--categorical", "--min-engaged", "--correction", "--family", "--pairwise-subsets", "--firth",
                             "--firth-ci", "--table-rows", "--no-plots", "--plot-p", "--percent-scale"]),
        ("analysis.simulate", ["--out", "--groups", "--n-actions", "--effect", "--null", "--covariates", "--seed"]),
    ):  # fmt: skip
        r = subprocess.run([sys.executable, "-m", mod, "--help"], cwd=REPO, capture_output=True, text=True, check=True)
        for o in opts:
            assert o in r.stdout, (mod, o)
        if mod == "analysis.hurdle":
            text = " ".join(r.stdout.split())
            assert "(default: None)" not in text and "(default: False)" not in text and "(default: ())" not in text
            assert "(default: ASD,PSY,TDC)" in text and "(default: fdr_bh)" in text and "(default: part)" in text
            assert "Exit status 2" in text and "--cohort PATH" in text


def test_simulate_cli_writes_cohort_and_truth(tmp_path, capsys):
    out = tmp_path / "sim.parquet"
    rc = simulate.main(["--out", str(out), "--groups", "ASD=10,TDC=12", "--n-actions", "3", "--effect",
                        "nodding:TDC:probability:1.0", "--covariates", "-q"])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and f"wrote {tmp_path / 'sim_truth.parquet'}" in printed
    df = pd.read_parquet(out)
    assert len(df) == 22 * 3 and {"age", "sex"} <= set(df.columns) and df["action"].iloc[0] == "nodding"
    truth = pd.read_parquet(tmp_path / "sim_truth.parquet")
    row = truth[(truth.action == "nodding") & (truth.part == "probability")].iloc[0]
    assert row["direction"] == "ASD < TDC" and row["true_log_or"] == -1.0
    assert json.loads((tmp_path / "sim.parquet.json").read_text())["contract"] == "cohort"
    with pytest.raises(SystemExit) as exc:
        simulate.main(["--out", str(tmp_path / "x.parquet"), "--effect", "flying:PSY:intensity:1"])
    assert exc.value.code == 2


def test_failure_while_moving_files_in_leaves_no_complete_looking_set(tmp_path, capsys, small_cohort, monkeypatch):
    rc, out = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "2")
    assert rc == 0 and (out / "results.parquet").exists()
    real, calls = os.replace, []

    def flaky(src, dst):
        if ".staging-" in str(src) and ".staging-" not in str(dst):  # moving the staged set in
            calls.append(dst)
            if len(calls) == 3:
                raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    # a write error is a one-line message naming the file and exit 2, no traceback
    rc, _ = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "3")
    err = capsys.readouterr().err
    assert rc == 2 and "disk full" in err and str(out) in err and err.count("\n") == 1
    # half the new files are in, so the folder must not look complete: no results sidecar
    assert not (out / "results.parquet.json").exists()
    assert not list(out.glob(".staging-*"))
    # the manifest already vouched for the files moved in, so the next run cleans up after the crash
    monkeypatch.setattr(os, "replace", real)
    rc, _ = _run(tmp_path, small_cohort, "--no-plots", "--top-actions", "3")
    assert rc == 0
    manifest = json.loads((out / ".hurdle.outputs.json").read_text())
    assert manifest["pending"] == {}
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(manifest["files"]) | {
        ".hurdle.outputs.json"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_foreign_folder_is_never_wiped(tmp_path, capsys, small_cohort):
    """Audit 4: --out pointed at a user's folder that was never a hurdle output deleted their plots,
    results.csv and tables without a word. Now: a one-line error naming a file in the way, exit 2,
    and every byte of the folder as it was."""
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "my_figure.png").write_bytes(b"\x89PNG mine")
    (out / "results.csv").write_text("my,own\n1,2\n")
    (out / "table.md").write_text("# my table\n")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    rc, _ = _run(tmp_path, small_cohort, "--top-actions", "2")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("analysis.hurdle: error:")
    assert str(out / "results.csv") in err and "is not a file hurdle wrote" in err
    assert _snapshot(out) == before
    assert not list(tmp_path.glob(".out.staging-*")) and not list(out.glob(".staging-*"))


def test_foreign_files_under_other_names_are_left_alone(tmp_path, capsys, small_cohort):
    """A user's files that do not collide with our names stay through runs and reruns."""
    out = tmp_path / "out"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "my_figure.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    actions = sorted(small_cohort["action"].unique())
    assert _run(tmp_path, small_cohort, "--actions", actions[0])[0] == 0
    assert _run(tmp_path, small_cohort, "--actions", actions[1])[0] == 0
    assert _run(tmp_path, small_cohort, "--actions", actions[1], "--no-plots")[0] == 0
    assert (out / "plots" / "my_figure.png").read_bytes() == b"mine" and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["my_figure.png"]  # our plots gone, folder kept


def test_folder_from_before_output_manifests_is_recognised(tmp_path, capsys, small_cohort):
    """A folder written by an earlier version (its results sidecar lists the files) is still ours."""
    rc, out = _run(tmp_path, small_cohort, "--top-actions", "2")
    assert rc == 0
    (out / ".hurdle.outputs.json").unlink()
    (out / "notes.txt").write_text("mine")
    rc, out = _run(tmp_path, small_cohort, "--top-actions", "1", "--no-plots")
    assert rc == 0 and not (out / "plots").exists() and (out / "notes.txt").read_text() == "mine"


def test_an_old_outputs_listing_is_migrated_once_and_cannot_delete_user_files(tmp_path, capsys, small_cohort):
    """Format-1 .outputs.json (before fingerprints): files it lists under our output names are adopted,
    then the listing goes; names that are not ours (a user's notes, a path outside) are never touched."""
    rc, out = _run(tmp_path, small_cohort, "--top-actions", "2")
    assert rc == 0
    ours = sorted(json.loads((out / ".hurdle.outputs.json").read_text())["files"])
    (out / ".hurdle.outputs.json").unlink()
    (out / "notes.txt").write_text("mine")
    (tmp_path / "outside.txt").write_text("keep")
    listing = {"format": 1, "tools": {"analysis.hurdle": {"files": ours + ["notes.txt", "../outside.txt"]}}}
    (out / ".outputs.json").write_text(json.dumps(listing))
    rc, out = _run(tmp_path, small_cohort, "--top-actions", "1", "--no-plots")
    assert rc == 0 and not (out / "plots").exists()
    assert (out / "notes.txt").read_text() == "mine" and (tmp_path / "outside.txt").read_text() == "keep"
    assert not (out / ".outputs.json").exists()
    assert "notes.txt" not in json.loads((out / ".hurdle.outputs.json").read_text())["files"]


def test_killed_run_staging_folders_are_cleaned_up(tmp_path, capsys, small_cohort):
    """Audit 8: a killed run left hidden .staging-* folders forever. The next run removes those of
    dead runs (inside the folder, and the older ones beside it) and leaves a live run's alone."""
    import platform
    import re

    from pipeline.ownership import stale_staging_dirs

    host = re.sub(r"[^A-Za-z0-9]", "_", platform.node() or "host")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    out = tmp_path / "out"
    legacy = tmp_path / ".out.staging-k3j_x9q2"  # the old mkdtemp name, beside the folder
    killed = out / f".staging-hurdle-{host}-{dead}-abc123"
    live = out / f".staging-hurdle-{host}-{os.getpid()}-def456"
    old_live = out / f".staging-hurdle-{host}-{os.getpid()}-old789"
    other = tmp_path / ".other.staging-k3j_x9q2"  # another output folder's: not ours to judge
    for d in (legacy, killed, live, old_live, other):
        (d / "plots").mkdir(parents=True)
        (d / "results.csv").write_text("half")
    os.utime(old_live, (0, 0))  # older than a day: its pid may have been reused
    assert set(stale_staging_dirs(out, "hurdle")) == {legacy, killed, old_live}
    rc, out = _run(tmp_path, small_cohort, "--top-actions", "1", "--no-plots")
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [other.name]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".staging")) == [live.name]


def test_unusable_out_is_reported_before_the_analysis(tmp_path, capsys, small_cohort, monkeypatch):
    """An --out that is an existing file or sits under a file: one line, exit 2, no analysis run."""
    def never(*a, **k):
        raise AssertionError("the analysis ran before the output folder was checked")

    monkeypatch.setattr(hurdle, "hurdle_analysis", never)
    path = tmp_path / "cohort.parquet"
    small_cohort.to_parquet(path)
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(SystemExit) as exc:
            hurdle.main(["--cohort", str(path), "--out", str(out), "-q"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and str(tmp_path / "afile") in err
    with pytest.raises(SystemExit) as exc:
        simulate.main(["--out", str(tmp_path / "afile" / "c.parquet"), "--n-actions", "2", "-q"])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_every_output_file_follows_the_umask(tmp_path, capsys, small_cohort):
    """Audit 5 end to end: results, sidecar, manifest, tables and plots readable as the umask says."""
    old = os.umask(0o002)
    try:
        rc, out = _run(tmp_path, small_cohort, "--top-actions", "1")
    finally:
        os.umask(old)
    assert rc == 0
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert {"results.parquet", "results.parquet.json", ".hurdle.outputs.json", "table.md", "plots"} <= set(modes)
    assert {m for n, m in modes.items() if n != "plots"} == {0o664} and modes["plots"] == 0o775
