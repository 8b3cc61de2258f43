"""The report's validation section and the coders' ethograms (a run with codings and validation/).

The run is tests/test_agreement_run.coded_run (the report fixture's run plus coders made from its
segments), validated by the real CLI, then reported by the real report builder.
"""

from __future__ import annotations

import re
from html import escape as html_escape

import pandas as pd
import pytest

from analysis.agreement.cli import main as agreement_main
from reports.build import build_report, page_name
from test_agreement_run import coded_run


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    from analysis.config import HurdleConfig, OutputConfig
    from analysis.hurdle import hurdle_analysis
    from analysis.outputs import write_outputs as write_hurdle
    from pipeline.artifacts import read_artifact

    root = tmp_path_factory.mktemp("repval")
    run = coded_run(root / "run", jitter=12)
    cohort = read_artifact(run / "readout" / "cohort.parquet", "cohort").to_pandas()
    cfg = HurdleConfig(covariates=("age",), top_actions=None, min_engaged=2)
    write_hurdle(hurdle_analysis(cohort, cfg), cohort, cfg, OutputConfig(plots=False), run / "hurdle",
                 source=run / "readout" / "cohort.parquet")
    assert agreement_main(["--run", str(run), "--bootstrap", "200", "-q"]) == 0
    pairs = pd.read_parquet(run / "validation" / "pairs.parquet")
    # plant one "below" verdict so the marking can be checked (the coders copy the model's segments)
    act = pairs.loc[pairs["pair"] == "model-coder", "action"].iloc[0]
    pairs.loc[(pairs["action"] == act) & (pairs["pair"] == "model-coder"), "verdict"] = "below the coder range"
    pairs.to_parquet(run / "validation" / "pairs.parquet")
    index = build_report(run, root / "report")
    return run, index, act


def test_cohort_page_has_the_validation_section(validated):
    run, index, act = validated
    html = index.read_text()
    assert 'id="validation"' in html and "Validation against human coding" in html
    assert 'id="validation-table"' in html and "same, jit" in html
    # one row per action of the comparison plus the "all" row
    pairs = pd.read_parquet(run / "validation" / "pairs.parquet")
    body = html.split('id="validation-table"')[1].split("</table>")[0]
    assert body.count("<tr") - 1 == pairs["action"].nunique()
    assert "below the coder range" in body
    # the Methods say which coders, bins, tolerance and reference
    assert "Validation against human coding</h3>" in html and "onsets lay within 0.5 s" in html
    assert "Reference for ICC, Bland-Altman and the confusion counts: consensus" in html


def test_weakly_validated_actions_are_marked_in_the_results(validated):
    run, index, act = validated
    html = index.read_text()
    results = html.split('id="results-table"')[1].split("</table>")[0]
    marked = re.findall(r'<tr class="(?:has-note )?weakly-validated"><td class="action">([^<]+) <abbr', results)
    assert marked and set(marked) == {act}
    assert 'id="below-note"' in html


def test_participant_page_shows_the_coders_ethograms(validated):
    run, index, act = validated
    pages = sorted((index.parent / "participants").glob("*.html"))
    coded = [p for p in pages if 'id="coder-ethograms"' in p.read_text()]
    assert coded
    html = coded[0].read_text()
    assert html.count('class="coder-ethogram"') == 2 and "As coded by same" in html and "As coded by jit" in html


def test_the_cohort_page_lists_the_coded_participants_and_their_coders(validated):
    run, index, act = validated
    html = index.read_text()
    table = html.split('id="coded-table"')[1].split("</table>")[0]
    sessions = pd.read_parquet(run / "codings" / "sessions.parquet")
    coded = list(dict.fromkeys(sessions["participant_id"]))
    n_all = pd.read_parquet(run / "readout" / "cohort.parquet")["participant_id"].nunique()  # the report's cohort
    assert f"{len(coded)} of {n_all} participant(s)" in table and "by same (" in table and "jit (" in table
    body = table.split("<tbody>")[1]
    assert body.count("<tr>") == len(coded)
    events = pd.read_parquet(run / "codings" / "events.parquet").merge(sessions[["video_id", "coder", "participant_id"]])
    for pid in coded:
        row = body.split(f">{html_escape(pid)}</a></th>")[1].split("</tr>")[0]  # ids with markup are escaped
        videos = sessions.loc[sessions["participant_id"] == pid, "video_id"].nunique()
        assert "<td>same, jit</td>" in row and f">{videos} of " in row
        assert row.endswith(f'<td class="num">{int((events["participant_id"] == pid).sum())}</td>')
    # the Methods say who coded how many participants, and in which tool
    assert "Human coding</h3>" in html and f"by 2 coder(s): same ({len(coded)} participant(s))" in html


def test_codings_without_a_validation_get_a_human_coding_section(validated, tmp_path):
    import shutil

    run, _, _ = validated
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("validation", "report"))
    html = build_report(copy, tmp_path / "report").read_text()
    assert 'id="validation-table"' not in html and '<h2 id="validation-h">Human coding</h2>' in html
    assert 'id="coded-table"' in html and "not compared with the model yet" in html
    assert '<a href="#validation">Human coding</a>' in html
