"""Helpers the tests share across folders: the tiny three-task config, running subcommands, hand-made samples.

``tests/conftest.py`` sits in this folder, so pytest puts it on ``sys.path``
and every test module imports these as ``from _helpers import ...``.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.structures import InstanceData

from mtmnv3.core.structures import MultiTaskDataSample

ROOT = Path(__file__).resolve().parents[1]


CONFIG = ROOT / "configs" / "mtmnv3_small_3task_synth.py"


def tiny_options(data_root, max_iters=6, ckpt_interval=3, batch=4):
    """Shrink the three-task config: tiny trunk, tiny data, a few iterations."""
    return [
        "model.trunk.width_mult=0.25",
        "model.neck.out_channels=16",
        "model.heads.cls.hidden_channels=32",
        "model.heads.det.feat_channels=16",
        "model.heads.emb.feat_channels=16",
        f"train_cfg.max_iters={max_iters}",
        f"train_cfg.val_interval={max_iters}",
        "param_scheduler.0.end=2",
        "param_scheduler.1.begin=2",
        f"param_scheduler.1.end={max_iters}",
        f"default_hooks.checkpoint.interval={ckpt_interval}",
        "default_hooks.logger.interval=1",
        "default_hooks.checkpoint.max_keep_ckpts=10",
        f"train_dataloader.batch_size={batch}",
        "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "val_dataloader.num_workers=0",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
        f"test_dataloader.dataset.data_root={data_root}",
        "test_dataloader.dataset.num_sequences=1",
        "test_dataloader.dataset.num_frames=8",
        "test_dataloader.dataset.image_size=96",
        "test_dataloader.dataset.pipeline.0.size=96",
        "val_dataloader.persistent_workers=False",
        "val_dataloader.batch_size=8",
        f"val_dataloader.dataset.data_root={data_root}",
        "val_dataloader.dataset.num_sequences=1",
        "val_dataloader.dataset.num_frames=8",
        "val_dataloader.dataset.image_size=96",
        "val_dataloader.dataset.pipeline.0.size=96",
    ] + train_data_options(CONFIG, data_root, num_sequences=2, num_frames=8, image_size=96)


def train_data_options(config, data_root, num_sequences, num_frames, image_size):
    """Shrink every part of the config's training data (the default mixes videos
    and single frames in a ConcatDataset; a part keeps its frame count if it has 1)."""
    from mtmnv3.engine import dataset_keys, dataset_parts, load_config

    cfg = load_config(config)
    opts = []
    for key, part in zip(dataset_keys(cfg, "train"), dataset_parts(cfg.train_dataloader.dataset)):
        frames = 1 if part.get("num_frames") == 1 else num_frames
        size_at = next(i for i, t in enumerate(part.pipeline) if t.type == "Letterbox")
        opts += [
            f"{key}.data_root={data_root}",
            f"{key}.num_sequences={num_sequences}",
            f"{key}.num_frames={frames}",
            f"{key}.image_size={image_size}",
            f"{key}.pipeline.{size_at}.size={image_size}",
        ]
    return opts


#: Former script names (``train.py``, ``demo_job.py``, ...) -> their ``mtmnv3`` subcommand.
SUBCOMMANDS = {"demo_job": "demo", "export_onnx": "export", "trunk_summary": "summary"}


def subcommand(tool):
    """``'calibrate_tracker.py'`` -> ``'calibrate-tracker'``; a subcommand name passes through."""
    name = tool.removesuffix(".py")
    return SUBCOMMANDS.get(name, name).replace("_", "-")


def run_tool(tool, *args, timeout=300, env=None, **kwargs):
    """``python -m mtmnv3 SUBCOMMAND ARGS`` in a fresh interpreter (``tool`` names the subcommand)."""
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mtmnv3", subcommand(tool), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
        **kwargs,
    )


SIZE = 128


BOXES = [[10.0, 12.0, 50.0, 60.0], [64.0, 30.0, 120.0, 90.0]]


def make_sample(tasks=("cls", "det", "track"), label=3, boxes=BOXES, labels=(1, 3), ids=(3, 7), ignore=None):
    s = MultiTaskDataSample(
        metainfo=dict(tasks=tasks, img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0))
    )
    gi = InstanceData()
    gi.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    gi.labels = torch.tensor(labels, dtype=torch.long)
    gi.instance_ids = torch.tensor(ids, dtype=torch.long)
    gi.ignore = torch.tensor(ignore if ignore is not None else [False] * len(labels))
    gi.visibility = torch.ones(len(labels))
    s.gt_instances = gi
    s.gt_label = label
    return s


def model_cfg(**overrides):
    cfg = dict(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.5),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=11, hidden_channels=64),
            det=dict(type="CenterDetHead", num_classes=10, feat_channels=32),
            emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=32, feat_channels=32),
        ),
        neck=dict(type="FPNLite", out_channels=32),
    )
    cfg.update(overrides)
    return cfg


def batch(samples):
    g = torch.Generator().manual_seed(0)
    return dict(
        inputs=[torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in samples],
        data_samples=samples,
    )
