"""Re-ID embedding head, JDE/FairMOT-style (Zhang et al., FairMOT, 2021).

A dense embedding map on the shared neck; an object's embedding is read at
its centre cell and L2-normalised. Training classifies identities with a
cosine classifier (normalised weights, fixed scale), so the learned
embeddings compare by cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtmnv3.registry import MODELS

from .base import BaseHead
from .centers import grid_centers

__all__ = ["EmbeddingHead", "gather_embeddings"]


def gather_embeddings(emb_map: Tensor, cells: Tensor) -> Tensor:
    """L2-normalised embeddings of one image's map ``(D, H, W)`` at grid cells ``(K, 2)``
    (x, y) -> ``(K, D)``; shared by :meth:`EmbeddingHead.gather` and ONNX Runtime."""
    w = emb_map.shape[-1]
    flat = emb_map.flatten(1)[:, cells[:, 1] * w + cells[:, 0]]
    return F.normalize(flat.t(), dim=1)


@MODELS.register_module()
class EmbeddingHead(BaseHead):
    """Per-object L2-normalised embeddings at object centres.

    Args:
        in_channels: channels of the neck outputs.
        strides: output strides of the neck levels.
        num_ids: number of training identities (labels ``0..num_ids-1``).
        embed_dim: embedding size (64-128 typical on the edge).
        level: neck level (0 = finest); keep it equal to the detection head's.
        feat_channels: hidden channels.
        scale: cosine-classifier logit scale.
    """

    task = "track"
    uses_neck = True

    def __init__(
        self,
        in_channels: int,
        strides: Sequence[int],
        num_ids: int,
        embed_dim: int = 64,
        level: int = 0,
        feat_channels: int = 64,
        scale: float = 16.0,
    ) -> None:
        super().__init__()
        if not isinstance(num_ids, int) or num_ids < 2:
            raise ValueError(f"num_ids must be an int >= 2, got {num_ids!r}")
        if not 0 <= level < len(strides):
            raise ValueError(f"level must index the neck's {len(strides)} levels, got {level}")
        self.level = level
        self.stride = int(strides[level])
        self.num_ids = num_ids
        self.embed_dim = embed_dim
        self.scale = scale
        self.embed = nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(feat_channels, embed_dim, 1),
        )
        self.classifier = nn.Parameter(torch.randn(num_ids, embed_dim) * 0.01)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        """Neck outputs -> embedding map ``(N, D, H, W)`` (not yet normalised)."""
        return self.embed(feats[self.level])

    def gather(self, emb_map: Tensor, cells: Tensor) -> Tensor:
        """L2-normalised embeddings of one image at grid cells ``(K, 2)`` (x, y) -> ``(K, D)``."""
        return gather_embeddings(emb_map, cells)

    def embed_boxes(self, emb_map: Tensor, bboxes: Sequence[Tensor]) -> list[Tensor]:
        """Embeddings for boxes given in input pixels (e.g. a tracker's predictions)."""
        _, _, h, w = emb_map.shape
        return [
            self.gather(emb_map[b], grid_centers(bx, self.stride, h, w)[1]) for b, bx in enumerate(bboxes)
        ]

    def loss(self, emb_map: Tensor, data_samples: Sequence[Any]) -> dict[str, Tensor]:
        _, _, h, w = emb_map.shape
        embs, ids = [], []
        for b, s in enumerate(data_samples):
            if "track" not in s.metainfo.get("tasks", ("track",)):
                continue
            gt = s.gt_instances
            if len(gt) == 0:
                continue
            keep = gt.instance_ids >= 0
            if "ignore" in gt:
                keep &= ~gt.ignore
            if not keep.any():
                continue
            cells = grid_centers(gt.bboxes[keep].float(), self.stride, h, w)[1].to(emb_map.device)
            embs.append(self.gather(emb_map[b], cells))
            ids.append(gt.instance_ids[keep])
        if not embs:
            return {"loss_emb": emb_map.sum() * 0.0 + self.classifier.sum() * 0.0}
        target = torch.cat(ids).to(emb_map.device)
        if int(target.max()) >= self.num_ids:
            raise ValueError(
                f"identity {int(target.max())} out of range for num_ids={self.num_ids}; "
                "set num_ids to the number of training identities"
            )
        logits = self.scale * torch.cat(embs) @ F.normalize(self.classifier, dim=1).t()
        return {"loss_emb": F.cross_entropy(logits, target)}

    def predict(self, emb_map: Tensor, data_samples: Sequence[Any]) -> None:
        """Adds ``embeddings`` (K, D) to each sample's ``pred_instances`` (needs the
        detection head's ``cells``)."""
        for b, s in enumerate(data_samples):
            if "pred_instances" not in s or "cells" not in s.pred_instances:
                raise RuntimeError("the embedding head predicts at detections; run the detection head first")
            s.pred_instances.embeddings = self.gather(emb_map[b], s.pred_instances.cells.to(emb_map.device))
