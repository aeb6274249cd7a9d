"""Generic layers the trunk is built from.

The module structure (``Sequential`` of conv, norm, activation; an inverted
residual whose body is ``.block``) deliberately mirrors torchvision's
MobileNetV3 so that its state dicts load by a prefix rename alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "ACTIVATIONS",
    "make_divisible",
    "get_activation",
    "ConvBNAct",
    "fold_batchnorm",
    "SqueezeExcite",
    "InvertedResidual",
    "upgrade_state_dict",
]

#: Activation names accepted by the trunk, mapped to their module class.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "hswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "relu": nn.ReLU,
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` (as the MobileNet papers do).

    The result never drops more than 10% below ``value``.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def get_activation(name: str) -> type[nn.Module]:
    """Return the activation class for ``name`` ('hswish', 'relu6' or 'relu')."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional activation, 'same' padding."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        dilation: int = 1,
    ) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            norm_layer(out_channels),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every :class:`ConvBNAct`'s BatchNorm into its conv, in place, for inference.

    The conv gets the BatchNorm's scale and shift as weight and bias and the
    BatchNorm becomes an ``Identity``; outputs stay the same up to float
    rounding and one op per layer fewer runs. Only for a model in eval mode
    (the running statistics are what is folded) that will not be trained again
    (fold a copy when the original is still needed).

    Returns:
        How many BatchNorms were folded.

    Raises:
        ValueError: If the model is in training mode.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call .eval() first)")
    folded = 0
    for module in model.modules():
        if isinstance(module, ConvBNAct) and isinstance(module[1], nn.BatchNorm2d):
            conv = module[0]
            channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last)
            fused = fuse_conv_bn_eval(conv, module[1])
            if channels_last:
                fused.weight.data = fused.weight.data.contiguous(memory_format=torch.channels_last)
            module[0], module[1] = fused, nn.Identity()
            folded += 1
    return folded


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation with a hard-sigmoid gate (MobileNetV3, Sec. 5.3).

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def gate(self, x: Tensor) -> Tensor:
        """The per-channel gate in [0, 1], shape ``(N, C, 1, 1)``."""
        scale = self.avgpool(x)
        scale = self.activation(self.fc1(scale))
        return self.scale_activation(self.fc2(scale))

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(x) * x


class InvertedResidual(nn.Module):
    """MobileNetV3 bottleneck: expand 1x1 -> depthwise kxk -> [SE] -> project 1x1.

    The expansion conv is omitted when the expansion size equals the input
    channels (as in the paper's first block). A residual connection is used
    when stride is 1 and input and output channels match.

    ``se_slot=True`` (with ``use_se=False``) keeps an :class:`~torch.nn.Identity`
    where the SE module would be, so a variant that removes the paper's SE keeps
    the paper's layer indices and loads stock (and torchvision) weights by name:
    the SE weights are the only keys left over. Older checkpoints of such
    variants, saved without the slot, still load (see ``_load_from_state_dict``).
    """

    def __init__(
        self,
        in_channels: int,
        expanded_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        activation: type[nn.Module],
        use_se: bool,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        dilation: int = 1,
        se_slot: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded_channels != in_channels:
            layers.append(
                ConvBNAct(in_channels, expanded_channels, 1, activation=activation, norm_layer=norm_layer)
            )
        layers.append(
            ConvBNAct(
                expanded_channels,
                expanded_channels,
                kernel_size,
                stride=1 if dilation > 1 else stride,
                groups=expanded_channels,
                activation=activation,
                norm_layer=norm_layer,
                dilation=dilation,
            )
        )
        if use_se:
            layers.append(SqueezeExcite(expanded_channels, make_divisible(expanded_channels // 4, 8)))
        elif se_slot:
            layers.append(nn.Identity())
        #: index of an empty SE slot in ``block`` (None: no slot)
        self.se_slot: int | None = len(layers) - 1 if se_slot and not use_se else None
        layers.append(ConvBNAct(expanded_channels, out_channels, 1, activation=None, norm_layer=norm_layer))
        self.block = nn.Sequential(*layers)
        self.out_channels = out_channels

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):  # type: ignore[no-untyped-def]
        if self.se_slot is not None:
            _shift_pre_slot_keys(state_dict, prefix, self.se_slot)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


def _shift_pre_slot_keys(state: dict[str, Any], prefix: str, slot: int) -> None:
    """Rename, in place, a pre-slot checkpoint's projection keys of one block.

    A checkpoint saved before the empty SE slot existed has the projection at
    the slot's index (``block.{slot}.0.weight`` present, ``block.{slot+1}.*``
    absent); its keys move one place on.
    """
    here, after = f"{prefix}block.{slot}.", f"{prefix}block.{slot + 1}."
    if f"{here}0.weight" not in state or any(k.startswith(after) for k in state):
        return
    for key in [k for k in state if k.startswith(here)]:
        state[after + key[len(here) :]] = state.pop(key)


def upgrade_state_dict(model: nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``state`` with pre-slot SE-free block keys renamed to ``model``'s
    layout, and older state of modules with an ``upgrade_legacy_state(state,
    prefix)`` method converted by it.

    ``load_state_dict`` does this by itself; call this to compare key sets first.
    """
    state = dict(state)
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, InvertedResidual) and module.se_slot is not None:
            _shift_pre_slot_keys(state, prefix, module.se_slot)
        upgrade = getattr(module, "upgrade_legacy_state", None)
        if callable(upgrade):  # e.g. FAMO's older optimiser state
            upgrade(state, prefix)
    return state
