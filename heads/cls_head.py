"""Image classification head, MobileNetV3-style (Howard et al. 2019, Fig. 5):
global pool -> 1x1 conv -> hard-swish -> dropout -> linear."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtmnv3.registry import MODELS

from .base import BaseHead, resolve_tap

__all__ = ["ClsHead"]


@MODELS.register_module()
class ClsHead(BaseHead):
    """Classification from one trunk tap (default: the last stage).

    Args:
        feature_info: the trunk's ``feature_info``.
        num_classes: number of image classes.
        tap: trunk stage index to read (negatives allowed); or give ``stride``.
        stride: read the deepest stage with this output stride instead.
        hidden_channels: width of the 1x1 conv after pooling (0: linear only).
        dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
    """

    task = "cls"

    def __init__(
        self,
        feature_info: Sequence[dict[str, Any]],
        num_classes: int,
        tap: int | None = None,
        stride: int | None = None,
        hidden_channels: int = 1024,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if tap is None and stride is None:
            tap = -1
        self.taps = (resolve_tap(feature_info, tap, stride),)
        in_channels = feature_info[self.taps[0]]["channels"]
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden_channels > 0:
            self.pre_logits = nn.Sequential(
                nn.Conv2d(in_channels, hidden_channels, 1), nn.Hardswish(inplace=True), nn.Dropout(dropout)
            )
            fc_in = hidden_channels
        else:
            self.pre_logits = nn.Dropout(dropout)
            fc_in = in_channels
        self.fc = nn.Linear(fc_in, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: dict[int, Tensor]) -> Tensor:
        """``{tap: (N, C, H, W)}`` -> logits ``(N, num_classes)``."""
        x = self.pre_logits(self.pool(feats[self.taps[0]]))
        return self.fc(torch.flatten(x, 1))

    def loss(self, logits: Tensor, data_samples: Sequence[Any]) -> dict[str, Tensor]:
        labels = torch.stack([s.gt_label for s in data_samples]).to(logits.device)
        has = torch.tensor(
            ["cls" in s.metainfo.get("tasks", ("cls",)) for s in data_samples], device=labels.device
        )
        keep = has & (labels >= 0)
        if not keep.any():
            return {"loss_cls": logits.sum() * 0.0}
        if int(labels[keep].max()) >= self.num_classes:
            raise ValueError(
                f"class label {int(labels[keep].max())} out of range for num_classes={self.num_classes}"
            )
        loss = F.cross_entropy(logits[keep], labels[keep], label_smoothing=self.label_smoothing)
        return {"loss_cls": loss}

    def predict(self, logits: Tensor, data_samples: Sequence[Any]) -> None:
        scores = logits.softmax(-1)
        for s, score in zip(data_samples, scores):
            s.pred_score = score
            s.pred_label = score.argmax()
