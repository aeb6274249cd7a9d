"""Reading fields out of data samples, whatever form mmengine hands them in.

mmengine's :class:`~mmengine.evaluator.Evaluator` turns every
:class:`~mmengine.structures.BaseDataElement` into a plain ``dict`` (via
``to_dict()``) before it calls ``metric.process``; code that calls a metric
directly may pass the data elements themselves. The helpers here read both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from mmengine.structures import BaseDataElement

__all__ = ["get_field", "has_field", "sample_tasks", "to_numpy", "scale_factor_of", "boxes_to_original"]

_MISSING = object()


def has_field(sample: Mapping | BaseDataElement, name: str) -> bool:
    """Whether ``sample`` (a dict or a data element) holds ``name``."""
    if isinstance(sample, Mapping):
        return name in sample
    if isinstance(sample, BaseDataElement):
        return name in sample
    raise TypeError(f"expected a dict or a BaseDataElement as data sample, got {type(sample).__name__}")


def get_field(sample: Mapping | BaseDataElement, name: str, default: Any = _MISSING) -> Any:
    """Read ``name`` (metainfo or data field) from a dict or a data element.

    Args:
        sample: One data sample, as a dict or a ``BaseDataElement``.
        name: Field name.
        default: Returned when the field is absent; without it a missing field
            raises ``KeyError`` naming the field and the fields present.

    Returns:
        The field's value.
    """
    if has_field(sample, name):
        return sample[name] if isinstance(sample, Mapping) else getattr(sample, name)
    if default is not _MISSING:
        return default
    present = sorted(sample.keys()) if isinstance(sample, Mapping) else sorted(sample.all_keys())
    raise KeyError(f"data sample has no field {name!r}; fields present: {present}")


def sample_tasks(sample: Mapping | BaseDataElement) -> tuple[str, ...] | None:
    """The sample's ``tasks`` metainfo as a tuple, or ``None`` when it is not set."""
    tasks = get_field(sample, "tasks", None)
    if tasks is None:
        return None
    if isinstance(tasks, str):
        return (tasks,)
    return tuple(tasks)


def to_numpy(value: Any, dtype: Any = None) -> np.ndarray:
    """Convert a tensor, array, list or scalar to a NumPy array (on the CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    return array.astype(dtype) if dtype is not None else array


def scale_factor_of(sample: Mapping | BaseDataElement) -> tuple[float, float]:
    """The sample's ``scale_factor`` as ``(w_scale, h_scale)``; ``(1, 1)`` when absent.

    Raises:
        ValueError: If the scale factor is not one or two positive numbers.
    """
    factor = get_field(sample, "scale_factor", None)
    if factor is None:
        return 1.0, 1.0
    values = to_numpy(factor, np.float64).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2 or not np.all(values > 0):
        raise ValueError(f"scale_factor must be one or two positive numbers (w, h), got {factor!r}")
    return float(values[0]), float(values[1])


def boxes_to_original(boxes: np.ndarray, sample: Mapping | BaseDataElement) -> np.ndarray:
    """Map xyxy boxes from input-image (packed) pixels back to original-image pixels.

    Undoes letterbox padding (``pad_param`` = (top, bottom, left, right), when
    set) and then the resize (``scale_factor`` = (w, h)).

    Args:
        boxes: (K, 4) xyxy boxes in input-image pixels.
        sample: The data sample whose metainfo describes the preprocessing.

    Returns:
        (K, 4) float64 xyxy boxes in original-image pixels.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pad = get_field(sample, "pad_param", None)
    if pad is not None:
        top, _, left, _ = (float(v) for v in to_numpy(pad, np.float64).reshape(-1))
        boxes = boxes - np.array([left, top, left, top])
    w_scale, h_scale = scale_factor_of(sample)
    return boxes / np.array([w_scale, h_scale, w_scale, h_scale])
