"""Analytic MAC and parameter counts (no forward pass needed).

MACs count the multiply-accumulates of convolutions and linear layers, the
convention of the MobileNet papers; element-wise ops (activations, the SE
scale, residual adds) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mtmnv3.core.layers import SqueezeExcite

__all__ = ["conv_output_size", "module_macs", "num_params", "traced_block_macs"]


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


def traced_block_macs(
    blocks: Sequence[nn.Module], height: int, width: int, in_channels: int = 3
) -> list[tuple[int, tuple[int, ...]]]:
    """MACs of each block of a sequence, counted on one forward pass, and its output shape.

    For blocks whose layers do not run one after another in registration order
    (branches, attention over patches), where :func:`module_macs` cannot tell
    the sizes: the blocks run in sequence on one ``in_channels x height x width``
    input (no gradients, every module in eval mode for the pass, then put back),
    and hooks count each convolution's and linear layer's MACs from its real
    output (a linear layer applied per token counts once per token). Same
    convention as :func:`module_macs`: element-wise ops and attention's matrix
    products are not counted.

    Returns:
        Per block, ``(macs, output shape)`` with the batch dimension (1) included.

    Raises:
        TypeError: a block returns something other than one tensor.
    """
    counted = [0]

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            counted[0] += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            counted[0] += output.numel() * module.in_features

    modes = {m: m.training for block in blocks for m in block.modules()}
    hooks = [
        m.register_forward_hook(count)
        for block in blocks
        for m in block.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    param = next((p for block in blocks for p in block.parameters()), None)
    x = torch.zeros(
        1,
        in_channels,
        height,
        width,
        device=None if param is None else param.device,
        dtype=None if param is None else param.dtype,
    )
    out: list[tuple[int, tuple[int, ...]]] = []
    try:
        for m in modes:
            m.training = False
        with torch.no_grad():
            for i, block in enumerate(blocks):
                counted[0] = 0
                x = block(x)
                if not isinstance(x, torch.Tensor):
                    raise TypeError(
                        f"block {i} ({type(block).__name__}) returned a {type(x).__name__}, not a tensor"
                    )
                out.append((counted[0], tuple(x.shape)))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return out
