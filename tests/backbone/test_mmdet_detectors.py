"""The configs in configs/mmdet/: build, train a few iterations with mmdet's
Runner (the loss goes down), predict boxes, evaluate with CocoMetric, and load
the trained backbone back through ``init_cfg`` with a prefix.

The data is a tiny COCO fixture written here (drawn shapes on noise), so the
tests depend neither on the scene generator nor on any download.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet", reason="needs the mmdet extra (make mmdet)")

import cv2  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

pytestmark = pytest.mark.mmdet

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "mmdet"
DETECTOR_CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("bytetrack"))
#: Fixture: class names, image side, images per split, objects per image.
CLASSES = ("box", "disc")
SIDE = 128
NUM_IMAGES = 8
OBJECTS_PER_IMAGE = 3
#: Training epochs in the loss test (NUM_IMAGES / 2 iterations each) and their learning rate.
TRAIN_EPOCHS = 20
TRAIN_LR = 0.01


def _draw_image(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    img = rng.integers(0, 60, size=(SIDE, SIDE, 3), dtype=np.uint8)
    objects = []
    for _ in range(OBJECTS_PER_IMAGE):
        label = int(rng.integers(len(CLASSES)))
        w, h = (int(v) for v in rng.integers(24, 48, size=2))
        x, y = int(rng.integers(0, SIDE - w)), int(rng.integers(0, SIDE - h))
        color = (230, 80, 40) if label == 0 else (40, 200, 240)
        if label == 0:
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), color, thickness=-1)
        else:
            cv2.ellipse(img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, color, thickness=-1)
        objects.append((label, [float(x), float(y), float(w), float(h)]))
    return img, objects


def write_tiny_coco(root: Path, split: str, seed: int) -> Path:
    """Writes ``root/<split>/*.png`` and ``root/annotations/<split>.json``; returns the json."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for i in range(NUM_IMAGES):
        img, objects = _draw_image(rng)
        name = f"{split}/{i:04d}.png"
        cv2.imwrite(str(root / name), img)
        images.append(dict(id=i + 1, file_name=name, width=SIDE, height=SIDE))
        for label, bbox in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=label + 1,
                    bbox=bbox,
                    area=bbox[2] * bbox[3],
                    iscrowd=0,
                )
            )
    categories = [dict(id=i + 1, name=n) for i, n in enumerate(CLASSES)]
    path = root / "annotations" / f"{split}.json"
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core runner, OpenMP threads spinning against
    other processes made each tiny training step ~100x slower (12 s instead of 0.1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_coco")
    write_tiny_coco(root, "train", seed=0)
    write_tiny_coco(root, "val", seed=1)
    return root


def _set_image_size(pipeline: list[dict]) -> None:
    for step in pipeline:
        if step["type"] == "Resize":
            step["scale"] = (SIDE, SIDE)


def tiny_config(name: str, data_root: Path, work_dir: Path, epochs: int = TRAIN_EPOCHS) -> Config:
    """The config as shipped, pointed at the fixture and shrunk to a few iterations."""
    cfg = Config.fromfile(CONFIG_DIR / name)
    cfg.work_dir = str(work_dir)
    cfg.model.bbox_head.num_classes = len(CLASSES)
    cfg.model.test_cfg.score_thr = 0.0  # every kept box, so predict has something to return
    for split, loader in (("train", cfg.train_dataloader), ("val", cfg.val_dataloader)):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        ds = loader.dataset
        ds.update(
            data_root=str(data_root) + "/",
            ann_file=f"annotations/{split}.json",
            data_prefix=dict(img=""),
            metainfo=dict(classes=CLASSES),
        )
        _set_image_size(ds.pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = str(data_root / "annotations" / "val.json")
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs + 1)  # no validation while training
    cfg.param_scheduler = []  # no warm-up: a dozen steps must already lower the loss
    cfg.optim_wrapper.optimizer.lr = TRAIN_LR
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.log_processor.window_size = 1
    cfg.randomness = dict(seed=0)
    return cfg


def _mean_loss(model: torch.nn.Module, batches: list[dict]) -> float:
    """Mean training loss over fixed batches (BatchNorm on batch statistics, no update)."""
    total = 0.0
    with torch.no_grad():
        for batch in batches:
            data = model.data_preprocessor(copy.deepcopy(batch), True)
            loss, _ = model.parse_losses(model(**data, mode="loss"))
            total += float(loss)
    return total / len(batches)


@pytest.mark.parametrize("name", DETECTOR_CONFIGS)
def test_config_builds_and_neck_matches_feature_info(name: str) -> None:
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    cfg = Config.fromfile(CONFIG_DIR / name)
    assert cfg.custom_imports == dict(imports=["mtmnv3.backbone.mmdet_adapter"], allow_failed_imports=False)
    assert cfg.model.backbone.type == "MobileNetV3Trunk"
    register_all_modules()
    import mtmnv3.backbone.mmdet_adapter  # noqa: F401  (what custom_imports does in the Runner)

    model = MODELS.build(cfg.model)
    info = model.backbone.feature_info
    assert list(cfg.model.neck.in_channels) == [info[i]["channels"] for i in model.backbone.out_indices]
    strides = [info[i]["stride"] for i in model.backbone.out_indices]
    assert strides == [8, 16, 32]


def test_detector_configs_present() -> None:
    assert len(DETECTOR_CONFIGS) >= 2, DETECTOR_CONFIGS


@pytest.mark.parametrize("name", DETECTOR_CONFIGS)
def test_runner_trains_predicts_evaluates_and_reloads(name: str, tiny_coco: Path, tmp_path: Path) -> None:
    cfg = tiny_config(name, tiny_coco, tmp_path / "work")
    runner = Runner.from_cfg(cfg)
    model = runner.model
    model.init_weights()
    batches = list(runner.train_dataloader)  # one pass, frozen (the pipeline flips at random)
    before = _mean_loss(model, batches)
    runner.train()
    after = _mean_loss(model, batches)
    assert np.isfinite(before) and after < 0.9 * before, f"{name}: loss {before:.3f} -> {after:.3f}"

    # predict: boxes in the original image frame, with scores and labels
    model.eval()
    val_batch = next(iter(runner.val_dataloader))
    with torch.no_grad():
        results = model.test_step(val_batch)
    assert len(results) == len(val_batch["inputs"])
    for res in results:
        pred = res.pred_instances
        assert pred.bboxes.ndim == 2 and pred.bboxes.shape[1] == 4 and len(pred.bboxes) > 0
        assert len(pred.scores) == len(pred.labels) == len(pred.bboxes)
        assert set(pred.labels.tolist()) <= set(range(len(CLASSES)))
        assert float(pred.bboxes[:, 2:].max()) <= SIDE + 1e-3

    # evaluation: mmdet's CocoMetric through the Runner's test loop
    metrics = runner.test()
    assert {"coco/bbox_mAP", "coco/bbox_mAP_50"} <= set(metrics)
    assert 0.0 <= metrics["coco/bbox_mAP"] <= 1.0

    # the Runner's checkpoint feeds a new detector's backbone via init_cfg + prefix
    ckpt = tmp_path / "work" / f"epoch_{TRAIN_EPOCHS}.pth"
    assert ckpt.is_file()
    cfg2 = Config.fromfile(CONFIG_DIR / name)
    cfg2.model.bbox_head.num_classes = len(CLASSES)
    cfg2.model.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(ckpt), prefix="backbone")
    from mmdet.registry import MODELS

    fresh = MODELS.build(cfg2.model)
    fresh.init_weights()
    trained = model.backbone.state_dict()
    for k, v in fresh.backbone.state_dict().items():
        torch.testing.assert_close(v, trained[k], msg=k)


def test_shipped_data_settings_read_the_generator_output(tmp_path: Path) -> None:
    """The configs' dataset, class names and evaluator work on tools/make_synth.py output
    as shipped; only the folders move to tmp_path and the run is shortened."""
    import subprocess
    import sys

    for split, seed in (("train", 0), ("val", 1)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "mtmnv3",
                "make-synth",
                "--out",
                str(tmp_path / split),
                "--sequences",
                "2",
                "--frames",
                "4",
                "--size",
                str(SIDE),
                "--objects",
                "3",
                "--seed",
                str(seed),
                "--appearance",
                "sprites",
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
    cfg = Config.fromfile(CONFIG_DIR / "retinanet_mnv3-large-fpn_12e_synth.py")
    cfg.work_dir = str(tmp_path / "work")
    for split, loader in (("train", cfg.train_dataloader), ("val", cfg.val_dataloader)):
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.data_root = str(tmp_path / split) + "/"
        _set_image_size(loader.dataset.pipeline)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.val_evaluator.ann_file = str(tmp_path / "val" / "annotations" / "coco.json")
    cfg.test_evaluator = cfg.val_evaluator
    cfg.train_cfg.update(max_epochs=1, val_interval=2)
    cfg.param_scheduler = []
    cfg.model.test_cfg.score_thr = 0.0  # 4 steps in, no score passes 0.05; CocoMetric needs boxes
    runner = Runner.from_cfg(cfg)
    assert runner.train_dataloader.dataset.metainfo["classes"] == cfg.metainfo["classes"]
    assert len(runner.train_dataloader.dataset) == 8
    runner.train()
    metrics = runner.test()
    assert "coco/bbox_mAP" in metrics
