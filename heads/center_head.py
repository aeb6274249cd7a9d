"""Anchor-free detection head, CenterNet-style (Zhou et al., "Objects as Points", 2019).

Per class a centre heatmap, plus box size and sub-cell offset at each centre,
on one level of the shared neck. Decoding takes heatmap peaks (3x3 max-pool),
then torchvision's batched NMS removes the remaining duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.structures import InstanceData
from mtmnv3.heads.base import DETECTION, BaseHead, conv_branch
from mtmnv3.heads.centers import draw_gaussian, gaussian_radius, grid_centers
from torch import Tensor, nn
from torchvision.ops import batched_nms

from mtmnv3.core.registry import MODELS

__all__ = ["CenterDetHead", "decode_centers", "to_original_coords"]

#: Heatmap bias so the initial sigmoid is ~0.1 (CenterNet's prior, -2.19).
HEATMAP_PRIOR_BIAS = -2.19
#: Clamp of sigmoid outputs inside the focal loss, for log stability.
FOCAL_EPS = 1e-4
#: CenterNet focal loss exponents (alpha on p, beta on the Gaussian penalty).
FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0


def to_original_coords(bboxes: Tensor, metainfo: dict[str, Any]) -> Tensor:
    """Map xyxy boxes from the packed input image back to the original image
    (undoing letterbox padding ``pad_param`` = (top, bottom, left, right) and
    ``scale_factor`` = (w, h))."""
    top, _, left, _ = metainfo.get("pad_param", (0, 0, 0, 0))
    off = (left, top)
    sw, sh = metainfo.get("scale_factor", (1.0, 1.0))
    out = bboxes.clone()
    out[:, 0::2] = (out[:, 0::2] - off[0]) / sw
    out[:, 1::2] = (out[:, 1::2] - off[1]) / sh
    if "ori_shape" in metainfo:
        h, w = metainfo["ori_shape"][:2]
        out[:, 0::2] = out[:, 0::2].clamp(0, w)
        out[:, 1::2] = out[:, 1::2].clamp(0, h)
    return out


@torch.no_grad()
def decode_centers(
    outputs: dict[str, Tensor], stride: int, max_per_img: int, score_thr: float, nms_iou: float
) -> list[dict[str, Tensor]]:
    """Decode raw CenterNet maps; shared by :meth:`CenterDetHead.decode` and ONNX Runtime.

    Args:
        outputs: ``heatmap`` logits (N, C, H, W), ``wh`` and ``offset`` (N, 2, H, W).
        stride: output stride of the maps.
        max_per_img: peaks kept per image (top-k before NMS).
        score_thr: minimum score of a kept detection.
        nms_iou: IoU threshold of the batched (per-class) NMS.

    Returns:
        Per image ``bboxes`` (K, 4) xyxy in input pixels, ``scores`` (K,),
        ``labels`` (K,) and ``cells`` (K, 2) grid (x, y).
    """
    heat = outputs["heatmap"].sigmoid()
    n, c, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    k = min(max_per_img, c * h * w)
    scores, flat = peaks.reshape(n, -1).topk(k)
    labels = torch.div(flat, h * w, rounding_mode="floor")
    cell = flat % (h * w)
    ys, xs = torch.div(cell, w, rounding_mode="floor"), cell % w
    results = []
    for b in range(n):
        keep = scores[b] > score_thr
        idx, x, y = cell[b][keep], xs[b][keep], ys[b][keep]
        off = outputs["offset"][b].flatten(1)[:, idx]
        size = outputs["wh"][b].flatten(1)[:, idx].clamp(min=0)
        cx, cy = x.float() + off[0], y.float() + off[1]
        bboxes = torch.stack((cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2), 1)
        bboxes = bboxes * stride
        sc, lb = scores[b][keep], labels[b][keep]
        nms_keep = batched_nms(bboxes, sc, lb, nms_iou)
        results.append(
            dict(
                bboxes=bboxes[nms_keep],
                scores=sc[nms_keep],
                labels=lb[nms_keep],
                cells=torch.stack((x, y), 1)[nms_keep],
            )
        )
    return results


@MODELS.register_module()
class CenterDetHead(BaseHead):
    """CenterNet head on one level of the neck.

    Args:
        in_channels: channels of the neck outputs (one int for all levels).
        strides: output strides of the neck levels.
        num_classes: object classes.
        level: which neck level to use (0 = finest).
        feat_channels: hidden channels of each branch.
        branch_conv: ``'standard'`` (CenterNet's 3x3 conv per branch) or
            ``'separable'`` (depthwise 3x3 + pointwise 1x1, ~8x fewer
            multiply-adds; see :func:`~mtmnv3.heads.base.conv_branch`).
        max_per_img: detections kept per image.
        score_thr: minimum score of a kept detection.
        nms_iou: IoU threshold of the final batched NMS.
        loss_weights: weights of the heatmap, size and offset losses.
    """

    task = DETECTION
    uses_neck = True

    def __init__(
        self,
        in_channels: int,
        strides: Sequence[int],
        num_classes: int,
        level: int = 0,
        feat_channels: int = 64,
        max_per_img: int = 100,
        score_thr: float = 0.05,
        nms_iou: float = 0.6,
        loss_weights: dict[str, float] | None = None,
        branch_conv: str = "standard",
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0 <= level < len(strides):
            raise ValueError(f"level must index the neck's {len(strides)} levels, got {level}")
        self.num_classes = num_classes
        self.level = level
        self.stride = int(strides[level])
        self.max_per_img = max_per_img
        self.score_thr = score_thr
        self.nms_iou = nms_iou
        self.loss_weights = {"heatmap": 1.0, "wh": 0.1, "offset": 1.0, **(loss_weights or {})}
        self.heatmap = conv_branch(in_channels, feat_channels, num_classes, branch_conv)
        self.wh = conv_branch(in_channels, feat_channels, 2, branch_conv)
        self.offset = conv_branch(in_channels, feat_channels, 2, branch_conv)
        nn.init.constant_(self.heatmap[-1].bias, HEATMAP_PRIOR_BIAS)

    def forward(self, feats: Sequence[Tensor]) -> dict[str, Tensor]:
        """Neck outputs -> ``heatmap`` logits (N, C, H, W), ``wh`` and ``offset`` (N, 2, H, W)."""
        x = feats[self.level]
        return {"heatmap": self.heatmap(x), "wh": self.wh(x), "offset": self.offset(x)}

    # ---- training -----------------------------------------------------------------
    def _targets(
        self, samples: Sequence[Any], height: int, width: int, device: torch.device
    ) -> dict[str, Tensor]:
        n = len(samples)
        heat = torch.zeros(n, self.num_classes, height, width)
        care = torch.ones(n, 1, height, width)
        max_obj = max(1, max(len(s.gt_instances) for s in samples))
        index = torch.zeros(n, max_obj, dtype=torch.long)
        wh = torch.zeros(n, max_obj, 2)
        offset = torch.zeros(n, max_obj, 2)
        mask = torch.zeros(n, max_obj)
        # Per-object work in plain Python numbers, tensors once per image: a small
        # tensor op per object field costs dispatch overhead on every object of the batch
        # (``benchmarks/train_throughput.py`` times the training step).
        for b, s in enumerate(samples):
            gt = s.gt_instances
            if len(gt) == 0:
                continue
            bboxes = gt.bboxes.detach().float().cpu()
            ignore = gt.ignore.tolist() if "ignore" in gt else [False] * len(gt)
            labels = gt.labels.tolist()
            centers, cells = grid_centers(bboxes, self.stride, height, width)
            rows, cell_index, sizes = [], [], []
            for k, ((x1, y1, x2, y2), (cx, cy)) in enumerate(
                zip((bboxes / self.stride).tolist(), cells.tolist())
            ):
                if ignore[k]:
                    xa, ya = max(0, int(x1)), max(0, int(y1))
                    care[b, 0, ya : int(y2) + 1, xa : int(x2) + 1] = 0
                    continue
                bw, bh = x2 - x1, y2 - y1
                if bw <= 0 or bh <= 0:
                    continue
                draw_gaussian(heat[b, labels[k]], cx, cy, max(0, int(gaussian_radius(bh, bw))))
                rows.append(k)
                cell_index.append(cy * width + cx)
                sizes.append((bw, bh))
            if rows:
                k = torch.tensor(rows)
                index[b, k] = torch.tensor(cell_index)
                wh[b, k] = torch.tensor(sizes)
                offset[b, k] = centers[k] - cells[k].float()
                mask[b, k] = 1
        # Centres stay positives even where an ignore region overlaps them.
        care = torch.maximum(care, (heat == 1).any(1, keepdim=True).float())
        out = dict(heatmap=heat, care=care, index=index, wh=wh, offset=offset, mask=mask)
        return {k: v.to(device) for k, v in out.items()}

    def loss(self, outputs: dict[str, Tensor], data_samples: Sequence[Any]) -> dict[str, Tensor]:
        label = self.label_kind
        keep = [i for i, s in enumerate(data_samples) if label in s.metainfo.get("tasks", (label,))]
        if not keep:
            zero = sum(v.sum() for v in outputs.values()) * 0.0
            return {"loss_det_heatmap": zero, "loss_det_wh": zero, "loss_det_offset": zero}
        outputs = {k: v[keep] for k, v in outputs.items()}
        _, _, h, w = outputs["heatmap"].shape
        t = self._targets([data_samples[i] for i in keep], h, w, outputs["heatmap"].device)
        pred = outputs["heatmap"].float().sigmoid().clamp(FOCAL_EPS, 1 - FOCAL_EPS)
        pos = t["heatmap"].eq(1).float()
        neg = (1 - pos) * t["care"]
        pos_loss = torch.log(pred) * (1 - pred).pow(FOCAL_ALPHA) * pos
        neg_loss = torch.log(1 - pred) * pred.pow(FOCAL_ALPHA) * (1 - t["heatmap"]).pow(FOCAL_BETA) * neg
        num_pos = pos.sum().clamp(min=1.0)
        heat_loss = -(pos_loss.sum() + neg_loss.sum()) / num_pos
        mask = t["mask"].unsqueeze(-1)
        denom = mask.sum().clamp(min=1.0) * 2

        def gather(x: Tensor) -> Tensor:  # (N, 2, H, W) -> (N, M, 2) at object centres
            return x.flatten(2).gather(2, t["index"].unsqueeze(1).expand(-1, 2, -1)).transpose(1, 2)

        wh_loss = (F.l1_loss(gather(outputs["wh"]), t["wh"], reduction="none") * mask).sum() / denom
        off_loss = (F.l1_loss(gather(outputs["offset"]), t["offset"], reduction="none") * mask).sum() / denom
        lw = self.loss_weights
        return {
            "loss_det_heatmap": lw["heatmap"] * heat_loss,
            "loss_det_wh": lw["wh"] * wh_loss,
            "loss_det_offset": lw["offset"] * off_loss,
        }

    # ---- inference ----------------------------------------------------------------
    @torch.no_grad()
    def decode(self, outputs: dict[str, Tensor]) -> list[dict[str, Tensor]]:
        """Peaks -> per image ``bboxes`` (input pixels), ``scores``, ``labels``, ``cells`` (x, y)."""
        return decode_centers(outputs, self.stride, self.max_per_img, self.score_thr, self.nms_iou)

    def predict(self, outputs: dict[str, Tensor], data_samples: Sequence[Any]) -> None:
        for s, det in zip(data_samples, self.decode(outputs)):
            inst = InstanceData()
            inst.bboxes = to_original_coords(det["bboxes"], s.metainfo)
            inst.scores = det["scores"]
            inst.labels = det["labels"]
            inst.cells = det["cells"]
            s.pred_instances = inst
