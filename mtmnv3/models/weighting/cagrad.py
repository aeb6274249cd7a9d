"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone and Liu, "Conflict-Averse Gradient descent for
Multi-task Learning", NeurIPS 2021 (arXiv:2110.14048).

With the mean gradient ``g0`` and ``g_w = sum_i w_i g_i`` for ``w`` on the
simplex, the dual problem is ``min_w g_w . g0 + sqrt(phi) ||g_w||`` with
``phi = c^2 ||g0||^2``; the update is ``d = g0 + sqrt(phi) / ||g_w|| g_w``,
divided by ``1 + c^2``. As in the authors' code, ``w`` is found by a short
inner loop of SGD with momentum on softmax logits over the (normalised)
T x T Gram matrix of the task gradients, so no external solver is needed.

Here the update is multiplied by the number of tasks, so that ``c = 0`` is
exactly the plain sum of the task gradients (the package's equal-weight
baseline) rather than their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import GradientWeighting

__all__ = ["CAGrad", "cagrad_coefficients"]

#: Regulariser under square roots and norms (the authors' 1e-4, in normalised units).
SQRT_EPS = 1e-4
#: Inner-loop settings of the authors' implementation.
INNER_STEPS = 20
INNER_LR = 25.0
INNER_MOMENTUM = 0.5


def cagrad_coefficients(grads: Tensor, c: float, steps: int = INNER_STEPS, lr: float = INNER_LR) -> Tensor:
    """The coefficient of each task gradient in the CAGrad update.

    Args:
        grads: (T, P) per-task gradients.
        c: conflict-aversion radius (0: plain sum).
        steps: inner SGD steps on the simplex weights.
        lr: inner SGD learning rate.

    Returns:
        (T,) coefficients a_i: the update is ``sum_i a_i g_i``.
    """
    count = grads.shape[0]
    gram = (grads @ grads.t()).detach().double()
    scale = (torch.diagonal(gram) + SQRT_EPS).sqrt().mean()
    gram = gram / scale.pow(2)  # scale-free: losses of any magnitude
    gram_mean = gram.mean(dim=1, keepdim=True)  # (T, 1): g_i . g0
    radius = (gram_mean.mean() + SQRT_EPS).sqrt() * c  # sqrt(phi)
    logits = torch.zeros(count, 1, dtype=gram.dtype, device=gram.device, requires_grad=True)
    best_logits, best_obj = logits.detach().clone(), float("inf")
    with torch.enable_grad():
        opt = torch.optim.SGD([logits], lr=lr, momentum=INNER_MOMENTUM)
        for i in range(steps + 1):
            w = torch.softmax(logits, dim=0)
            obj = (w.t() @ gram_mean + radius * (w.t() @ gram @ w + SQRT_EPS).sqrt()).squeeze()
            value = obj.detach().item()
            if value < best_obj:
                best_obj, best_logits = value, logits.detach().clone()
            if i < steps:
                opt.zero_grad()
                obj.backward()
                opt.step()
    w = torch.softmax(best_logits, dim=0)
    gw_norm = (w.t() @ gram @ w + SQRT_EPS).sqrt().squeeze()
    lam = radius / (gw_norm + SQRT_EPS)
    coeffs = (1.0 / count + w.squeeze(1) * lam) / (1.0 + c * c)
    return (count * coeffs).to(grads.dtype)


@LOSS_WEIGHTINGS.register_module()
class CAGrad(GradientWeighting):
    """CAGrad on the shared parameters; the heads get their plain task gradients.

    Weights are the coefficients of the task gradients in the shared update
    (1 for a task absent from the batch).

    Args:
        task_names: the tasks.
        c: conflict-aversion radius (the paper uses 0.4 to 0.5).
        inner_steps: inner SGD steps for the simplex weights.
    """

    def __init__(self, task_names: Sequence[str], c: float = 0.4, inner_steps: int = INNER_STEPS) -> None:
        super().__init__(task_names)
        if not c >= 0:
            raise ValueError(f"c must be >= 0, got {c}")
        if not isinstance(inner_steps, int) or inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps!r}")
        self.c = float(c)
        self.inner_steps = inner_steps

    def combine_gradients(self, losses: Tensor, grads: Tensor, step: int) -> tuple[Tensor, Tensor]:
        # Tasks absent from the batch (zero gradient) take no part in the simplex problem.
        active = grads.abs().amax(dim=1) > 0
        coeffs = torch.ones(self.num_tasks, dtype=grads.dtype, device=grads.device)
        if int(active.sum()) >= 2:
            coeffs[active] = cagrad_coefficients(grads[active], self.c, self.inner_steps)
        self.current_weights.copy_(coeffs)
        return coeffs @ grads, torch.ones_like(self.current_weights)
