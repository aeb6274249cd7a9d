"""Data structures shared by datasets, models and metrics.

:class:`MultiTaskDataSample` is the one sample container every task reads:
the ground truth of detection and tracking lives in ``gt_instances`` and the
image-level classification label in ``gt_label``. Prediction fields
(``pred_instances``, ``pred_label``, ``pred_score``) are free for models to
set. It is an :class:`mmengine.structures.BaseDataElement`, so mmengine's
collate functions leave it as a list and ``.to(device)`` moves its tensors.
"""

from __future__ import annotations

import torch
from mmengine.structures import BaseDataElement, InstanceData

__all__ = ["MultiTaskDataSample", "NO_LABEL"]

#: Value of ``gt_label`` (and of unknown instance ids) when a sample has no such label.
NO_LABEL = -1


class MultiTaskDataSample(BaseDataElement):
    """One image's inputs metadata and labels for every task.

    Metainfo (set by ``PackMultiTaskInputs``): ``img_id``, ``video_id``,
    ``frame_id``, ``img_path``, ``ori_shape`` (H, W), ``img_shape`` (H, W),
    ``scale_factor`` (w, h), ``flip``, ``flip_direction``, ``tasks`` and, for
    synthetic data, the scene knobs (``domain``, ``brightness``, ...).

    Data fields:
        gt_instances (InstanceData): ``bboxes`` float32 (K, 4) xyxy pixels of
            the packed image, ``labels`` int64 (K,), ``instance_ids`` int64
            (K,) (-1 unknown), ``visibility`` float32 (K,), ``ignore`` bool (K,).
        gt_label (Tensor): int64 scalar (shape ``()``), -1 when the image has
            no classification label.
        pred_instances (InstanceData): set by detection/tracking models.
        pred_label (Tensor): set by classification models.
    """

    @property
    def gt_instances(self) -> InstanceData:
        return self._gt_instances

    @gt_instances.setter
    def gt_instances(self, value: InstanceData) -> None:
        self.set_field(value, "_gt_instances", dtype=InstanceData)

    @gt_instances.deleter
    def gt_instances(self) -> None:
        del self._gt_instances

    @property
    def pred_instances(self) -> InstanceData:
        return self._pred_instances

    @pred_instances.setter
    def pred_instances(self, value: InstanceData) -> None:
        self.set_field(value, "_pred_instances", dtype=InstanceData)

    @pred_instances.deleter
    def pred_instances(self) -> None:
        del self._pred_instances

    @property
    def gt_label(self) -> torch.Tensor:
        return self._gt_label

    @gt_label.setter
    def gt_label(self, value: torch.Tensor | int) -> None:
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(int(value), dtype=torch.long)
        if value.dim() != 0:
            raise ValueError(f"gt_label must be a scalar tensor, got shape {tuple(value.shape)}")
        self.set_field(value.long(), "_gt_label", dtype=torch.Tensor)

    @gt_label.deleter
    def gt_label(self) -> None:
        del self._gt_label

    @property
    def pred_label(self) -> torch.Tensor:
        return self._pred_label

    @pred_label.setter
    def pred_label(self, value: torch.Tensor) -> None:
        self.set_field(value, "_pred_label", dtype=torch.Tensor)

    @pred_label.deleter
    def pred_label(self) -> None:
        del self._pred_label

    @property
    def has_cls_label(self) -> bool:
        """Whether the sample carries a classification label (``gt_label >= 0``)."""
        return "gt_label" in self and int(self.gt_label) != NO_LABEL
