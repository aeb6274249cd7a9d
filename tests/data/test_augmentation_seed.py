"""Random augmentations repeat with the training seed (and differ with another), without seeds of their own."""

from __future__ import annotations

import numpy as np
import torch
from _helpers import CONFIG, train_data_options
from mmengine.runner import Runner, set_random_seed

from mtmnv3.data.transforms import ColorJitter, GlobalRandom, RandomCrop, RandomFlip
from mtmnv3.engine import load_config


def _augment(seed: int, n: int = 6) -> list[np.ndarray]:
    np.random.seed(seed)  # what mmengine's set_random_seed does for NumPy
    pipeline = [RandomFlip(prob=0.5), ColorJitter(0.3, 0.3, 0.3, 0.05), RandomCrop(40)]
    img = np.random.default_rng(123).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    boxes = np.array([[4.0, 4.0, 30.0, 30.0], [20.0, 10.0, 60.0, 50.0]], np.float32)
    out = []
    for _ in range(n):
        results = dict(img=img.copy(), gt_bboxes=boxes.copy(), gt_labels=np.array([0, 1]))
        for transform in pipeline:
            results = transform(results)
        out.append(results["img"])
    return out


def test_unseeded_transforms_follow_numpys_global_seed():
    assert isinstance(RandomFlip().rng, GlobalRandom)
    first, again, other = _augment(0), _augment(0), _augment(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other))
    # A transform's own seed still gives it its own stream.
    np.random.seed(5)
    a = [RandomFlip(seed=3).rng.random() for _ in range(2)]
    np.random.seed(6)
    b = [RandomFlip(seed=3).rng.random() for _ in range(2)]
    assert a == b


def _first_batch(data_root, seed: int):
    cfg = load_config(CONFIG, None)
    for option in train_data_options(CONFIG, data_root, num_sequences=2, num_frames=4, image_size=96):
        key, value = option.split("=", 1)
        cfg.merge_from_dict({key: int(value) if value.isdigit() else value})
    set_random_seed(seed)
    loader = Runner.build_dataloader(
        dict(cfg.train_dataloader, batch_size=4, num_workers=0, persistent_workers=False), seed=seed
    )
    return next(iter(loader))["inputs"]


def test_the_training_loader_repeats_with_the_seed(tmp_path):
    a, b = _first_batch(tmp_path, 0), _first_batch(tmp_path, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
