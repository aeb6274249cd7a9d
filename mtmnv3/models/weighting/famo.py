"""FAMO: fast adaptive multitask optimisation.

Liu, Liang, Liu, Stone and Liu, "FAMO: Fast Adaptive Multitask Optimization",
NeurIPS 2023 (arXiv:2306.03792).

Task weights ``z = softmax(xi)`` over logits ``xi``; the model descends
``sum_i z_i log L_i / c`` with ``c = sum_i z_i / L_i`` (held constant), so
each task's raw loss is weighted by ``z_i / (c L_i)``: one backward pass, O(1)
extra work per step. The logits follow the change of the log-losses,
``delta_i = log L_i(t-1) - log L_i(t)``: their gradient is the softmax
Jacobian applied to delta, ``z * (delta - z . delta)``, stepped by the
method's own Adam optimiser with weight decay ``gamma`` (the paper's
regulariser). A task that improves more gets less weight.

Difference from the paper: the paper measures ``L(t)`` after the update on
the same batch (one extra forward pass); here ``L(t)`` is the next step's
loss, so training stays at one forward and one backward per iteration. In a
distributed run the logits follow the losses averaged over the ranks
(:func:`~.base.rank_mean_losses`), so every rank weights the tasks alike.

The logits are an ``nn.Parameter`` with ``requires_grad=False`` (saved in
checkpoints; the model's optimiser holds them but never steps them). Their
Adam update (``torch.optim.Adam``'s arithmetic, L2 weight decay) keeps its
moments and step count in buffers: every piece of state is a tensor, so
mmengine's DDP start-up broadcast, the ONNX tracer and weights-only loading
take it as it is. Checkpoints that kept a ``torch.optim.Adam`` state dict as
extra state (``loss_weighting._extra_state``) are converted when loaded. Weights are reported as
``T z`` (they sum to the number of tasks) and the objective is scaled by the
number of tasks present, so its gradient matches the equal-weight sum in size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import (
    DEFAULT_MIN_WEIGHT,
    LossWeighting,
    floor_weights,
    rank_mean_losses,
)

__all__ = ["FAMO"]

#: Losses are clamped here before the log (a zero loss means the task is absent).
LOSS_EPS = 1e-8
#: The logits' Adam hyper-parameters (torch.optim.Adam's defaults, as in the paper's code).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@LOSS_WEIGHTINGS.register_module()
class FAMO(LossWeighting):
    """FAMO task weighting.

    Args:
        task_names: the tasks.
        lr: learning rate of the logits' Adam optimiser (the paper: 0.025).
        gamma: weight decay of the logits (the paper's regulariser).
        min_weight: floor per weight (weights sum to the number of tasks).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        lr: float = 0.025,
        gamma: float = 1e-3,
        min_weight: float = DEFAULT_MIN_WEIGHT,
    ) -> None:
        super().__init__(task_names)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if not 0 <= min_weight < 1:
            raise ValueError(f"min_weight must be in [0, 1), got {min_weight}")
        self.min_weight = float(min_weight)
        self.lr = float(lr)
        self.gamma = float(gamma)
        self.logits = nn.Parameter(torch.zeros(self.num_tasks), requires_grad=False)
        self.register_buffer("prev_log_losses", torch.zeros(self.num_tasks))
        self.register_buffer("prev_present", torch.zeros(self.num_tasks, dtype=torch.bool))
        # the logits' Adam state
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.float64))
        self.register_buffer("exp_avg", torch.zeros(self.num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(self.num_tasks))

    def _adam_step(self, grad: Tensor) -> None:
        """One ``torch.optim.Adam`` step of the logits (betas 0.9/0.999, eps 1e-8,
        weight decay ``gamma`` added to the gradient)."""
        beta1, beta2 = ADAM_BETAS
        grad = grad + self.gamma * self.logits.detach()
        self.adam_steps += 1
        step = float(self.adam_steps)
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(ADAM_EPS)
        self.logits.data.addcdiv_(self.exp_avg, denom, value=-self.lr / (1 - beta1**step))

    def upgrade_legacy_state(self, state: dict[str, Any], prefix: str) -> None:
        """Convert, in ``state``, a checkpoint's ``torch.optim.Adam`` extra state
        (``<prefix>_extra_state``, older versions) into the Adam buffers."""
        legacy = state.pop(f"{prefix}_extra_state", None)
        if not isinstance(legacy, dict) or f"{prefix}exp_avg" in state:
            return
        adam = (legacy.get("optimizer") or {}).get("state", {}).get(0, {})
        zeros = torch.zeros(self.num_tasks)
        state[f"{prefix}adam_steps"] = torch.as_tensor(float(adam.get("step", 0.0)), dtype=torch.float64)
        state[f"{prefix}exp_avg"] = adam.get("exp_avg", zeros).detach().clone().float()
        state[f"{prefix}exp_avg_sq"] = adam.get("exp_avg_sq", zeros).detach().clone().float()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.upgrade_legacy_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def combine(self, losses: Tensor, step: int) -> Tensor:
        present = losses.detach() > 0
        # the logits follow every rank's losses, so all ranks keep the same weights
        synced = rank_mean_losses(losses.detach().float())
        seen = synced > 0
        log_losses = synced.clamp_min(LOSS_EPS).log()
        # Step 1: update the logits from the change of log-losses since the last step.
        both = seen & self.prev_present
        if bool(both.any()):
            delta = torch.where(both, self.prev_log_losses - log_losses, torch.zeros_like(log_losses))
            z = torch.softmax(self.logits.detach(), dim=0)
            self._adam_step(z * (delta - (z * delta).sum()))
        self.prev_log_losses.copy_(torch.where(seen, log_losses, self.prev_log_losses))
        self.prev_present.copy_(seen)
        # Step 2: the weighted log-loss objective.
        weights = floor_weights(torch.softmax(self.logits.detach(), dim=0), self.min_weight)
        self.current_weights.copy_(weights)
        z = (weights / self.num_tasks).to(losses.dtype)
        safe = losses.clamp_min(LOSS_EPS)
        norm = torch.where(present, z / safe.detach(), torch.zeros_like(z)).sum().clamp_min(LOSS_EPS)
        terms = torch.where(present, z * safe.log(), torch.zeros_like(z))
        return present.sum() * terms.sum() / norm
