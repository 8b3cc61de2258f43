"""recipes.evaluate: outputs agree with a direct computation; MA-52 submission file; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clip_fixtures import write_synthetic_prepared
from model.checkpoint import save_checkpoint
from model.clips import ClipDataset, PreparedClips
from model.config import MicroDualNetConfig
from recipes.evaluate import evaluate, main, predict_clips
from model.metrics import classification_metrics
from model.micro_dualnet import MicroDualNet
from model.preprocessing import ClassList
from model.taxonomy import MA52
from model.windows import WindowPlan

CLASSES5 = ClassList.from_actions(["nodding", "shaking head", "touching nose", "waving", "crossing arms"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    prep = write_synthetic_prepared(root / "prep", clips_per_class=3, num_frames=6, classes=CLASSES5)
    torch.manual_seed(0)
    model = MicroDualNet(MicroDualNetConfig.tiny(num_classes=5))
    data = PreparedClips(prep)
    ckpt = save_checkpoint(root / "m.pt", model, classes=CLASSES5, preprocessing=data.preprocessing,
                           plan=WindowPlan(clip_len=2, stride=8), provenance={"trained_on": "test"})
    return root, prep, ckpt


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_outputs_match_a_direct_computation(setup, tmp_path):
    torch.set_num_threads(1)
    root, prep, ckpt = setup
    out = tmp_path / "eval"
    assert main(["--weights", str(ckpt), "--prepared", str(prep), "--out", str(out), "--workers", "0",
                 "--submission"]) == 0
    from model.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).model
    direct = predict_clips(model, ClipDataset(prep, 2, train=False), batch_size=4)
    report = json.loads((out / "metrics.json").read_text())
    expected = classification_metrics(direct.labels, direct.scores, CLASSES5)
    assert report["metrics"] == pytest.approx(expected) and report["clips"] == 9
    preds = _rows(out / "predictions.csv")
    assert [int(r["pred_1"]) for r in preds] == direct.scores.argmax(1).tolist()
    cm = np.array([[int(x) for x in list(r.values())[1:]] for r in _rows(out / "confusion.csv")])
    assert cm.shape == (5, 5) and cm.sum() == 9
    assert np.trace(cm) == round(expected["top1"] * 9)
    per_class = _rows(out / "per_class.csv")
    assert [int(r["support"]) for r in per_class] == [3, 3, 3, 0, 0]
    routing = _rows(out / "routing.csv")
    vals = [float(v) for r in routing for k, v in r.items() if k.startswith("st_") and v]
    assert len(vals) == 3 * 6 and all(0.0 <= v <= 1.0 for v in vals)
    assert all(routing[k][f"st_{e.replace(' ', '_')}"] == "" for k in (3, 4) for e in MA52_ENTITY_NAMES)
    for png in ("confusion.png", "classwise_accuracy.png", "routing.png"):
        assert (out / png).stat().st_size > 1000
    try:
        import sklearn  # noqa: F401
        assert (out / "tsne.png").is_file() and report["tsne"] == "written"
    except ImportError:
        assert "skipped" in report["tsne"]
    # MA-52 challenge file: vid, action_pred_1..5 (MA-52 indices), body_pred_k = body of action_pred_k
    sub = _rows(out / "prediction.csv")
    assert list(sub[0]) == ["vid", *[f"action_pred_{k}" for k in range(1, 6)], *[f"body_pred_{k}" for k in range(1, 6)]]
    tax = np.array(CLASSES5.taxonomy_ids)
    assert [r["vid"] for r in sub] == [f"{i}.mp4" for i in PreparedClips(prep).ids]
    for row, scores in zip(sub, direct.scores):
        actions = [int(row[f"action_pred_{k}"]) for k in range(1, 6)]
        assert actions == tax[np.argsort(-scores, kind="stable")[:5]].tolist()
        assert [int(row[f"body_pred_{k}"]) for k in range(1, 6)] == MA52.action_to_body[actions].tolist()


MA52_ENTITY_NAMES = MicroDualNetConfig.tiny().layout.names


def test_multi_view_scores_average_the_views(setup, tmp_path):
    root, prep, ckpt = setup
    from model.checkpoint import load_checkpoint

    model = load_checkpoint(ckpt).model
    multi = predict_clips(model, ClipDataset(prep, 2, train=False, views=(2, 3)), batch_size=3)
    ds = ClipDataset(prep, 2, train=False, views=(2, 3))
    s = ds[0]
    mean, std = torch.tensor(ds.preprocessing.mean).view(3, 1, 1), torch.tensor(ds.preprocessing.std).view(3, 1, 1)
    with torch.no_grad():  # each of the 2 x 3 views alone, then the mean of their probabilities
        single = [model(((s["frames"][v].float() / 255 - mean) / std)[None], s["keypoints"][v][None]).logits.softmax(-1)
                  for v in range(6)]
    np.testing.assert_allclose(multi.scores[0], torch.cat(single).mean(0).numpy(), rtol=1e-4, atol=1e-6)
    written = evaluate(ckpt, prep, tmp_path / "mv", views=(2, 3), workers=0)
    assert json.loads((tmp_path / "mv" / "metrics.json").read_text())["views"] == [2, 3]
    assert len(written) >= 8


def test_bad_inputs_exit_2(setup, tmp_path, capsys):
    root, prep, ckpt = setup
    assert main(["--weights", str(tmp_path / "none.pt"), "--prepared", str(prep), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    other = write_synthetic_prepared(tmp_path / "other", clips_per_class=1, num_frames=2)  # 3-class list
    assert main(["--weights", str(ckpt), "--prepared", str(other), "--out", str(tmp_path / "o")]) == 2
    assert "class list differs" in capsys.readouterr().err
    assert main(["--weights", str(ckpt), "--prepared", str(prep), "--out", str(tmp_path / "o"), "--views", "2x2"]) == 2


@pytest.mark.parametrize("row", ["II.tsm", "IV.avg"])
def test_ablations_without_routing_evaluate(setup, tmp_path, row):
    """The plain TSM baseline and pooled aggregation have no routing: metrics still come out, no routing files."""
    from recipes.paper_rows import paper_row_config

    root, prep, _ = setup
    torch.manual_seed(0)
    cfg = paper_row_config(row, **{k: v for k, v in MicroDualNetConfig.tiny(num_classes=5).to_dict().items()
                                   if k in ("num_classes", "backbone", "backbone_width_per_group", "embed_dim",
                                            "num_layers", "num_heads", "ffn_dim", "image_size",
                                            "residual_mlp_hidden", "classifier_hidden", "tsm_block_interval")})
    model = MicroDualNet(cfg)
    data = PreparedClips(prep)
    ckpt = save_checkpoint(tmp_path / "m.pt", model, classes=CLASSES5, preprocessing=data.preprocessing,
                           plan=WindowPlan(clip_len=cfg.num_frames, stride=8), provenance={"trained_on": "test"})
    out = tmp_path / "eval"
    assert main(["--weights", str(ckpt), "--prepared", str(prep), "--out", str(out), "--workers", "0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["clips"] == 9
    assert not (out / "routing.csv").exists()
