"""Transforms on the raw sample dict; boxes, identities and labels stay correct.

Geometric transforms update ``img``, ``img_shape``, ``gt_bboxes`` and the
bookkeeping keys ``scale_factor`` (w, h; cumulative), ``flip``,
``flip_direction`` and ``pad_param`` (top, bottom, left, right). Rows of the
instance arrays (``gt_bboxes``, ``gt_labels``, ``gt_instance_ids``,
``gt_visibility``, ``gt_ignore``) are only ever removed together.
``PackMultiTaskInputs`` turns the dict into the model's input.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from mmengine.structures import InstanceData

from mtmnv3.core.registry import TRANSFORMS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.common import SCENE_META_KEYS

__all__ = [
    "ColorJitter",
    "Letterbox",
    "PackMultiTaskInputs",
    "RandomCrop",
    "RandomFlip",
    "Resize",
    "keep_aspect_shape",
]

INSTANCE_KEYS = ("gt_bboxes", "gt_labels", "gt_instance_ids", "gt_visibility", "gt_ignore")
DEFAULT_PAD_VALUE = 114
#: Deepest stride of the network: aspect-keeping letterbox sides are multiples of it.
DEFAULT_STRIDE = 32
#: RandomCrop keeps the classification label only if no box lost more than this fraction of its area.
CROP_CLS_AREA_TOLERANCE = 0.1
MAX_CROP_TRIES = 10
HUE_RANGE = 180  # OpenCV 8-bit hue


def _size_hw(size, name: str) -> tuple[int, int]:
    """int or (width, height) -> (height, width)."""
    given = size
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) for s in size)
    ):
        raise TypeError(f"{name} must be an int or a (width, height) pair, got {given!r}")
    if min(size) < 1:
        raise ValueError(f"{name} must be positive, got {given!r}")
    return int(size[1]), int(size[0])


class GlobalRandom:
    """The draws the random transforms make, taken from NumPy's global RNG.

    mmengine seeds NumPy's global RNG from the config's ``randomness.seed``
    (and each data-loader worker from its rank and id), so transforms without
    a seed of their own repeat with the training seed, and loader workers do
    not repeat each other's draws. (A ``Generator`` made without a seed would
    draw from the operating system's entropy: a new augmentation stream on
    every run.)
    """

    def random(self) -> float:
        """A float in [0, 1)."""
        return float(np.random.random())

    def uniform(self, low: float, high: float) -> float:
        """A float in [low, high)."""
        return float(np.random.uniform(low, high))

    def integers(self, low: int, high: int) -> int:
        """An int in [low, high)."""
        return int(np.random.randint(low, high))


def _rng(seed: int | None) -> np.random.Generator | GlobalRandom:
    """The transform's own generator when it has a seed, else draws from NumPy's global RNG."""
    return np.random.default_rng(seed) if seed is not None else GlobalRandom()


def _keep_rows(results: dict, keep: np.ndarray) -> None:
    for k in INSTANCE_KEYS:
        if k in results:
            results[k] = results[k][keep]


def _scale(results: dict, sx: float, sy: float, out_hw: tuple[int, int]) -> None:
    h, w = out_hw
    results["img"] = cv2.resize(results["img"], (w, h), interpolation=cv2.INTER_LINEAR)
    results["img_shape"] = (h, w)
    if "gt_bboxes" in results:
        results["gt_bboxes"] = (results["gt_bboxes"] * np.array([sx, sy, sx, sy], np.float32)).astype(
            np.float32
        )
    fx, fy = results.get("scale_factor", (1.0, 1.0))
    results["scale_factor"] = (fx * sx, fy * sy)


@TRANSFORMS.register_module()
class Resize:
    """Resize to a fixed size, or keep the aspect ratio within it.

    Args:
        scale: int or (width, height).
        keep_ratio: scale by the largest factor that fits inside ``scale``.
    """

    def __init__(self, scale: int | tuple[int, int], keep_ratio: bool = False) -> None:
        self.out_hw = _size_hw(scale, "scale")
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        th, tw = self.out_hw
        if self.keep_ratio:
            f = min(th / h, tw / w)
            th, tw = max(1, round(h * f)), max(1, round(w * f))
        _scale(results, tw / w, th / h, (th, tw))
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.out_hw[::-1]}, keep_ratio={self.keep_ratio})"


def _check_stride_multiple(value, stride: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % stride:
        raise ValueError(f"{name} must be a positive multiple of {stride}, got {value!r}")
    return int(value)


def _fit_aspect(frame_hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """(height, width) of a frame resized so that its long side is ``long_side``."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    f = long_side / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def keep_aspect_shape(
    frame_hw: Sequence[int], long_side: int, stride: int = DEFAULT_STRIDE
) -> tuple[int, int]:
    """The smallest letterbox ``(height, width)`` that keeps a frame's aspect at ``long_side``.

    The frame is resized so that its long side is ``long_side``; the short
    side is then rounded up to a multiple of ``stride`` (YOLO-style
    "rectangular inference"): a 1920x1080 frame at long side 320 gives
    ``(192, 320)``, i.e. 320x192 (w x h), padded by 6 rows top and bottom.

    Raises:
        ValueError: ``long_side`` or ``stride`` is not positive, ``long_side``
            is not a multiple of ``stride``, or the frame is empty.
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    stride = int(stride)
    long_side = _check_stride_multiple(long_side, stride, "long_side")
    if len(frame_hw) < 2 or min(int(frame_hw[0]), int(frame_hw[1])) < 1:
        raise ValueError(f"frame_hw must be a positive (height, width), got {tuple(frame_hw)!r}")
    nh, nw = _fit_aspect(frame_hw, long_side)
    return -(-nh // stride) * stride, -(-nw // stride) * stride


@TRANSFORMS.register_module()
class Letterbox:
    """Resize keeping the aspect ratio, then pad (centred) to the output size.

    Two modes of choosing the output size:

    * fixed (default): the output is exactly ``size``, a square ``int`` or a
      ``(width, height)`` rectangle, whatever the frame's shape;
    * ``keep_aspect=True``: ``size`` is the long side (an ``int``, a multiple
      of ``stride``) and the output is the smallest rectangle that keeps the
      frame's aspect with both sides multiples of ``stride``
      (:func:`keep_aspect_shape`): a 16:9 frame at 320 becomes 320x192 (w x h),
      not 320x320. The frame is then letterboxed into that rectangle exactly
      as in the fixed mode, so both give the same pixels for the same output size.

    Both record ``scale_factor`` (w, h) and ``pad_param`` (top, bottom, left,
    right), which :func:`mtmnv3.heads.center_head.to_original_coords` undoes
    exactly (and clips to ``ori_shape``) to put boxes back in frame pixels.

    Args:
        size: int or (width, height) of the output; the long side with ``keep_aspect``.
        pad_val: padding grey level.
        keep_aspect: pick the output rectangle per frame from its aspect.
        stride: the multiple both output sides are rounded up to with ``keep_aspect``.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        pad_val: int = DEFAULT_PAD_VALUE,
        keep_aspect: bool = False,
        stride: int = DEFAULT_STRIDE,
    ) -> None:
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive int, got {stride!r}")
        self.keep_aspect = bool(keep_aspect)
        self.stride = int(stride)
        if self.keep_aspect:
            long_side = _check_stride_multiple(size, self.stride, "size (the long side with keep_aspect)")
            self.out_hw = (long_side, long_side)
        else:
            self.out_hw = _size_hw(size, "size")
        if not 0 <= pad_val <= 255:
            raise ValueError(f"pad_val must be in [0, 255], got {pad_val!r}")
        self.pad_val = int(pad_val)

    def output_hw(self, frame_hw: Sequence[int]) -> tuple[int, int]:
        """The ``(height, width)`` this transform gives a frame of ``frame_hw``."""
        if self.keep_aspect:
            return keep_aspect_shape(frame_hw, self.out_hw[0], self.stride)
        return self.out_hw

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        th, tw = self.output_hw((h, w))
        f = min(th / h, tw / w)
        nh, nw = max(1, round(h * f)), max(1, round(w * f))
        _scale(results, nw / w, nh / h, (nh, nw))
        top, left = (th - nh) // 2, (tw - nw) // 2
        bottom, right = th - nh - top, tw - nw - left
        results["img"] = cv2.copyMakeBorder(
            results["img"], top, bottom, left, right, cv2.BORDER_CONSTANT, value=(self.pad_val,) * 3
        )
        results["img_shape"] = (th, tw)
        if "gt_bboxes" in results:
            results["gt_bboxes"] = results["gt_bboxes"] + np.array([left, top, left, top], np.float32)
        results["pad_param"] = (top, bottom, left, right)
        return results

    def __repr__(self) -> str:
        if self.keep_aspect:
            return f"{type(self).__name__}(size={self.out_hw[0]}, keep_aspect=True, stride={self.stride})"
        return f"{type(self).__name__}(size={self.out_hw[::-1]}, pad_val={self.pad_val})"


@TRANSFORMS.register_module()
class RandomFlip:
    """Flip horizontally (or vertically) with probability ``prob``.

    Args:
        prob: flip probability in [0, 1].
        direction: ``'horizontal'`` or ``'vertical'``.
        seed: optional seed of the transform's own generator (tests).
    """

    def __init__(self, prob: float = 0.5, direction: str = "horizontal", seed: int | None = None) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob!r}")
        if direction not in ("horizontal", "vertical"):
            raise ValueError(f"direction must be 'horizontal' or 'vertical', got {direction!r}")
        self.prob = float(prob)
        self.direction = direction
        self.rng = _rng(seed)

    def __call__(self, results: dict) -> dict:
        if self.rng.random() >= self.prob:
            results.setdefault("flip", False)
            return results
        h, w = results["img"].shape[:2]
        axis = 1 if self.direction == "horizontal" else 0
        results["img"] = np.ascontiguousarray(np.flip(results["img"], axis=axis))
        if "gt_bboxes" in results and len(results["gt_bboxes"]):
            b = results["gt_bboxes"].copy()
            if axis == 1:
                b[:, [0, 2]] = w - results["gt_bboxes"][:, [2, 0]]
            else:
                b[:, [1, 3]] = h - results["gt_bboxes"][:, [3, 1]]
            results["gt_bboxes"] = b
        results["flip"] = not results.get("flip", False)
        results["flip_direction"] = self.direction
        return results


@TRANSFORMS.register_module()
class ColorJitter:
    """Random brightness, contrast, saturation and hue (labels untouched).

    Args:
        brightness: max relative brightness change (factor in [1-b, 1+b]).
        contrast: max relative contrast change.
        saturation: max relative saturation change.
        hue: max hue shift as a fraction of the hue circle (<= 0.5).
        seed: optional seed of the transform's own generator.
    """

    def __init__(
        self,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        hue: float = 0.02,
        seed: int | None = None,
    ) -> None:
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue!r}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.rng = _rng(seed)

    def __call__(self, results: dict) -> dict:
        r = self.rng
        img = results["img"].astype(np.float32)
        img *= 1.0 + r.uniform(-self.brightness, self.brightness)
        mean = img.mean()
        img = (img - mean) * (1.0 + r.uniform(-self.contrast, self.contrast)) + mean
        img = np.clip(img, 0, 255).astype(np.uint8)
        if self.saturation > 0 or self.hue > 0:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
            hsv[..., 1] = np.clip(hsv[..., 1] * (1.0 + r.uniform(-self.saturation, self.saturation)), 0, 255)
            hsv[..., 0] = (hsv[..., 0] + r.uniform(-self.hue, self.hue) * HUE_RANGE) % HUE_RANGE
            img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
        results["img"] = img
        return results


@TRANSFORMS.register_module()
class RandomCrop:
    """Crop a random window; boxes are clipped, boxes left empty are dropped.

    Visibility of a clipped box is multiplied by the fraction of its area
    kept. The classification label of the image is defined on the whole
    frame: if any box lost more than ``CROP_CLS_AREA_TOLERANCE`` of its area,
    the crop could change it, so ``gt_cls_label`` becomes -1 and ``'cls'``
    leaves ``tasks`` (never a silently wrong label).

    Args:
        crop_size: int or (width, height); larger than the image = no crop on that side.
        min_boxes: keep trying (up to ``MAX_CROP_TRIES``) for a crop that keeps
            at least this many boxes (when the image has that many).
        seed: optional seed of the transform's own generator.
    """

    def __init__(self, crop_size: int | tuple[int, int], min_boxes: int = 1, seed: int | None = None) -> None:
        self.crop_hw = _size_hw(crop_size, "crop_size")
        if min_boxes < 0:
            raise ValueError(f"min_boxes must be >= 0, got {min_boxes!r}")
        self.min_boxes = int(min_boxes)
        self.rng = _rng(seed)

    def _window(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = min(self.crop_hw[0], h), min(self.crop_hw[1], w)
        y0 = int(self.rng.integers(0, h - ch + 1))
        x0 = int(self.rng.integers(0, w - cw + 1))
        return x0, y0, cw, ch

    def __call__(self, results: dict) -> dict:
        h, w = results["img"].shape[:2]
        boxes = results.get("gt_bboxes", np.zeros((0, 4), np.float32))
        need = min(self.min_boxes, len(boxes))
        for _ in range(MAX_CROP_TRIES):
            x0, y0, cw, ch = self._window(h, w)
            clipped = np.clip(boxes - np.array([x0, y0, x0, y0], np.float32), 0, [cw, ch, cw, ch]).astype(
                np.float32
            )
            keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
            if keep.sum() >= need:
                break
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        kept_area = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
        frac = np.where(area > 0, kept_area / np.maximum(area, 1e-9), 0.0)
        results["img"] = np.ascontiguousarray(results["img"][y0 : y0 + ch, x0 : x0 + cw])
        results["img_shape"] = (ch, cw)
        results["gt_bboxes"] = clipped
        if "gt_visibility" in results:
            results["gt_visibility"] = (results["gt_visibility"] * frac).astype(np.float32)
        if results.get("gt_cls_label", -1) >= 0 and np.any(frac < 1.0 - CROP_CLS_AREA_TOLERANCE):
            results["gt_cls_label"] = -1
            results["tasks"] = tuple(t for t in results.get("tasks", ()) if t != "cls")
        _keep_rows(results, keep)
        results["crop_offset"] = (x0, y0)
        return results


@TRANSFORMS.register_module()
class PackMultiTaskInputs:
    """Pack the raw dict into ``{'inputs': uint8 (3, H, W), 'data_samples': MultiTaskDataSample}``.

    Args:
        meta_keys: keys copied into the data sample's metainfo (missing ones
            are skipped); the scene knobs of synthetic data are added.
    """

    DEFAULT_META_KEYS = (
        "img_id",
        "video_id",
        "frame_id",
        "img_path",
        "ori_shape",
        "img_shape",
        "scale_factor",
        "flip",
        "flip_direction",
        "pad_param",
        "tasks",
    )

    def __init__(self, meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        if isinstance(meta_keys, str):
            raise TypeError(f"meta_keys must be a sequence of key names, got {meta_keys!r}")
        self.meta_keys = tuple(meta_keys) + tuple(k for k in SCENE_META_KEYS if k not in meta_keys)

    def __call__(self, results: dict) -> dict:
        img = results["img"]
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"img must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = MultiTaskDataSample()
        inst = InstanceData()
        inst.bboxes = torch.from_numpy(np.asarray(results["gt_bboxes"], np.float32).reshape(-1, 4))
        inst.labels = torch.from_numpy(np.asarray(results["gt_labels"], np.int64))
        inst.instance_ids = torch.from_numpy(np.asarray(results["gt_instance_ids"], np.int64))
        inst.visibility = torch.from_numpy(np.asarray(results["gt_visibility"], np.float32))
        inst.ignore = torch.from_numpy(np.asarray(results["gt_ignore"], bool))
        sample.gt_instances = inst
        sample.gt_label = torch.tensor(int(results.get("gt_cls_label", -1)), dtype=torch.long)
        meta = {k: results[k] for k in self.meta_keys if k in results}
        meta["img_shape"] = tuple(img.shape[:2])
        sample.set_metainfo(meta)
        return {"inputs": inputs, "data_samples": sample}
