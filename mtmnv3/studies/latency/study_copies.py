"""Study copies of a trunk block: the same block without SE, or with ReLU for hard-swish."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from mtmnv3.core.layers import SqueezeExcite

__all__ = ["without_se", "with_relu"]


def without_se(block: nn.Module) -> nn.Module:
    """A copy of ``block`` with every SqueezeExcite module replaced by Identity."""
    clone = copy.deepcopy(block)
    _replace_modules(clone, lambda m: isinstance(m, SqueezeExcite), lambda m: nn.Identity())
    return clone


def with_relu(block: nn.Module) -> nn.Module:
    """A copy of ``block`` with every Hardswish replaced by ReLU."""
    clone = copy.deepcopy(block)
    _replace_modules(
        clone, lambda m: isinstance(m, nn.Hardswish), lambda m: nn.ReLU(inplace=getattr(m, "inplace", False))
    )
    return clone


def _replace_modules(
    root: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> None:
    for name, child in list(root.named_children()):
        if match(child):
            setattr(root, name, make(child))
        else:
            _replace_modules(child, match, make)
