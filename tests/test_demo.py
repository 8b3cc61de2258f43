"""The built-in demo (``make demo``) runs end to end and recovers its planted effects."""

import pandas as pd

from flows.demo import run_demo
from pipeline.artifacts import read_artifact


def test_demo_writes_everything_and_finds_planted_effects(tmp_path, capsys):
    result = run_demo(tmp_path)
    check = result.check
    assert capsys.readouterr().out == ""  # the library function prints nothing; main() does
    assert result.written[0] == tmp_path / "cohort.parquet" and result.written[-1] == tmp_path / "hurdle" / "results.parquet"
    assert all(p.is_file() for p in result.written)
    cohort = read_artifact(tmp_path / "cohort.parquet", "cohort").to_pandas()
    assert cohort["participant_id"].nunique() == 290
    results = read_artifact(tmp_path / "hurdle" / "results.parquet", "hurdle_results").to_pandas()
    assert {"retracting feet", "shaking legs", "turning head", "head up"} <= set(results["action"])
    for name in ("table.html", "table.md", "table.tex", "results.csv", "overview.png"):
        assert (tmp_path / "hurdle" / name).stat().st_size > 0
    # retracting feet: PSY planted 2.5x the odds of time among engagers -> PSY above both others
    rf = check[check["planted"].str.startswith("retracting feet")].set_index("contrast")
    assert rf.loc["ASD vs PSY", "effect"] < 1 < rf.loc["PSY vs TDC", "effect"]
    assert (rf["p_adj"] < 0.05).all()
    assert isinstance(check, pd.DataFrame) and len(check) == 8
