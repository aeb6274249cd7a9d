"""PCGrad: projecting conflicting gradients.

Yu, Kumar, Gupta, Levine, Hausman and Finn, "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020 (arXiv:2001.06782).

For each task i, and the other tasks j in random order: if the (already
projected) gradient ``g_i`` conflicts with ``g_j`` (negative dot product),
remove its component along ``g_j``: ``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j``.
The shared parameters get the sum of the projected gradients; the
task-specific parameters get their own task's plain gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import GRAD_EPS, GradientWeighting

__all__ = ["PCGrad", "project_conflicting"]


def project_conflicting(grads: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """PCGrad's gradient surgery.

    Args:
        grads: (T, P) per-task gradients.
        generator: CPU random generator for the order of the other tasks.

    Returns:
        (T, P) projected gradients (sum them for the update).
    """
    count = grads.shape[0]
    projected = grads.clone()
    sq_norms = (grads * grads).sum(dim=1).clamp_min(GRAD_EPS)
    for i in range(count):
        for j in torch.randperm(count, generator=generator).tolist():
            if j == i:
                continue
            dot = projected[i] @ grads[j]
            projected[i] -= dot.clamp(max=0) / sq_norms[j] * grads[j]
    return projected


@LOSS_WEIGHTINGS.register_module()
class PCGrad(GradientWeighting):
    """Sum of the tasks' gradients after projecting out pairwise conflicts.

    Weights are 1 (the method changes gradient directions, not loss weights).

    Args:
        task_names: the tasks.
        seed: seed of the random task order.
    """

    def __init__(self, task_names: Sequence[str], seed: int = 0) -> None:
        super().__init__(task_names)
        self._generator = torch.Generator().manual_seed(int(seed))

    def combine_gradients(self, losses: Tensor, grads: Tensor, step: int) -> tuple[Tensor, Tensor]:
        projected = project_conflicting(grads, self._generator)
        return projected.sum(dim=0), torch.ones_like(self.current_weights)
