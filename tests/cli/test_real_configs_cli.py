"""The real-data configs end to end: ``mtmnv3 train`` then ``mtmnv3 test`` on data in the
real formats (a COCO json with crowd boxes and JPEGs written with cv2, an
ImageFolder tree), roots set the mmdet way with ``--cfg-options``, a tiny
model and ~20 iterations; ImageNet initialisation from a local torchvision file."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision
from _helpers import ROOT, run_tool

COCO_CONFIG = ROOT / "configs" / "mtmnv3_small_det_coco.py"
CLS_CONFIG = ROOT / "configs" / "mtmnv3_small_cls_imagefolder.py"
ITERS = 20
SIZE = 96  # letterbox size in the tests


def _jpeg(path: Path, rng: np.random.Generator, w: int, h: int, boxes=()) -> None:
    img = np.full((h, w, 3), int(rng.integers(40, 90)), np.uint8)
    for (x, y, bw, bh), colour in boxes:
        cv2.rectangle(img, (int(x), int(y)), (int(x + bw), int(y + bh)), colour, -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def write_coco(root: Path, split: str, num_images: int, seed: int) -> None:
    """ROOT/annotations/instances_<split>.json + ROOT/<split>/*.jpg: persons (red),
    cars (blue), a dog (green, not in the trained subset) and a crowd of persons."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]
    colour = {1: (0, 0, 220), 3: (220, 0, 0), 18: (0, 220, 0)}  # BGR
    images, anns = [], []
    for i in range(1, num_images + 1):
        w, h = 128, 96
        objs = [(1, [8 + 4 * (i % 3), 10, 30, 50]), (3, [60, 30 + 2 * (i % 4), 50, 30])]
        if i % 4 == 0:
            objs.append((18, [5, 70, 20, 20]))
        crowd = [0, 0, 128, 8] if i % 2 else None
        _jpeg(root / split / f"{i:012d}.jpg", rng, w, h, [(b, colour[c]) for c, b in objs])
        images.append({"id": i, "file_name": f"{i:012d}.jpg", "width": w, "height": h})
        for c, b in objs:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": b, "iscrowd": 0})
        if crowd:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": crowd, "iscrowd": 1})
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats})
    )


def write_imagefolder(root: Path, classes=("ant", "bee", "cow"), per_class=(8, 4)) -> None:
    """ROOT/{train,val}/<class>/*.jpg, one colour per class, sizes vary (letterboxed)."""
    rng = np.random.default_rng(0)
    colours = [(0, 0, 220), (220, 0, 0), (0, 220, 0)]
    for split, n in zip(("train", "val"), per_class):
        for c, name in enumerate(classes):
            for i in range(n):
                w, h = int(rng.integers(60, 120)), int(rng.integers(50, 100))
                _jpeg(root / split / name / f"{i:04d}.jpg", rng, w, h, [((5, 5, w - 10, h - 10), colours[c])])


def _roots(data_root: Path, splits=("train", "val", "test")) -> list[str]:
    return [f"{s}_dataloader.dataset.data_root={data_root}" for s in splits]


def _runner_options(splits=("train", "val", "test"), batch=4) -> list[str]:
    opts = [
        f"train_cfg.max_iters={ITERS}",
        f"train_cfg.val_interval={ITERS}",
        "param_scheduler.0.end=2",
        "param_scheduler.1.begin=2",
        f"param_scheduler.1.end={ITERS}",
        f"default_hooks.checkpoint.interval={ITERS}",
        "default_hooks.logger.interval=5",
    ]
    for s in splits:
        opts += [f"{s}_dataloader.batch_size={batch}", f"{s}_dataloader.num_workers=0"]
        opts += [f"{s}_dataloader.persistent_workers=False"]
    return opts


def _coco_options(data_root: Path, splits=("train", "val", "test")) -> list[str]:
    opts = [
        "model.trunk.width_mult=0.25",
        "model.neck.out_channels=16",
        "model.heads.det.feat_channels=16",
        "model.heads.det.num_classes=2",
        *[f"{s}_dataloader.dataset.classes=(person,car)" for s in splits],
        *[f"{s}_dataloader.dataset.pipeline.0.size={SIZE}" for s in splits if s != "train"],
        *_roots(data_root, splits),
    ]
    if "train" in splits:
        opts.append(f"train_dataloader.dataset.pipeline.2.size={SIZE}")
    return opts


def _check(r) -> str:
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-4000:]
    return log


@pytest.mark.slow
def test_coco_config_trains_by_iterations_and_tests(tmp_path):
    data, work = tmp_path / "coco", tmp_path / "work"
    write_coco(data, "train2017", num_images=12, seed=0)
    write_coco(data, "val2017", num_images=6, seed=1)
    opts = _coco_options(data) + _runner_options()
    log = _check(run_tool("train", COCO_CONFIG, "--work-dir", work, "--cfg-options", *opts))
    assert f"Iter(train) [{ITERS}/{ITERS}]" in log and "loss_det_heatmap" in log
    # the dog is not in the trained subset: dropped and counted, never merged into person or car
    assert "annotations of categories not in classes ['person', 'car'] dropped" in log and "'dog' 3" in log
    assert "det/mAP" in log
    ckpt = work / f"iter_{ITERS}.pth"
    assert ckpt.is_file()
    out = tmp_path / "metrics.json"
    test_opts = _coco_options(data, splits=("test",)) + ["test_dataloader.num_workers=0"]
    test_opts.append("test_dataloader.persistent_workers=False")
    _check(run_tool("test", COCO_CONFIG, ckpt, "--out-json", out, "--cfg-options", *test_opts))
    metrics = json.loads(out.read_text())
    assert set(metrics) >= {"det/mAP", "det/mAP_50", "det/mAP_75"}
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("det/mAP", "det/mAP_50"))


@pytest.mark.slow
def test_imagefolder_config_with_imagenet_init_from_a_local_torchvision_file(tmp_path):
    data, work = tmp_path / "pets", tmp_path / "work"
    write_imagefolder(data)
    # what a user writes on a machine with internet (here: random weights, no download)
    weights = tmp_path / "mobilenet_v3_small.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), weights)
    opts = [
        "model.heads.cls.num_classes=3",
        "model.heads.cls.hidden_channels=32",
        # the form mmdet's documentation uses (model.trunk here: the package's configs' key)
        f"model.trunk.init_cfg=dict(type='Pretrained', checkpoint={weights})",
        f"train_dataloader.dataset.pipeline.2.size={SIZE}",
        f"val_dataloader.dataset.pipeline.0.size={SIZE}",
        f"test_dataloader.dataset.pipeline.0.size={SIZE}",
        *_roots(data),
        *_runner_options(),
    ]
    log = _check(run_tool("train", CLS_CONFIG, "--work-dir", work, "--cfg-options", *opts))
    n = len(torchvision.models.mobilenet_v3_small().features.state_dict())
    assert f"loaded {n}/{n} trunk tensors from checkpoint '{weights}' (prefix='features')" in log
    assert f"Iter(train) [{ITERS}/{ITERS}]" in log and "cls/top1" in log
    ckpt = work / f"iter_{ITERS}.pth"
    out = tmp_path / "metrics.json"
    test_opts = [
        "model.heads.cls.num_classes=3",
        "model.heads.cls.hidden_channels=32",
        f"test_dataloader.dataset.pipeline.0.size={SIZE}",
        f"test_dataloader.dataset.data_root={data}",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
    ]
    _check(run_tool("test", CLS_CONFIG, ckpt, "--out-json", out, "--cfg-options", *test_opts))
    assert 0.0 <= json.loads(out.read_text())["cls/top1"] <= 1.0


def test_wrong_coco_root_names_the_path_and_the_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    opts = _coco_options(tmp_path / "photos") + _runner_options()
    r = run_tool("train", COCO_CONFIG, "--work-dir", tmp_path / "work", "--cfg-options", *opts)
    assert r.returncode != 0
    assert (
        "COCO annotation file not found: " in r.stderr
        and "photos/annotations/instances_train2017.json" in r.stderr
    )
    assert "expected the COCO layout ROOT/annotations/instances_<split>.json" in r.stderr


@pytest.mark.slow
def test_wrong_imagenet_file_fails_before_training_naming_keys(tmp_path):
    data = tmp_path / "pets"
    write_imagefolder(data, per_class=(2, 1))
    weights = tmp_path / "mobilenet_v3_large.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), weights)
    opts = [
        "model.heads.cls.num_classes=3",
        "model.trunk.init_cfg.type=Pretrained",
        f"model.trunk.init_cfg.checkpoint={weights}",
        *_roots(data),
        *_runner_options(),
    ]
    r = run_tool("train", CLS_CONFIG, "--work-dir", tmp_path / "work", "--cfg-options", *opts)
    assert r.returncode != 0
    assert (
        "mobilenet_v3_large.pth" in r.stderr
        and "first keys that did not match: ['blocks.1.block.1.fc1.weight'" in r.stderr
    )
    assert not list((tmp_path / "work").glob("iter_*.pth"))


def test_cfg_options_take_dict_values():
    """``key=dict(...)`` (mmengine's own parser recurses without end on it), and the dotted form."""
    import argparse

    from mtmnv3.engine import DictAction, load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(
        [
            "--cfg-options",
            "model.trunk.init_cfg=dict(type='Pretrained', checkpoint=/w/mnv3.pth, strict=False)",
            "train_dataloader.dataset.classes=(person,car)",
            "a=dict(b=[1, 2], c=dict(d=None))",
        ]
    )
    assert args.cfg_options == {
        "model.trunk.init_cfg": {"type": "Pretrained", "checkpoint": "/w/mnv3.pth", "strict": False},
        "train_dataloader.dataset.classes": ("person", "car"),
        "a": {"b": [1, 2], "c": {"d": None}},
    }
    with pytest.raises(ValueError, match="dict\\(...\\) takes key=value pairs"):
        parser.parse_args(["--cfg-options", "a=dict(1, 2)"])
    cfg = load_config(CLS_CONFIG, args.cfg_options)
    assert cfg.model.trunk.init_cfg == dict(type="Pretrained", checkpoint="/w/mnv3.pth", strict=False)
    assert cfg.train_dataloader.dataset.classes == ("person", "car")
    dotted = {"model.trunk.init_cfg.type": "Pretrained", "model.trunk.init_cfg.checkpoint": "/w/mnv3.pth"}
    assert load_config(COCO_CONFIG, dotted).model.trunk.init_cfg == dict(
        type="Pretrained", checkpoint="/w/mnv3.pth"
    )
