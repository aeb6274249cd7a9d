"""Fixed task weights: the plain (weighted) sum of the task losses.

``EqualWeighting`` is the uniform-weight baseline that the adaptive methods
are compared against (e.g. in Kendall et al. 2018 and Liu et al. 2023);
``StaticWeighting`` takes hand-set weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import LossWeighting

__all__ = ["StaticWeighting", "EqualWeighting"]


@LOSS_WEIGHTINGS.register_module()
class StaticWeighting(LossWeighting):
    """``sum_i w_i L_i`` with fixed weights.

    Args:
        task_names: the tasks.
        weights: ``{task: weight}``; tasks not named get 1.0. Weights must be
            finite and non-negative.
    """

    def __init__(self, task_names: Sequence[str], weights: Mapping[str, float] | None = None) -> None:
        super().__init__(task_names)
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.task_names))
        if unknown:
            raise ValueError(f"weights name {unknown} that are not tasks; tasks are {list(self.task_names)}")
        values = [float(weights.get(name, 1.0)) for name in self.task_names]
        bad = {n: v for n, v in zip(self.task_names, values) if not (v >= 0 and v < float("inf"))}
        if bad:
            raise ValueError(f"weights must be finite and >= 0, got {bad}")
        self.current_weights.copy_(torch.tensor(values))

    def combine(self, losses: Tensor, step: int) -> Tensor:
        return (self.current_weights.to(losses.dtype) * losses).sum()


@LOSS_WEIGHTINGS.register_module()
class EqualWeighting(StaticWeighting):
    """``sum_i L_i``: every task weight 1."""

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__(task_names)
