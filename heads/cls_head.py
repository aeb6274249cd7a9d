"""Image classification head, MobileNetV3-style (Howard et al. 2019, Fig. 5):
global pool -> 1x1 conv -> hard-swish -> dropout -> linear.

The pool is global average pooling by default. ``pool='attn'`` learns where
to look instead: a 1x1 conv scores every position and the features are
averaged with the softmax of those scores (attention pooling, as in
attention-based MIL, Ilse et al. 2018). In cluttered frames whose label is
one object among several, average pooling mixes every object's features into
the vector the classifier sees; attention pooling lets the head weight the
labelled object."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mtmnv3.heads.base import CLASSIFICATION, DETECTION, TASK_LABELS, BaseHead, resolve_tap
from mtmnv3.heads.centers import OBJECT_CELLS, labelled_object_cells
from torch import Tensor, nn

from mtmnv3.core.registry import MODELS

__all__ = ["AttentionPool2d", "ClsHead"]


class AttentionPool2d(nn.Module):
    """Softmax-attention pooling over positions: ``(N, C, H, W) -> (N, C, 1, 1)``.

    ``heads`` score maps (a 1x1 conv) each weight one group of ``C / heads``
    channels. The score conv starts at zero, so training starts from plain
    average pooling.
    """

    def __init__(self, channels: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.score = nn.Conv2d(channels, heads, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        attn = self.score(x).flatten(2).softmax(-1)  # (N, heads, HW)
        groups = x.reshape(n, self.heads, c // self.heads, h * w)
        pooled = (groups * attn.unsqueeze(2)).sum(-1)  # (N, heads, C / heads)
        return pooled.reshape(n, c, 1, 1)


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
        pool: ``'avg'`` (global average pooling) or ``'attn'`` (softmax
            attention over positions, ``attn_heads`` maps each pooling an
            equal group of channels).
        attn_heads: number of attention maps for ``pool='attn'`` (must
            divide the tap's channels).
        object_loss_weight: weight of an auxiliary per-object loss (0: off).
            Frames labelled for detection carry every object's class (the
            frame classes' first C entries); the tap's feature at each
            object's centre goes through the same classifier and is trained
            on that object's class. A frame label teaches one object per
            frame; this teaches all of them, in the features the frame
            classifier reads. Training only; inference is unchanged.
        object_cells: where the object loss reads each object: ``'centre'``
            (its centre cell) or ``'box'`` (every cell it alone covers, plus
            its centre cell; the loss averages over cells, so objects count
            by their area, as the frame label does).
    """

    POOLS = ("avg", "attn")

    task = CLASSIFICATION

    def __init__(
        self,
        feature_info: Sequence[dict[str, Any]],
        num_classes: int,
        tap: int | None = None,
        stride: int | None = None,
        hidden_channels: int = 1024,
        dropout: float = 0.2,
        label_smoothing: float = 0.0,
        pool: str = "avg",
        attn_heads: int = 1,
        object_loss_weight: float = 0.0,
        object_cells: str = "centre",
    ) -> None:
        super().__init__()
        if object_cells not in OBJECT_CELLS:
            raise ValueError(f"object_cells must be one of {OBJECT_CELLS}, got {object_cells!r}")
        self.object_cells = object_cells
        if (
            isinstance(object_loss_weight, bool)
            or not isinstance(object_loss_weight, (int, float))
            or object_loss_weight < 0
        ):
            raise ValueError(f"object_loss_weight must be a number >= 0, got {object_loss_weight!r}")
        self.object_loss_weight = float(object_loss_weight)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if tap is None and stride is None:
            tap = -1
        self.taps = (resolve_tap(feature_info, tap, stride),)
        self.tap_stride = int(feature_info[self.taps[0]]["stride"])
        in_channels = feature_info[self.taps[0]]["channels"]
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        if pool not in self.POOLS:
            raise ValueError(f"pool must be one of {self.POOLS}, got {pool!r}")
        if pool == "attn":
            if not isinstance(attn_heads, int) or attn_heads < 1 or in_channels % attn_heads:
                raise ValueError(
                    f"attn_heads must be a positive int dividing the tap's {in_channels} channels, got {attn_heads!r}"
                )
            self.pool: nn.Module = AttentionPool2d(in_channels, attn_heads)
        else:
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

    def forward(self, feats: dict[int, Tensor]) -> Tensor | dict[str, Tensor]:
        """``{tap: (N, C, H, W)}`` -> logits ``(N, num_classes)``; in training with
        the object loss on, ``{'logits': ..., 'tap': (N, C, H, W)}``."""
        tap = feats[self.taps[0]]
        logits = self.classify(self.pool(tap))
        if self.training and self.object_loss_weight > 0:
            return {"logits": logits, "tap": tap}  # the object loss reads the tap
        return logits

    def classify(self, pooled: Tensor) -> Tensor:
        """Pooled features ``(N, C, 1, 1)`` -> logits ``(N, num_classes)``."""
        return self.fc(torch.flatten(self.pre_logits(pooled), 1))

    def object_loss(self, tap: Tensor, data_samples: Sequence[Any]) -> Tensor:
        """Cross-entropy of every labelled object's class from the tap's feature
        at the object's cells (``object_cells``), through the frame classifier."""
        _, _, h, w = tap.shape
        feats, labels = [], []
        for b, target, cells in labelled_object_cells(
            data_samples, TASK_LABELS[DETECTION], "labels", self.tap_stride, h, w, self.object_cells
        ):
            cells = cells.to(tap.device)
            feats.append(tap[b, :, cells[:, 1], cells[:, 0]].t())
            labels.append(target)
        if not feats:
            return tap.sum() * 0.0
        target = torch.cat(labels).to(tap.device)
        if int(target.max()) >= self.num_classes:
            raise ValueError(
                f"object label {int(target.max())} out of range for num_classes={self.num_classes}"
            )
        logits = self.classify(torch.cat(feats)[:, :, None, None])
        return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)

    def loss(self, outputs: Tensor | Mapping[str, Tensor], data_samples: Sequence[Any]) -> dict[str, Tensor]:
        """Frame cross-entropy, plus the object loss when ``outputs`` carry the tap
        (a training-mode forward with ``object_loss_weight > 0``). Bare logits,
        e.g. from an eval-mode forward as the attacks use, give the frame loss."""
        if isinstance(outputs, Mapping):
            losses = self.frame_loss(outputs["logits"], data_samples)
            losses["loss_cls_obj"] = self.object_loss_weight * self.object_loss(outputs["tap"], data_samples)
            return losses
        return self.frame_loss(outputs, data_samples)

    def frame_loss(self, logits: Tensor, data_samples: Sequence[Any]) -> dict[str, Tensor]:
        labels = torch.stack([s.gt_label for s in data_samples]).to(logits.device)
        has = torch.tensor(
            [self.label_kind in s.metainfo.get("tasks", (self.label_kind,)) for s in data_samples],
            device=labels.device,
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

    def predict(self, logits: Tensor | Mapping[str, Tensor], data_samples: Sequence[Any]) -> None:
        if isinstance(logits, Mapping):
            logits = logits["logits"]
        scores = logits.softmax(-1)
        for s, score in zip(data_samples, scores):
            s.pred_score = score
            s.pred_label = score.argmax()
