"""Calibration data for int8 quantization: input readers and real frames from a config's split."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader
from torch import Tensor, nn

from mtmnv3.runtime.onnx_export import INPUT_NAME

__all__ = ["FeedsCalibrationReader", "ArrayCalibrationReader", "build_loader", "calibration_arrays"]


class FeedsCalibrationReader(CalibrationDataReader):
    """Calibration data for ``quantize_static`` as ready feeds, ``{input name: array}`` each.

    The graphs of the latency table (one block, a pair, a head with several
    inputs) are calibrated this way, on real activations.

    Args:
        feeds: one dict per calibration step.

    Raises:
        ValueError: no feeds.
    """

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self.batches = [dict(f) for f in feeds]
        if not self.batches:
            raise ValueError("no calibration feeds given")
        self._it: Iterator[dict[str, np.ndarray]] = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        """Start again from the first step."""
        self._it = iter(self.batches)


class ArrayCalibrationReader(FeedsCalibrationReader):
    """Calibration data for ``quantize_static`` from preprocessed float arrays.

    Args:
        arrays: normalised images, each ``(3, H, W)`` or ``(N, 3, H, W)``
            float32 (what the exported graph takes). Any iterable; it is
            materialised once so the reader can be rewound.
        input_name: the graph input to feed.
        batch_size: images per calibration step (must match a fixed-batch
            export; 1 for the default export).

    Raises:
        ValueError: no arrays, or an array of the wrong rank.
    """

    def __init__(
        self, arrays: Iterable[np.ndarray | Tensor], input_name: str = INPUT_NAME, batch_size: int = 1
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        images: list[np.ndarray] = []
        for a in arrays:
            a = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[1] != 3:
                raise ValueError(f"calibration arrays must be (3, H, W) or (N, 3, H, W), got shape {a.shape}")
            images.extend(np.ascontiguousarray(a, dtype=np.float32)[i] for i in range(len(a)))
        if not images:
            raise ValueError("no calibration arrays given")
        self.input_name = input_name
        batches = [np.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        if len(batches) > 1 and len(batches[-1]) != batch_size:
            batches.pop()  # a fixed-batch graph cannot take a short last batch
        super().__init__({input_name: b} for b in batches)


def _data_cfg(cfg: Any, split: str) -> dict[str, Any]:
    key = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}.get(split)
    if key is None:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if key not in cfg or "dataset" not in cfg[key]:
        raise ValueError(f"the config has no {key}.dataset")
    return copy.deepcopy(cfg[key].to_dict() if hasattr(cfg[key], "to_dict") else dict(cfg[key]))


def _eval_pipeline(cfg: Any) -> list[dict[str, Any]]:
    """The config's deterministic test pipeline (Letterbox + pack)."""
    loader = cfg.get("val_dataloader") or cfg.get("test_dataloader")
    if loader is None:
        raise ValueError("the config has no val_dataloader or test_dataloader to take a test pipeline from")
    return copy.deepcopy(list(loader["dataset"]["pipeline"]))


def build_loader(cfg: Any, split: str, shuffle: bool, seed: int, batch_size: int) -> Any:
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mtmnv3.engine import dataset_parts

    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    loader = _data_cfg(cfg, split)
    for part in dataset_parts(loader["dataset"]):
        part["pipeline"] = _eval_pipeline(cfg)
    loader.update(
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type="DefaultSampler", shuffle=shuffle, seed=seed),
    )
    return Runner.build_dataloader(loader, seed=seed)


@torch.no_grad()
def calibration_arrays(
    cfg: Any, model: nn.Module, num_samples: int = 64, split: str = "train", seed: int = 0
) -> list[np.ndarray]:
    """Real calibration frames: ``num_samples`` images of a config's split, preprocessed.

    Frames go through the config's *test* pipeline (letterbox, no augmentation)
    and the model's data preprocessor, i.e. exactly what the exported graph
    takes; they are sampled at random (seeded) from the split.

    Args:
        cfg: a loaded mmengine config (``mtmnv3.engine.load_config``).
        model: the model whose ``data_preprocessor`` normalises the frames.
        num_samples: how many images.
        split: ``'train'`` (default: calibration must not see the evaluation data), ``'val'`` or ``'test'``.
        seed: sampling seed.

    Returns:
        ``num_samples`` float32 arrays of shape ``(1, 3, H, W)``.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    loader = build_loader(cfg, split, shuffle=True, seed=seed, batch_size=1)
    out: list[np.ndarray] = []
    for data in loader:
        inputs = model.data_preprocessor(data, False)["inputs"]
        out.append(inputs.float().numpy())
        if len(out) >= num_samples:
            break
    return out
