"""Re-ID embedding head, JDE/FairMOT-style (Zhang et al., FairMOT, 2021).

A dense embedding map on the shared neck; an object's embedding is read at
its centre cell and L2-normalised, so embeddings compare by cosine
similarity. Two training losses:

* ``'id'`` (FairMOT/JDE): classify every training identity with a cosine
  classifier (normalised weights, fixed scale). Needs ``num_ids`` >= the
  number of identities; the classifier's cost grows with it (at 32k ids and
  64 dims it is a large share of a small model's training step).
* ``'contrastive'`` (supervised contrastive, Khosla et al. 2020, as used
  for tracking by QDTrack, Pang et al. 2021): within a batch, each object's
  other views (same identity, other frames) are pulled together and every
  other object pushed away. No per-identity weights, so the number of
  training identities is unbounded; it needs batches holding several frames
  of the same video (``VideoGroupSampler``). Objects of the same scene are
  the hard negatives association has to tell apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mtmnv3.heads.base import EMBEDDING, BaseHead, conv_branch
from mtmnv3.heads.centers import grid_centers, labelled_object_cells
from torch import Tensor, nn

from mtmnv3.core.registry import MODELS

__all__ = ["EmbeddingHead", "contrastive_identity_loss", "gather_embeddings"]


def contrastive_identity_loss(embs: Tensor, ids: Tensor, videos: Tensor, temperature: float = 0.1) -> Tensor:
    """Supervised contrastive loss over the objects of a batch (Khosla et al. 2020, "L_out").

    Args:
        embs: L2-normalised embeddings ``(M, D)``.
        ids: identity of each object ``(M,)``.
        videos: video of each object ``(M,)``; identities are compared within
            a video only (ids of different videos may coincide).
        temperature: softmax temperature.

    Returns:
        The mean over anchors that have at least one positive (another object
        of the same identity and video) of ``-mean_p log softmax_a(s_ia / T)[p]``
        with the softmax over every other object ``a``; zero (with a gradient
        path) when no anchor has a positive.
    """
    m = embs.shape[0]
    sim = embs @ embs.t() / temperature
    self_mask = torch.eye(m, dtype=torch.bool, device=embs.device)
    pos = (ids[:, None] == ids[None, :]) & (videos[:, None] == videos[None, :]) & ~self_mask
    has_pos = pos.any(1)
    if not bool(has_pos.any()):
        return embs.sum() * 0.0
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    per_anchor = -(log_prob * pos).sum(1)[has_pos] / pos.sum(1)[has_pos]
    return per_anchor.mean()


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
        num_ids: number of training identities (labels ``0..num_ids-1``);
            required by ``loss_type='id'``, unused by ``'contrastive'``.
        embed_dim: embedding size (64-128 typical on the edge).
        level: neck level (0 = finest); keep it equal to the detection head's.
        feat_channels: hidden channels.
        scale: cosine-classifier logit scale (``'id'``).
        loss_type: ``'id'`` (identity classification) or ``'contrastive'``.
        temperature: softmax temperature of the contrastive loss.
        branch_conv: ``'standard'`` (FairMOT's 3x3 conv) or ``'separable'``
            (depthwise 3x3 + pointwise 1x1; see
            :func:`~mtmnv3.heads.base.conv_branch`).
    """

    LOSS_TYPES = ("id", "contrastive")

    task = EMBEDDING
    uses_neck = True

    def __init__(
        self,
        in_channels: int,
        strides: Sequence[int],
        num_ids: int | None = None,
        embed_dim: int = 64,
        level: int = 0,
        feat_channels: int = 64,
        scale: float = 16.0,
        loss_type: str = "id",
        temperature: float = 0.1,
        branch_conv: str = "standard",
    ) -> None:
        super().__init__()
        if loss_type not in self.LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {self.LOSS_TYPES}, got {loss_type!r}")
        if loss_type == "id" and (not isinstance(num_ids, int) or num_ids < 2):
            raise ValueError(f"num_ids must be an int >= 2 for loss_type='id', got {num_ids!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.loss_type = loss_type
        self.temperature = float(temperature)
        if not 0 <= level < len(strides):
            raise ValueError(f"level must index the neck's {len(strides)} levels, got {level}")
        self.level = level
        self.stride = int(strides[level])
        self.num_ids = num_ids
        self.embed_dim = embed_dim
        self.scale = scale
        self.embed = conv_branch(in_channels, feat_channels, embed_dim, branch_conv)
        # Only the identity loss has per-identity weights.
        self.classifier = nn.Parameter(torch.randn(num_ids, embed_dim) * 0.01) if loss_type == "id" else None

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
        embs, ids, videos = [], [], []
        for b, target, cells in labelled_object_cells(
            data_samples, self.label_kind, "instance_ids", self.stride, h, w
        ):
            embs.append(self.gather(emb_map[b], cells.to(emb_map.device)))
            ids.append(target)
            video = int(data_samples[b].metainfo.get("video_id", -1))
            videos.append(torch.full((len(target),), video, dtype=torch.long))
        if not embs:
            zero = emb_map.sum() * 0.0
            return {"loss_emb": zero if self.classifier is None else zero + self.classifier.sum() * 0.0}
        if self.loss_type == "contrastive":
            loss = contrastive_identity_loss(
                torch.cat(embs),
                torch.cat(ids).to(emb_map.device),
                torch.cat(videos).to(emb_map.device),
                self.temperature,
            )
            return {"loss_emb": loss}
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
