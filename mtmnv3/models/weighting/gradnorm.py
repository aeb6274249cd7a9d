"""GradNorm: balance tasks by normalising their gradient magnitudes.

Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization
for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018
(arXiv:1711.02257).

With task weights ``w_i``, the weighted gradient norms on the shared
parameters are ``G_i = w_i ||grad L_i||``. Tasks that trained less
(larger ``L_i(t) / L_i(0)`` relative to the mean, ratio ``r_i``) should get
larger norms: the target is ``mean(G) r_i^alpha`` (held constant), and the
weights descend ``L_grad = sum_i |G_i - target_i|``, whose gradient is
``sign(G_i - target_i) ||grad L_i||`` (no second-order terms: ``G_i`` is linear
in ``w_i``). After each update the weights are renormalised to sum to the
number of tasks, as in the paper.

The norms are taken over all shared parameters (trunk and neck), not only
the last shared layer as the paper suggests for speed. The weights are
updated by the method's own Adam optimiser (learning rate ``lr``), not by the
model's optimiser: they are an ``nn.Parameter`` with ``requires_grad=False``
(saved in checkpoints; the model's optimiser holds them but never steps
them, as they get no gradient from the model loss), and the Adam state is
saved with the module's state dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import DEFAULT_MIN_WEIGHT, GradientWeighting, floor_weights

__all__ = ["GradNorm"]


@LOSS_WEIGHTINGS.register_module()
class GradNorm(GradientWeighting):
    """GradNorm task weights with asymmetry ``alpha``.

    Args:
        task_names: the tasks.
        alpha: restoring-force strength (0: equal gradient norms; the paper uses 0.12 to 3).
        lr: learning rate of the weights' Adam optimiser.
        min_weight: floor per weight (weights sum to the number of tasks).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        alpha: float = 1.5,
        lr: float = 0.025,
        min_weight: float = DEFAULT_MIN_WEIGHT,
    ) -> None:
        super().__init__(task_names)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= min_weight < 1:
            raise ValueError(f"min_weight must be in [0, 1), got {min_weight}")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
        self.loss_weights = nn.Parameter(torch.ones(self.num_tasks), requires_grad=False)
        # L_i(0): each task's first non-zero loss (0 until recorded).
        self.register_buffer("initial_losses", torch.zeros(self.num_tasks))
        self._optimizer = torch.optim.Adam([self.loss_weights], lr=lr)

    def combine_gradients(self, losses: Tensor, grads: Tensor, step: int) -> tuple[Tensor, Tensor]:
        weights = self.loss_weights.detach().clone()
        self.current_weights.copy_(weights)
        shared_grad = weights.to(grads.dtype) @ grads
        self._update_weights(losses.float(), grads.float().norm(dim=1))
        return shared_grad, weights

    def _update_weights(self, losses: Tensor, norms: Tensor) -> None:
        """One Adam step of the weights on L_grad, then renormalisation."""
        present = (losses != 0) & (norms > 0)
        record = present & (self.initial_losses == 0)
        self.initial_losses.copy_(torch.where(record, losses, self.initial_losses))
        if int(present.sum()) < 2:  # nothing to balance
            return
        w = self.loss_weights.detach()
        norms_w = w * norms  # G_i
        ratio = losses / self.initial_losses.clamp_min(torch.finfo(losses.dtype).tiny)
        rel = ratio / ratio[present].mean()  # r_i
        target = norms_w[present].mean() * rel.pow(self.alpha)
        grad = torch.where(present, torch.sign(norms_w - target) * norms, torch.zeros_like(norms))
        self.loss_weights.grad = grad
        self._optimizer.step()
        self.loss_weights.grad = None
        with torch.no_grad():
            self.loss_weights.copy_(floor_weights(self.loss_weights, self.min_weight))

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self._optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._optimizer.load_state_dict(state["optimizer"])
