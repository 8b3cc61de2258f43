"""Artifact contracts: round trips through the artifact store, and bad tables rejected by name."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.taxonomy import MA52
from pipeline.artifacts import (
    config_hash,
    is_up_to_date,
    read_artifact,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_artifact,
)
from pipeline.contracts import CONTRACTS, ContractError, conform, validate


def keypoints_df(n=4):
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "frame": np.arange(n),
            "time_s": np.arange(n) / 30.0,
            "body25": list(rng.uniform(0, 1, (n, 75)).astype(np.float32)),
            "extra": list(np.zeros((n, 24), np.float32)),
            "detected": [True] * n,
            "rejected": [False] * n,
        }
    )


def windows_df(n=3):
    p = np.full(52, 1 / 52, np.float32)
    return pd.DataFrame(
        {
            "video_id": ["v1"] * n,
            "window": np.arange(n),
            "start_frame": np.arange(n) * 15,
            "end_frame": np.arange(n) * 15 + 64,
            "start_s": np.arange(n) * 0.5,
            "end_s": np.arange(n) * 0.5 + 2.13,
            "valid_fraction": [1.0, 0.5, 0.0],
            "probs": [p, p, None],
            "model_id": ["m"] * n,
            "config_id": ["c"] * n,
        }
    )


def segments_df():
    return pd.DataFrame(
        {"video_id": ["v1", "v1"], "action_id": [9, 24], "action": ["nodding", "shaking legs"],
         "start_s": [0.0, 3.5], "end_s": [2.0, 6.0], "score": [0.8, 0.6]}
    )


def cohort_df():
    rows = []
    for pid, grp, age in [("p1", "ASD", 9.5), ("p2", "TDC", 10.0)]:
        for a in (9, 24):
            rows.append(dict(participant_id=pid, group=grp, action_id=a, action=MA52.actions[a],
                             percent_time=12.5 if a == 9 else 0.0, observed_s=150.0, age=age))
    return pd.DataFrame(rows)


def results_df():
    return pd.DataFrame(
        {"action": ["nodding"], "contrast": ["ASD vs TDC"], "group_a": ["ASD"], "group_b": ["TDC"],
         "part": ["probability"], "n_a": [120], "n_b": [124], "engaged_a": [80], "engaged_b": [60],
         "estimate": [0.5], "effect": [np.exp(0.5)], "ci_low": [1.1], "ci_high": [2.5], "p": [0.01],
         "p_adj": [0.03], "method": ["logistic GLM"], "correction": ["fdr_bh"], "family": ["part"], "note": [None]}
    )


def bouts_df():
    return pd.DataFrame(
        {"participant_id": ["p1", "p1"], "group": ["ASD", "ASD"], "action_id": [9, 24],
         "action": ["nodding", "shaking legs"], "bouts": [2, 0], "total_s": [3.0, 0.0], "mean_bout_s": [1.5, None],
         "median_bout_s": [1.5, None], "latency_s": [4.0, None]}
    )  # fmt: skip


def exclusions_df():
    return pd.DataFrame(
        {"participant_id": ["p3", "p4"], "group": ["TDC", "PSY"], "video_id": ["v7", None],
         "scope": ["video", "participant"], "reason": ["decode failed", "no valid pose"]}
    )  # fmt: skip


SAMPLES = {
    "keypoints": keypoints_df,
    "windows": windows_df,
    "segments": segments_df,
    "cohort": cohort_df,
    "hurdle_results": results_df,
    "bouts": bouts_df,
    "exclusions": exclusions_df,
}


def test_every_contract_has_a_sample():
    assert set(SAMPLES) == set(CONTRACTS)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(tmp_path, name):
    df = SAMPLES[name]()
    path = write_artifact(df, tmp_path / f"{name}.parquet", contract=name, stage="test", input_hash="abc", config={"k": 1})
    table = read_artifact(path, name)
    assert table.num_rows == len(df)
    assert table.schema.names[: len(CONTRACTS[name].schema)] == CONTRACTS[name].schema.names
    for f in CONTRACTS[name].schema:
        assert table.schema.field(f.name).type == f.type  # cast to the contract's exact types
    back = table.to_pandas()
    for col in df.columns:
        a, b = df[col].tolist(), back[col].tolist()
        if isinstance(a[0], np.ndarray) or isinstance(b[0], np.ndarray):
            for x, y in zip(a, b):
                assert (x is None and y is None) or np.allclose(np.asarray(x), np.asarray(y))
        elif df[col].dtype.kind == "f":
            np.testing.assert_allclose(df[col].to_numpy(float), back[col].to_numpy(float), rtol=1e-6)
        else:
            assert [None if pd.isna(v) else v for v in a] == [None if pd.isna(v) else v for v in b]
    meta = read_sidecar(path)
    assert meta["contract"] == name and meta["rows"] == len(df) and meta["input_hash"] == "abc"
    assert meta["config_hash"] == config_hash({"k": 1})
    assert "pyarrow" in meta["versions"]


BAD = [
    ("keypoints", lambda d: d.drop(columns="detected"), "missing column 'detected'"),
    ("keypoints", lambda d: d.assign(body25=[np.zeros(74, np.float32)] * len(d)), "column 'body25' row 0: list has 74"),
    ("keypoints", lambda d: d.assign(frame=[0, 1, 1, 3]), "duplicate rows for (frame=1)"),
    ("keypoints", lambda d: d.assign(junk=1), "unexpected column 'junk'"),
    ("windows", lambda d: d.assign(valid_fraction=[1.0, 1.5, 0.0]), "column 'valid_fraction' row 1"),
    ("windows", lambda d: d.assign(window=["a", "b", "c"]), "column 'window' has type large_string, expected int32"),
    ("segments", lambda d: d.assign(score=[0.5, 1.2]), "column 'score' row 1"),
    ("cohort", lambda d: d.assign(percent_time=[0.0, 5.0, 101.0, 0.0]), "column 'percent_time' row 2: value 101.0 is not in [0, 100]"),
    ("cohort", lambda d: d.assign(percent_time=[0.0, np.nan, 1.0, 0.0]), "column 'percent_time' row 1: missing value"),
    ("cohort", lambda d: d.assign(participant_id=["p1", "p1", "p1", "p2"]), "duplicate rows for (participant_id='p1', action='nodding')"),
    ("cohort", lambda d: d.drop(columns="observed_s"), "missing column 'observed_s'"),
    ("hurdle_results", lambda d: d.assign(part=["probabilty"]), "column 'part' row 0"),
    ("hurdle_results", lambda d: d.assign(p=[1.5]), "column 'p' row 0"),
]


@pytest.mark.parametrize("name,corrupt,message", BAD, ids=[m for _, _, m in BAD])
def test_bad_table_rejected_naming_the_column(tmp_path, name, corrupt, message):
    df = corrupt(SAMPLES[name]())
    with pytest.raises(ContractError) as err:
        validate(df, name, source="x.parquet")
    assert message in str(err.value)
    assert str(err.value).startswith("x.parquet: ")
    target = tmp_path / "out.parquet"
    with pytest.raises(ContractError):
        write_artifact(df, target, contract=name, stage="test")
    assert not target.exists() and not sidecar_path(target).exists()
    assert list(tmp_path.iterdir()) == []  # no temp files left behind


def test_read_artifact_names_the_file(tmp_path):
    path = tmp_path / "cohort.parquet"
    pq.write_table(pa.Table.from_pandas(cohort_df().drop(columns="group")), path)
    with pytest.raises(ContractError, match=f"{path}: cohort table: missing column 'group'"):
        read_artifact(path, "cohort")
    with pytest.raises(FileNotFoundError, match="artifact not found"):
        read_artifact(tmp_path / "nope.parquet")


def test_conform_keeps_covariates_after_required_columns():
    t = conform(cohort_df()[["age", "observed_s", "percent_time", "action", "action_id", "group", "participant_id"]], "cohort")
    assert t.schema.names == CONTRACTS["cohort"].schema.names + ["age"]


def test_up_to_date_follows_input_and_config(tmp_path):
    src = tmp_path / "video.bin"
    src.write_bytes(b"abc")
    h = sha256_file(src)
    out = tmp_path / "seg.parquet"
    assert not is_up_to_date(out, input_hash=h, config={"a": 1})
    write_artifact(segments_df(), out, contract="segments", stage="test", input_hash=h, config={"a": 1})
    assert is_up_to_date(out, input_hash=h, config={"a": 1})
    assert not is_up_to_date(out, input_hash=h, config={"a": 2})
    src.write_bytes(b"abd")
    assert not is_up_to_date(out, input_hash=sha256_file(src), config={"a": 1})
    # a data file whose sidecar is missing (crash between the two renames) is not trusted
    sidecar_path(out).unlink()
    assert not is_up_to_date(out, input_hash=h, config={"a": 1})


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    p = tmp_path / "f"
    data = np.random.default_rng(1).bytes(3_000_000)
    p.write_bytes(data)
    assert sha256_file(p, chunk=4096) == hashlib.sha256(data).hexdigest()


def test_config_hash_ignores_key_order_but_not_values():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 1.5})


def test_failed_write_keeps_previous_artifact(tmp_path, monkeypatch):
    out = tmp_path / "seg.parquet"
    write_artifact(segments_df(), out, contract="segments", stage="test", input_hash="h1")
    before = out.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        write_artifact(segments_df(), out, contract="segments", stage="test", input_hash="h2")
    assert out.read_bytes() == before  # old data intact
    assert read_sidecar(out) is None  # but no longer vouched for: it will be redone
    assert [p.name for p in tmp_path.iterdir()] == ["seg.parquet"]


def test_every_contract_has_a_version():
    for c in CONTRACTS.values():
        assert isinstance(c.version, int) and c.version >= 1, c.name
    with pytest.raises(ValueError, match="version"):
        dataclasses.replace(CONTRACTS["segments"], version=0)


def test_contract_version_enters_sidecar_and_up_to_date_check(tmp_path, monkeypatch):
    """An artifact written under an older contract version is redone, not reused (issue 8, item 5)."""
    out = tmp_path / "seg.parquet"
    write_artifact(segments_df(), out, contract="segments", stage="test", input_hash="h", config={"a": 1})
    side = read_sidecar(out)
    assert side["contract"] == "segments" and side["contract_version"] == CONTRACTS["segments"].version
    assert is_up_to_date(out, input_hash="h", config={"a": 1})
    assert is_up_to_date(out, input_hash="h", config={"a": 1}, contract="segments")
    assert not is_up_to_date(out, input_hash="h", config={"a": 1}, contract="keypoints")  # another contract

    # the contract moves on to version 2: the same inputs no longer count as up to date
    bumped = dataclasses.replace(CONTRACTS["segments"], version=CONTRACTS["segments"].version + 1)
    monkeypatch.setitem(CONTRACTS, "segments", bumped)
    assert not is_up_to_date(out, input_hash="h", config={"a": 1})
    assert not is_up_to_date(out, input_hash="h", config={"a": 1}, contract=bumped)
    write_artifact(segments_df(), out, contract=bumped, stage="test", input_hash="h", config={"a": 1})
    assert read_sidecar(out)["contract_version"] == bumped.version
    assert is_up_to_date(out, input_hash="h", config={"a": 1})


def test_sidecar_from_before_versioning_is_out_of_date(tmp_path):
    out = tmp_path / "seg.parquet"
    write_artifact(segments_df(), out, contract="segments", stage="test", input_hash="h")
    side = read_sidecar(out)
    del side["contract_version"]
    sidecar_path(out).write_text(json.dumps(side))
    assert not is_up_to_date(out, input_hash="h", config=None)
    # a table written without a contract (a QC table) has no version to compare
    qc = tmp_path / "qc.parquet"
    write_artifact(pd.DataFrame({"x": [1]}), qc, contract=None, stage="test", input_hash="h")
    assert read_sidecar(qc)["contract_version"] is None and is_up_to_date(qc, input_hash="h", config=None)
