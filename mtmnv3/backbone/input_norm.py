"""Input standardisation before a trunk's first stage: the ``input_norm`` stem option.

Every trunk (:class:`~mtmnv3.backbone.trunk.MobileNetV3Trunk`,
:class:`~mtmnv3.backbone.timm_trunk.TimmTrunk`) takes ``input_norm``:

``None`` (default)
    nothing: the trunk sees the data preprocessor's output as before, and its
    state dict and outputs are unchanged.
``'per_image'``
    each image is standardised by its own per-channel mean and standard
    deviation, ``(x - mean_c) / sqrt(var_c + eps)``. A brightness or
    contrast change of a channel, ``a * x + b`` with ``a > 0``, cancels
    (up to ``eps``), and so does a colour cast that scales the channels.
    No parameters.
``'per_image_global'``
    the same with one mean and one deviation over all channels of an image:
    brightness and contrast cancel, relative colour stays.
``'learned'``
    ``'per_image'`` followed by a learned per-channel affine
    (``weight * z + bias``, instance normalisation with affine parameters)
    plus a learned per-channel share of the unnormalised input
    (``+ blend * x``). ``blend`` starts at 0, so the stem starts invariant;
    training may buy back absolute brightness where it pays.

The module runs as the first module of stage 0: it counts in stage 0's
``feature_info`` (MACs, params), is frozen with stage 0, and runs in
``forward``, ``forward_stages`` and ``forward_taps`` alike. It exports to ONNX
as reductions and element-wise ops. Its MACs are the two reductions per input
element (the sums of ``x`` and ``x**2``); the element-wise normalisation is
not counted, the convention of :mod:`mtmnv3.backbone.complexity` for
activations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "INPUT_NORMS",
    "INPUT_NORM_EPS",
    "LearnedInputNorm",
    "PerImageStandardize",
    "build_input_norm",
    "check_input_norm",
]

#: The ``input_norm`` values besides ``None`` (no input normalisation).
INPUT_NORMS = ("per_image", "per_image_global", "learned")
#: Added to the variance before the square root: a flat image (variance 0)
#: maps to 0 rather than NaN. Small against the variance of a normalised image
#: (about 1), and against that of a low-contrast one (contrast severity 5 of
#: the shift suite keeps about a tenth of the deviation, a variance near 1e-2).
INPUT_NORM_EPS = 1e-5
#: MACs per input element: the sums of x and of x**2 (mean and variance).
_MACS_PER_ELEMENT = 2


def check_input_norm(input_norm: str | None) -> str | None:
    """Return ``input_norm`` if it is ``None`` or one of :data:`INPUT_NORMS`.

    Raises:
        ValueError: any other value; the message names the allowed ones.
    """
    if input_norm is None or (isinstance(input_norm, str) and input_norm in INPUT_NORMS):
        return input_norm
    raise ValueError(f"unknown input_norm {input_norm!r}; expected None or one of {list(INPUT_NORMS)}")


class PerImageStandardize(nn.Module):
    """Standardise each image by its own mean and standard deviation.

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.

    Args:
        per_channel: statistics per channel (``True``) or over all channels of an image.
        eps: added to the variance (see :data:`INPUT_NORM_EPS`).
    """

    def __init__(self, per_channel: bool = True, eps: float = INPUT_NORM_EPS) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        self.per_channel = bool(per_channel)
        self.eps = float(eps)

    def standardize(self, x: Tensor) -> Tensor:
        dims = (2, 3) if self.per_channel else (1, 2, 3)
        mean = x.mean(dim=dims, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=dims, keepdim=True)
        return centred / (var + self.eps).sqrt()

    def forward(self, x: Tensor) -> Tensor:
        return self.standardize(x)

    def macs(self, height: int, width: int, channels: int = 3) -> int:
        """MACs on one ``channels x height x width`` image (the two reductions)."""
        return _MACS_PER_ELEMENT * channels * height * width

    def extra_repr(self) -> str:
        return f"per_channel={self.per_channel}, eps={self.eps}"


class LearnedInputNorm(PerImageStandardize):
    """Per-image, per-channel standardisation with a learned affine and a learned share of the input.

    ``y = weight * standardize(x) + bias + blend * x``, all three per channel;
    starts as ``standardize(x)`` (weight 1, bias 0, blend 0).

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.

    Args:
        channels: input channels.
        eps: added to the variance (see :data:`INPUT_NORM_EPS`).
    """

    def __init__(self, channels: int = 3, eps: float = INPUT_NORM_EPS) -> None:
        super().__init__(per_channel=True, eps=eps)
        if not (isinstance(channels, int) and channels > 0):
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.blend = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, self.channels, 1, 1)
        z = self.standardize(x)
        return self.weight.view(shape) * z + self.bias.view(shape) + self.blend.view(shape) * x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, eps={self.eps}"


def build_input_norm(input_norm: str | None, channels: int = 3) -> PerImageStandardize | None:
    """The module for an ``input_norm`` value (``None`` for ``None``).

    Raises:
        ValueError: an unknown value (see :func:`check_input_norm`).
    """
    input_norm = check_input_norm(input_norm)
    if input_norm is None:
        return None
    if input_norm == "learned":
        return LearnedInputNorm(channels)
    return PerImageStandardize(per_channel=input_norm == "per_image")
