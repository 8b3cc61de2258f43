"""``--init CKPT`` for another class list (model/transfer.py, recipes.train's init_checkpoint / freeze).

For every family and modality: a checkpoint of one class list, started for another, keeps every
non-classifier tensor bit for bit (weights and BatchNorm buffers) and draws the classifier afresh (the
seeded fresh initialisation, not the checkpoint's values, also where a layer's shape would fit);
freezing stops exactly the named gradients and keeps frozen BatchNorm statistics through training.
Also: the keypoint-only dataset (``ClipDataset(pixels=False)``) gives the same keypoints, labels and
random draws as decoding the frames.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, save_checkpoint
from model.clips import MANIFEST, PREPARED_FORMAT, ClipDataset, encode_prepared_clip
from model.families import get_family
from model.preprocessing import ClassList, Preprocessing
from model.transfer import classifier_keys, freeze, init_from_checkpoint
from model.windows import WindowPlan

SOURCE = ClassList.from_actions(["nodding", "shaking head", "touching nose", "waving", "shrugging"], background=True)
CASES = [
    ("micro_dualnet", {"modality": "pose"}),
    ("micro_dualnet", {"modality": "rgb_pose"}),
    ("mmn", {}),
    ("manet", {}),
]


def _checkpoint(tmp_path, family_name, overrides):
    family = get_family(family_name)
    torch.manual_seed(5)
    model = family.build(family.preset("tiny", num_classes=len(SOURCE), **overrides))
    with torch.no_grad():  # move BatchNorm statistics and every weight away from their initial values
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for name, b in model.named_buffers():
            if b.dtype.is_floating_point:
                b.add_(0.1)
    path = save_checkpoint(tmp_path / f"{family_name}.pt", model, classes=SOURCE, preprocessing=Preprocessing(),
                           plan=WindowPlan(clip_len=4, stride=8, hop_s=0.25))
    return path


@pytest.mark.parametrize("family_name, overrides", CASES, ids=[f"{f}-{o.get('modality', 'default')}" for f, o in CASES])
def test_init_keeps_every_non_classifier_tensor_and_redraws_the_classifier(tmp_path, family_name, overrides):
    path = _checkpoint(tmp_path, family_name, overrides)
    ck = load_checkpoint(path)
    source = ck.model.state_dict()
    model, report = init_from_checkpoint(path, 3, seed=11)
    new = model.state_dict()
    family = get_family(family_name)
    head = set(classifier_keys(family, model.cfg, new))
    assert head and set(report.reinitialised) == head
    assert set(report.kept) == set(new) - head
    for k in report.kept:  # bit-identical, buffers included
        assert new[k].dtype == source[k].dtype and torch.equal(new[k], source[k]), k
    # the classifier: a fresh seeded initialisation for 3 classes, not the checkpoint's values
    torch.manual_seed(11)
    fresh = family.build(ck.config.replace(num_classes=3), ck.state).state_dict()
    out_layer = [k for k in head if new[k].shape[0] == 3]
    assert out_layer, "the output layer has one row per new class"
    for k in head:
        assert torch.equal(new[k], fresh[k]), k
        if source[k].shape == new[k].shape and source[k].abs().sum() > 0:
            assert not torch.equal(new[k], source[k]), k
    assert report.plan == ck.plan and report.preprocessing == ck.preprocessing
    # the model runs and has 3 outputs
    model.eval()
    frames = torch.randint(0, 255, (1, 4, 3, 32, 32), dtype=torch.uint8).float() if family.uses_pixels(model.cfg) \
        else None
    if family_name == "micro_dualnet":
        frames = torch.randn(1, 4, 3, *model.cfg.image_size)
    kp = torch.rand(1, 4, 33, 3) * torch.tensor([32.0, 32.0, 1.0])
    with torch.no_grad():
        assert family.forward(model, frames if family_name != "mmn" else None, kp).logits.shape == (1, 3)


def test_freeze_backbone_and_features(tmp_path):
    path = _checkpoint(tmp_path, "micro_dualnet", {"modality": "rgb_pose"})
    model, _ = init_from_checkpoint(path, 3)
    family = get_family("micro_dualnet")
    frozen = set(freeze(model, family, "backbone"))
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith("backbone.")}
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    model2, _ = init_from_checkpoint(path, 3)
    frozen2 = set(freeze(model2, family, "features"))
    assert {n for n, p in model2.named_parameters() if p.requires_grad} == \
        {n for n, _ in model2.named_parameters() if n.startswith("classifier.")}
    assert frozen2
    pose, _ = init_from_checkpoint(_checkpoint(tmp_path, "micro_dualnet", {"modality": "pose"}), 3)
    with pytest.raises(ValueError, match="no CNN backbone"):
        freeze(pose, family, "backbone")


def test_train_from_init_keeps_frozen_backbone_and_its_batchnorm(tmp_path):
    from recipes.train import TrainConfig, train

    path = _checkpoint(tmp_path, "micro_dualnet", {"modality": "rgb_pose"})
    prepared = _prepared(tmp_path / "prep", n=8, size=32)
    cfg = TrainConfig(family="micro_dualnet", init_checkpoint=str(path), freeze="backbone", epochs=1, batch_size=4,
                      workers=0, device="cpu", num_frames=4, amp=False, channels_last=False, warmup_epochs=0)
    out = train(cfg, prepared, tmp_path / "run")
    trained = load_checkpoint(out).model.state_dict()
    source = load_checkpoint(path).model.state_dict()
    backbone = [k for k in trained if k.startswith("backbone.")]
    assert backbone and all(torch.equal(trained[k], source[k]) for k in backbone)  # running stats too
    assert not torch.equal(trained["classifier.0.weight"], source["classifier.0.weight"])
    prov = load_checkpoint(out).provenance
    assert prov["init"]["sha256"] == load_checkpoint(path).sha256 and prov["init"]["reinitialised"]


def _prepared(root, *, n, size):
    classes = ClassList.from_actions(["nodding", "waving"], background=True)
    rng = np.random.default_rng(0)
    records = []
    (root / "clips").mkdir(parents=True)
    for i in range(n):
        frames = rng.integers(0, 255, (4, size + 8, size + 4, 3), dtype=np.uint8)
        kp = np.concatenate([rng.random((4, 33, 2)) * [size + 4, size + 8], rng.random((4, 33, 1))], -1)
        label = i % 3
        (root / "clips" / f"c{i}.npz").write_bytes(encode_prepared_clip(list(frames), kp, np.arange(4), label, {}))
        records.append({"id": f"c{i}", "file": f"clips/c{i}.npz", "label": label, "num_frames": 4,
                        "height": size + 8, "width": size + 4, "video": "v", "has_keypoints": True})
    prep = Preprocessing(resize_short=size, size=size)
    (root / MANIFEST).write_text(json.dumps({"format": PREPARED_FORMAT, "classes": classes.to_dict(),
                                             "preprocessing": prep.to_dict(), "storage": "jpeg", "clips": records}))
    return root


def test_keypoint_only_dataset_equals_the_decoding_one(tmp_path):
    root = _prepared(tmp_path / "prep", n=6, size=16)
    for train in (True, False):
        a = ClipDataset(root, 3, train=train, seed=4)
        b = ClipDataset(root, 3, train=train, seed=4, pixels=False)
        for epoch in (0, 1):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            for i in range(len(a)):
                x, y = a[i], b[i]
                assert torch.equal(x["keypoints"], y["keypoints"]) and x["label"] == y["label"]
                assert x["frames"].shape == (3, 3, 16, 16) and y["frames"].shape == (3, 3, 0, 0)
