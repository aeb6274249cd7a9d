"""The plug-in head contract.

A head declares which trunk stage taps (or the shared neck) it reads, and
implements ``forward`` (features -> raw outputs), ``loss`` (raw outputs +
data samples -> dict of named losses) and ``predict`` (raw outputs -> fields
written onto the data samples). Heads read channels and strides from the
trunk's ``feature_info`` (or the neck's ``out_channels``/``strides``), never
from hard-coded numbers.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

__all__ = ["BaseHead", "BRANCH_CONVS", "conv_branch", "resolve_tap"]

#: Kinds of 3x3 conv in a dense head branch (see :func:`conv_branch`).
BRANCH_CONVS = ("standard", "separable")


def resolve_tap(
    feature_info: Sequence[dict[str, Any]], tap: int | None = None, stride: int | None = None
) -> int:
    """Pick a stage index by position (``tap``, negatives allowed) or by stride
    (the deepest stage with that output stride)."""
    n = len(feature_info)
    if (tap is None) == (stride is None):
        raise ValueError(f"give exactly one of tap or stride, got tap={tap!r}, stride={stride!r}")
    if tap is not None:
        if not isinstance(tap, int) or not -n <= tap < n:
            raise ValueError(f"tap must be an int in [{-n}, {n - 1}], got {tap!r}")
        return tap % n
    matches = [i for i, f in enumerate(feature_info) if f["stride"] == stride]
    if not matches:
        raise ValueError(
            f"no trunk stage has stride {stride}; strides are {[f['stride'] for f in feature_info]}"
        )
    return matches[-1]


def conv_branch(
    in_channels: int, feat_channels: int, out_channels: int, conv: str = "standard"
) -> nn.Sequential:
    """A dense prediction branch: 3x3 conv, ReLU, 1x1 conv to ``out_channels``.

    ``conv='standard'`` is CenterNet's/FairMOT's full 3x3 conv.
    ``conv='separable'`` splits it into a depthwise 3x3 and a pointwise 1x1
    (SSDLite's heads, Sandler et al. 2018): ~8x fewer multiply-adds at 64
    channels. The last module is always the output conv.
    """
    if conv not in BRANCH_CONVS:
        raise ValueError(f"conv must be one of {BRANCH_CONVS}, got {conv!r}")
    if conv == "separable":
        first: list[nn.Module] = [
            nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels),
            nn.Conv2d(in_channels, feat_channels, 1),
        ]
    else:
        first = [nn.Conv2d(in_channels, feat_channels, 3, padding=1)]
    return nn.Sequential(*first, nn.ReLU(inplace=True), nn.Conv2d(feat_channels, out_channels, 1))


class BaseHead(nn.Module, metaclass=abc.ABCMeta):
    """Base class of plug-in heads.

    Attributes:
        task: the label kind the head trains on: ``'cls'``, ``'det'`` or ``'track'``.
        taps: trunk stage indices the head reads directly (empty if it reads the neck).
        uses_neck: whether the head reads the shared neck's outputs.
    """

    task: str = ""
    uses_neck: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.taps: tuple[int, ...] = ()

    @abc.abstractmethod
    def forward(self, feats: Sequence[Tensor]) -> Any:
        """Trunk taps ``{stage: tensor}`` (or neck outputs) -> raw head outputs."""

    @abc.abstractmethod
    def loss(self, outputs: Any, data_samples: Sequence[Any]) -> dict[str, Tensor]:
        """Named losses on the samples that carry this head's labels."""

    @abc.abstractmethod
    def predict(self, outputs: Any, data_samples: Sequence[Any]) -> None:
        """Write predictions onto the data samples."""
