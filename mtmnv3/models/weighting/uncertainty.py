"""Homoscedastic uncertainty weighting.

Kendall, Gal and Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics", CVPR 2018 (arXiv:1705.07115).

Each task i learns a log-variance ``s_i = log sigma_i^2`` and the objective is
``sum_i exp(-s_i) L_i + s_i``. For a regression task with squared-error loss
this is twice the paper's Gaussian negative log-likelihood
``L_i / (2 sigma_i^2) + log sigma_i`` (same minimiser); its fixed point is
``exp(-s_i) = 1 / L_i``, i.e. inverse-variance weights. The log-variances are
``nn.Parameter`` s, trained by the model's optimiser with the rest of the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import LossWeighting

__all__ = ["UncertaintyWeighting"]

#: Default bounds of the log-variances: weights between exp(-10) and exp(10). Without
#: a lower bound, a task whose loss reaches zero drives s_i (and its weight) to infinity.
LOG_VAR_RANGE = (-10.0, 10.0)


@LOSS_WEIGHTINGS.register_module()
class UncertaintyWeighting(LossWeighting):
    """``sum_i exp(-s_i) L_i + s_i`` with learned log-variances ``s_i``.

    Weights are ``exp(-s_i)``. A task whose loss is exactly zero in a step (no
    labels in the batch) contributes nothing, its ``s_i`` included.

    Args:
        task_names: the tasks.
        init_log_var: initial ``s_i`` (0: weight 1).
        log_var_range: ``(low, high)`` clamp of ``s_i`` in the objective.
    """

    def __init__(
        self,
        task_names: Sequence[str],
        init_log_var: float = 0.0,
        log_var_range: tuple[float, float] = LOG_VAR_RANGE,
    ) -> None:
        super().__init__(task_names)
        low, high = (float(v) for v in log_var_range)
        if not low < high:
            raise ValueError(f"log_var_range must be (low, high) with low < high, got {log_var_range!r}")
        if not low <= init_log_var <= high:
            raise ValueError(f"init_log_var must lie in log_var_range {log_var_range}, got {init_log_var}")
        self.log_var_range = (low, high)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(init_log_var)))
        self.current_weights.copy_(torch.exp(-self.log_vars.detach()))

    def combine(self, losses: Tensor, step: int) -> Tensor:
        s = self.log_vars.clamp(*self.log_var_range).to(losses.dtype)
        present = losses.detach() != 0
        terms = torch.exp(-s) * losses + s
        self.current_weights.copy_(torch.exp(-s.detach()))
        return torch.where(present, terms, torch.zeros_like(terms)).sum()
