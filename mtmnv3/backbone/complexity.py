"""Analytic MAC and parameter counts (no forward pass needed).

MACs count the multiply-accumulates of convolutions and linear layers, the
convention of the MobileNet papers; element-wise ops (activations, the SE
scale, residual adds) are not counted.
"""

from __future__ import annotations

from torch import nn

from mtmnv3.core.layers import SqueezeExcite

__all__ = ["conv_output_size", "module_macs", "num_params"]


def conv_output_size(size: int, conv: nn.Conv2d, dim: int) -> int:
    """Spatial output size of ``conv`` along ``dim`` (0: height, 1: width)."""
    k, s, p, d = conv.kernel_size[dim], conv.stride[dim], conv.padding[dim], conv.dilation[dim]
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def module_macs(module: nn.Module, height: int, width: int) -> tuple[int, int, int]:
    """MACs of ``module`` on one ``height x width`` input, and its output size.

    Children are assumed to run in registration order (true for the trunk's
    sequential blocks); an SE module's convolutions run on a 1x1 map.

    Returns:
        ``(macs, out_height, out_width)``.
    """
    if isinstance(module, nn.Conv2d):
        oh = conv_output_size(height, module, 0)
        ow = conv_output_size(width, module, 1)
        k = module.kernel_size[0] * module.kernel_size[1]
        macs = oh * ow * module.out_channels * (module.in_channels // module.groups) * k
        return macs, oh, ow
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features, height, width
    if isinstance(module, SqueezeExcite):
        macs = sum(module_macs(m, 1, 1)[0] for m in (module.fc1, module.fc2))
        return macs, height, width
    total = 0
    for child in module.children():
        macs, height, width = module_macs(child, height, width)
        total += macs
    return total, height, width


def num_params(module: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())
