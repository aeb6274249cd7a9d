"""FPN-lite: the light shared neck of the detection and embedding heads.

Lateral 1x1 convs bring the chosen trunk taps to one width, a top-down path
adds each coarser level (nearest upsampling, any input size), and a
depthwise-separable 3x3 conv smooths each merged level (SSDLite/FPNLite
style, cheap on the edge).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mtmnv3.core.layers import ConvBNAct
from mtmnv3.core.registry import MODELS
from mtmnv3.heads.base import resolve_tap

__all__ = ["FPNLite"]


@MODELS.register_module()
class FPNLite(nn.Module):
    """Top-down feature pyramid over trunk taps chosen by stride.

    Args:
        feature_info: the trunk's ``feature_info``.
        strides: output strides to tap (each the deepest stage at that stride).
        out_channels: width of every output level.
        num_outs: how many levels to output, finest first (coarser ones only
            feed the top-down path; 1 gives FairMOT's single fused map).

    Shapes: ``{tap: (N, C_i, H/s_i, W/s_i)}`` -> tuple of ``num_outs`` maps
    ``(N, out_channels, H/s_i, W/s_i)``, finest first; ``self.strides`` are theirs.
    """

    def __init__(
        self,
        feature_info: Sequence[dict[str, Any]],
        strides: Sequence[int] = (8, 16, 32),
        out_channels: int = 64,
        num_outs: int = 1,
    ) -> None:
        super().__init__()
        strides = tuple(sorted(int(s) for s in strides))
        if not strides:
            raise ValueError("FPNLite needs at least one stride")
        if not 1 <= num_outs <= len(strides):
            raise ValueError(f"num_outs must be in 1..{len(strides)}, got {num_outs}")
        self.taps = tuple(resolve_tap(feature_info, stride=s) for s in strides)
        self.in_strides = strides
        self.strides = strides[:num_outs]
        self.out_channels = out_channels
        self.lateral = nn.ModuleList(
            ConvBNAct(feature_info[t]["channels"], out_channels, 1, activation=nn.ReLU) for t in self.taps
        )
        self.smooth = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(out_channels, out_channels, 3, groups=out_channels, activation=None),
                ConvBNAct(out_channels, out_channels, 1, activation=nn.ReLU),
            )
            for _ in self.strides
        )

    def forward(self, feats: dict[int, Tensor]) -> tuple[Tensor, ...]:
        laterals = [lat(feats[t]) for lat, t in zip(self.lateral, self.taps)]
        for i in range(len(laterals) - 2, -1, -1):
            laterals[i] = laterals[i] + F.interpolate(
                laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest"
            )
        return tuple(sm(x) for sm, x in zip(self.smooth, laterals))
