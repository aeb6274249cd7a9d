"""What every dataset shares: the raw sample dict, image reading, the pipeline builder, the base class.

Images are read with clear errors naming the file.

The raw sample dict (before any transform) has these keys:

==================  ==========================================================
``img``             np.uint8 (H, W, 3), **RGB**
``img_path``        str
``img_id``          int
``video_id``        int, -1 if the image is not part of a video
``frame_id``        int, 1-based, -1 if not part of a video
``ori_shape``       (H, W)
``img_shape``       (H, W), updated by geometric transforms
``gt_bboxes``       float32 (K, 4) xyxy pixels
``gt_labels``       int64 (K,) class indices (0-based)
``gt_instance_ids`` int64 (K,), -1 unknown
``gt_visibility``   float32 (K,) in [0, 1] (1 when unknown)
``gt_ignore``       bool (K,)
``gt_cls_label``    int, -1 if the image has no classification label
``tasks``           tuple of the tasks the sample has labels for, from
                    ``'cls'``, ``'det'``, ``'track'``
==================  ==========================================================

plus ``scale_factor`` (w, h) = (1.0, 1.0), ``flip`` = False and, for
synthetic data, the scene knobs of its sequence (see ``SCENE_META_KEYS``).
"""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
from mmengine.dataset import BaseDataset

from mtmnv3.core.registry import TRANSFORMS

__all__ = [
    "DataError",
    "TASKS",
    "SCENE_META_KEYS",
    "MultiTaskBaseDataset",
    "SkipCounter",
    "build_pipeline",
    "empty_annotations",
    "read_image_rgb",
]

#: The tasks a sample can carry labels for.
TASKS = ("cls", "det", "track")
#: Per-sequence scene knobs of synthetic data, copied into the sample metainfo.
SCENE_META_KEYS = (
    "domain",
    "appearance",
    "brightness",
    "contrast",
    "gamma",
    "color_cast",
    "downscale",
    "motion_blur",
    "noise_std",
)
#: The marker a complete JPEG file ends with.
_JPEG_EOI = b"\xff\xd9"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A data file is malformed; the message names the file (and line)."""


def read_image_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB.

    Args:
        path: image file.

    Returns:
        np.uint8 array (H, W, 3), RGB channel order.

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: the file cannot be decoded (empty, truncated, corrupt or
            not an image).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    buf = np.fromfile(path, dtype=np.uint8)
    if not buf.size:
        raise DataError(f"cannot decode image (empty file): {path}")
    if _jpeg_truncated(buf):
        raise DataError(
            f"cannot decode image (truncated JPEG: it ends before its end-of-image marker): {path}"
        )
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image (truncated, corrupt or not an image): {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _jpeg_truncated(buf: np.ndarray) -> bool:
    """A JPEG cut short (an interrupted download or copy), which some OpenCV
    builds decode without error, grey below the cut.

    A JPEG ends with its end-of-image marker; files that carry data after it
    (e.g. a phone's motion photo) are checked by decoding them fully with Pillow.
    """
    if buf.size < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return False  # not a JPEG
    if buf[-256:].tobytes().rstrip(b"\x00\r\n\t ").endswith(_JPEG_EOI):
        return False
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        return True
    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            im.load()
    except (OSError, SyntaxError, ValueError):
        return True
    return False


def empty_annotations() -> dict[str, np.ndarray]:
    """Instance annotation arrays with K = 0 (an image without objects)."""
    return {
        "gt_bboxes": np.zeros((0, 4), np.float32),
        "gt_labels": np.zeros((0,), np.int64),
        "gt_instance_ids": np.zeros((0,), np.int64),
        "gt_visibility": np.zeros((0,), np.float32),
        "gt_ignore": np.zeros((0,), bool),
    }


class SkipCounter:
    """Counts skipped or repaired annotations and warns once with the totals.

    Args:
        source: the file or folder the counts refer to (named in the warning).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, reason: str, where: str) -> None:
        """Record one skip for ``reason`` at ``where`` (e.g. ``file:line``)."""
        self.counts[reason] += 1
        self.examples.setdefault(reason, where)

    def warn(self) -> None:
        """Emit one ``UserWarning`` summarising every count (nothing if none)."""
        if not self.counts:
            return
        parts = [
            f"{n} {reason} (first at {self.examples[reason]})" for reason, n in sorted(self.counts.items())
        ]
        warnings.warn(f"{self.source}: " + "; ".join(parts), UserWarning, stacklevel=3)


def build_pipeline(pipeline: Sequence[dict | Callable] | None) -> list[Callable]:
    """Build transforms from config dicts with the package's TRANSFORMS registry.

    Args:
        pipeline: config dicts (``dict(type='Resize', ...)``) or callables.

    Returns:
        The list of callables.
    """
    if pipeline is None:
        return []
    if isinstance(pipeline, (dict, str)) or not isinstance(pipeline, Sequence):
        raise TypeError(f"pipeline must be a list of dicts or callables, got {type(pipeline).__name__}")
    built: list[Callable] = []
    for t in pipeline:
        if isinstance(t, dict):
            t = TRANSFORMS.build(t)
        if not callable(t):
            raise TypeError(f"pipeline entries must be dicts or callables, got {t!r}")
        built.append(t)
    return built


class MultiTaskBaseDataset(BaseDataset):
    """mmengine ``BaseDataset`` whose samples are the package's raw dicts.

    Subclasses implement ``load_data_list`` returning data infos that hold
    ``img_path`` plus every annotation key of the raw dict except ``img``
    and ``ori_shape``; this class reads the image (RGB), fills the defaults
    and runs the pipeline. Pipelines are built with the package's TRANSFORMS
    registry, so they work inside and outside a Runner.

    Args:
        pipeline: transform config dicts or callables.
        **kwargs: forwarded to :class:`mmengine.dataset.BaseDataset`.
    """

    def __init__(self, *, pipeline: Sequence[dict | Callable] | None = None, **kwargs: Any) -> None:
        super().__init__(pipeline=build_pipeline(pipeline), **kwargs)

    def load_image(self, info: dict) -> np.ndarray:
        """Read the sample's image as RGB (H, W, 3) uint8; overridable for in-memory data."""
        return read_image_rgb(info["img_path"])

    def prepare_data(self, idx: int) -> Any:
        """Build the raw sample dict for ``idx`` and run the pipeline on it."""
        info = self.get_data_info(idx)
        img = self.load_image(info)
        results = {
            "img_id": int(info.get("img_id", idx)),
            "video_id": -1,
            "frame_id": -1,
            "gt_cls_label": -1,
            **empty_annotations(),
            **info,
        }
        results["img"] = img
        results["ori_shape"] = tuple(img.shape[:2])
        results["img_shape"] = tuple(img.shape[:2])
        results["scale_factor"] = (1.0, 1.0)
        results["flip"] = False
        results["flip_direction"] = None
        results["tasks"] = tuple(results.get("tasks", ()))
        return self.pipeline(results)
