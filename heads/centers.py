"""Object centres on a feature grid, shared by the heads
(so an object's embedding is read exactly where its heatmap peak is trained)."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "OBJECT_CELLS",
    "box_cells",
    "grid_centers",
    "gaussian_radius",
    "draw_gaussian",
    "labelled_object_cells",
]

#: Which cells of an object a head trains on (see :func:`labelled_object_cells`).
OBJECT_CELLS = ("centre", "box")

#: CenterNet's minimum IoU a box shifted within the radius keeps with the truth.
GAUSSIAN_MIN_OVERLAP = 0.7


def grid_centers(bboxes: Tensor, stride: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Float centres in grid units and their integer cells (clamped to the grid).

    Args:
        bboxes: ``(K, 4)`` xyxy in input pixels.

    Returns:
        ``(centers (K, 2) float, cells (K, 2) long)``, both as (x, y).
    """
    centers = torch.stack(((bboxes[:, 0] + bboxes[:, 2]) / 2, (bboxes[:, 1] + bboxes[:, 3]) / 2), 1) / stride
    cells = centers.floor().long()
    cells[:, 0].clamp_(0, width - 1)
    cells[:, 1].clamp_(0, height - 1)
    return centers, cells


def gaussian_radius(height: float, width: float, min_overlap: float = GAUSSIAN_MIN_OVERLAP) -> float:
    """CenterNet's radius (Law & Deng 2018, as corrected in CenterNet): the
    largest corner shift keeping IoU >= ``min_overlap``, in grid units."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


@functools.lru_cache(maxsize=128)
def _gaussian_kernel(radius: int, dtype: torch.dtype) -> Tensor:
    """The ``(2r+1, 2r+1)`` Gaussian CenterNet pastes (sigma = diameter / 6), peak 1.
    Cached: targets are built every step and radii repeat."""
    diameter = 2 * radius + 1
    sigma = diameter / 6
    ys = torch.arange(-radius, radius + 1, dtype=dtype).view(-1, 1)
    xs = torch.arange(-radius, radius + 1, dtype=dtype).view(1, -1)
    return torch.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))


def draw_gaussian(heatmap: Tensor, cx: int, cy: int, radius: int) -> None:
    """Max-paste a 2D Gaussian of ``radius`` at (cx, cy) into ``heatmap`` (H, W), in place."""
    gaussian = _gaussian_kernel(int(radius), heatmap.dtype)
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    patch = gaussian[radius - top : radius + bottom, radius - left : radius + right]
    torch.maximum(region, patch, out=region)


def box_cells(bboxes: Tensor, stride: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Every grid cell an object alone covers, plus each object's centre cell.

    A cell belongs to a box when the cell's centre lies inside it; cells inside
    two or more boxes are left out (boxes do not say which object is in front),
    except that every object keeps its centre cell.

    Args:
        bboxes: ``(K, 4)`` xyxy in input pixels.

    Returns:
        ``(object index (M,), cells (M, 2) as (x, y))``, at least one cell per object.
    """
    k = len(bboxes)
    xs = (torch.arange(width, device=bboxes.device, dtype=bboxes.dtype) + 0.5) * stride
    ys = (torch.arange(height, device=bboxes.device, dtype=bboxes.dtype) + 0.5) * stride
    x1, y1, x2, y2 = (bboxes[:, i, None, None] for i in range(4))
    inside = (xs >= x1) & (xs < x2) & (ys[:, None] >= y1) & (ys[:, None] < y2)  # (K, H, W)
    sole = inside & (inside.sum(0, keepdim=True) == 1)
    _, centre = grid_centers(bboxes, stride, height, width)
    sole[torch.arange(k, device=bboxes.device), centre[:, 1], centre[:, 0]] = True
    obj, y, x = sole.nonzero(as_tuple=True)
    return obj, torch.stack((x, y), 1)


def labelled_object_cells(
    samples: Sequence[Any], task: str, field: str, stride: int, height: int, width: int, cells: str = "centre"
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """The objects a head trains on, sample by sample.

    For each sample labelled for ``task`` (its ``tasks`` metainfo; every task
    when absent), the objects whose ``gt_instances.<field>`` is >= 0 and that
    are not ignored. Samples without such objects are skipped.

    Args:
        cells: ``'centre'``: each object's centre cell; ``'box'``: every cell
            an object alone covers plus its centre cell (:func:`box_cells`).

    Yields:
        ``(sample index, the field value of each cell's object (M,), the cells
        (M, 2) as (x, y) on the stride-``stride`` grid)``; with ``'centre'``
        one cell per kept object, in object order.
    """
    if cells not in OBJECT_CELLS:
        raise ValueError(f"cells must be one of {OBJECT_CELLS}, got {cells!r}")
    for b, s in enumerate(samples):
        if task not in s.metainfo.get("tasks", (task,)) or "gt_instances" not in s:
            continue
        gt = s.gt_instances
        if len(gt) == 0:
            continue
        values = getattr(gt, field)
        keep = values >= 0
        if "ignore" in gt:
            keep &= ~gt.ignore
        if not keep.any():
            continue
        boxes = gt.bboxes[keep].float()
        if cells == "box":
            obj, where = box_cells(boxes, stride, height, width)
            yield b, values[keep][obj.to(values.device)], where
        else:
            yield b, values[keep], grid_centers(boxes, stride, height, width)[1]
