"""Base classes and builder for task-loss balancing methods.

A method receives the per-task scalar losses of one training step (a dict
``task name -> Tensor``) and turns them into one update of the model:

* **loss methods** (:class:`LossWeighting`: static, uncertainty, DWA, FAMO)
  return one scalar objective; the model backpropagates it through mmengine's
  optimiser wrapper.
* **gradient methods** (:class:`GradientWeighting`: GradNorm, PCGrad, CAGrad)
  need each task's gradient of the *shared* parameters (trunk and neck). They
  compute those with ``torch.autograd.grad`` on the shared parameters only,
  combine them, backpropagate the weighted task losses into the task-specific
  parameters (heads) and write the combined gradient into the shared
  parameters' ``.grad``, then step through the optimiser wrapper.

Every method exposes its current per-task weights (:attr:`LossWeighting.weights`)
for logging. A task whose loss is exactly zero in a step (its labels are absent
from the batch) is treated as absent by the methods that track loss ratios.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtmnv3.core.registry import LOSS_WEIGHTINGS

__all__ = [
    "DEFAULT_MIN_WEIGHT",
    "LossWeighting",
    "GradientWeighting",
    "build_loss_weighting",
    "floor_weights",
    "rank_mean_losses",
    "task_gradients",
]

#: Smallest task weight (the weights of adaptive methods sum to the number of tasks),
#: so that no task is switched off when losses differ by orders of magnitude.
DEFAULT_MIN_WEIGHT = 0.01
#: Added to squared gradient norms before dividing by them.
GRAD_EPS = 1e-12


def floor_weights(weights: Tensor, min_weight: float) -> Tensor:
    """Rescale non-negative weights to sum to their count, none below ``min_weight``.

    Weights under the floor are raised to it and the others scaled down to keep
    the sum; weights already above the floor keep their ratios.

    Args:
        weights: (T,) non-negative weights, not all zero.
        min_weight: floor per weight, in ``[0, 1)``.

    Returns:
        (T,) weights that sum to T, each ``>= min_weight``.
    """
    count = weights.numel()
    w = count * weights.clamp_min(0) / weights.clamp_min(0).sum().clamp_min(GRAD_EPS)
    fixed = torch.zeros_like(w, dtype=torch.bool)
    for _ in range(count):  # each round fixes at least one more weight, or changes nothing
        fixed = fixed | (w < min_weight)
        free = count - min_weight * fixed.sum()
        rest = (w * ~fixed).sum().clamp_min(GRAD_EPS)
        w = torch.where(fixed, torch.full_like(w, min_weight), w * free / rest)
    return w


def rank_mean_losses(losses: Tensor) -> Tensor:
    """Each task's loss averaged over the ranks of a distributed run that have it.

    Methods with state driven by the loss values (DWA's loss history, FAMO's
    logits) update it from these means, so every rank keeps the same task
    weights; with local losses each rank's weights would drift apart. A task
    whose loss is zero on a rank (absent from its batch) is left out of that
    rank's share. In one process the losses come back unchanged.

    Args:
        losses: (T,) detached per-task losses.

    Returns:
        (T,) the means (zero where no rank had the task).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return losses
    present = (losses != 0).to(losses.dtype)
    sums = torch.stack([losses * present, present])
    dist.all_reduce(sums)
    return torch.where(sums[1] > 0, sums[0] / sums[1].clamp_min(1), torch.zeros_like(losses))


def task_gradients(losses: Tensor, params: Sequence[Tensor]) -> Tensor:
    """Each task's gradient of the given (shared) parameters, flattened.

    The graph is retained, so the losses can be backpropagated afterwards.

    Args:
        losses: (T,) per-task scalar losses.
        params: the parameters to differentiate (e.g. trunk and neck).

    Returns:
        (T, P) gradients, P the total number of elements of ``params``; a task
        whose loss does not reach a parameter contributes zeros there.
    """
    rows = []
    for loss in losses:
        if not loss.requires_grad:
            rows.append(torch.cat([torch.zeros_like(p).reshape(-1) for p in params]))
            continue
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)])
        )
    return torch.stack(rows)


class LossWeighting(nn.Module):
    """A loss method: per-task losses in, one scalar objective out.

    Subclasses implement :meth:`combine` and set :attr:`current_weights` to the
    per-task weights they used. Learnable parameters that the model's loss
    trains (e.g. uncertainty log-variances) are ``nn.Parameter`` s of this
    module; as a submodule of the model they are in the optimiser that
    mmengine builds for the model.

    Args:
        task_names: the tasks, in a fixed order (the model's head names).
    """

    #: Whether :meth:`update` needs the shared parameters (per-task gradients).
    manipulates_gradients: ClassVar[bool] = False

    def __init__(self, task_names: Sequence[str]) -> None:
        super().__init__()
        names = tuple(task_names) if not isinstance(task_names, str) else ()
        if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"task_names must be distinct strings, at least one, got {task_names!r}")
        self.task_names: tuple[str, ...] = names
        self.register_buffer("current_weights", torch.ones(len(names)), persistent=False)
        #: calls so far; the step used when the caller does not pass one.
        self.num_calls = 0

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def weights(self) -> dict[str, float]:
        """The per-task weights of the last step (``{task: weight}``)."""
        return dict(zip(self.task_names, self.current_weights.tolist()))

    def stack(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The losses as a (T,) tensor in :attr:`task_names` order."""
        if set(losses) != set(self.task_names):
            raise ValueError(f"losses are for tasks {sorted(losses)}, expected {sorted(self.task_names)}")
        values = []
        for name in self.task_names:
            value = losses[name]
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise ValueError(f"loss of task {name!r} must be a scalar tensor, got {value!r}")
            values.append(value.reshape(()))
        return torch.stack(values)

    def _next_step(self, step: int | None) -> int:
        resolved = self.num_calls if step is None else int(step)
        self.num_calls += 1
        return resolved

    def forward(self, losses: Mapping[str, Tensor], step: int | None = None) -> Tensor:
        """The objective of one training step (call once per step: methods keep state).

        Args:
            losses: ``{task: scalar loss}``.
            step: the training iteration (0-based); default: the number of calls so far.

        Returns:
            The scalar objective to backpropagate.
        """
        return self.combine(self.stack(losses), self._next_step(step))

    def combine(self, losses: Tensor, step: int) -> Tensor:
        """(T,) losses -> scalar objective; sets :attr:`current_weights`."""
        raise NotImplementedError(f"{type(self).__name__} must implement combine()")

    def update(
        self,
        losses: Mapping[str, Tensor],
        optim_wrapper: Any,
        shared_params: Sequence[Tensor] = (),
        task_params: Sequence[Tensor] = (),
        step: int | None = None,
    ) -> Tensor:
        """One optimisation step through an mmengine ``OptimWrapper``.

        Args:
            losses: ``{task: scalar loss}``.
            optim_wrapper: the wrapper (its ``update_params`` semantics: loss
                scaling for accumulation, backward, step and zero_grad when due).
            shared_params: the parameters every task shares (unused by loss methods).
            task_params: the task-specific parameters (unused by loss methods).
            step: the training iteration (0-based).

        Returns:
            The objective (detached).
        """
        total = self(losses, step)
        optim_wrapper.update_params(total)
        return total.detach()


class GradientWeighting(LossWeighting):
    """A gradient method: combines the tasks' gradients of the shared parameters.

    Subclasses implement :meth:`combine_gradients`. :meth:`update` does the
    whole step: per-task gradients of the shared parameters, their combination,
    backpropagation of the weighted losses into the task-specific parameters,
    and the optimiser step, all through the mmengine optimiser wrapper
    (gradient accumulation and AMP loss scaling are honoured).

    Calling the module (as for loss methods) returns the weighted sum of the
    losses with the current weights, without changing any state.
    """

    manipulates_gradients = True

    def forward(self, losses: Mapping[str, Tensor], step: int | None = None) -> Tensor:
        return (self.current_weights.detach() * self.stack(losses)).sum()

    def combine_gradients(self, losses: Tensor, grads: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Combine per-task gradients; sets :attr:`current_weights`.

        Args:
            losses: (T,) detached losses.
            grads: (T, P) each task's gradient of the shared parameters.
            step: the training iteration.

        Returns:
            ``(shared_grad, head_weights)``: the (P,) gradient for the shared
            parameters and the (T,) weights of each task's loss for its
            task-specific parameters.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement combine_gradients()")

    def update(
        self,
        losses: Mapping[str, Tensor],
        optim_wrapper: Any,
        shared_params: Sequence[Tensor] = (),
        task_params: Sequence[Tensor] = (),
        step: int | None = None,
    ) -> Tensor:
        vec = self.stack(losses)
        step = self._next_step(step)
        shared = [p for p in shared_params if p.requires_grad]
        if not shared:
            raise ValueError(f"{type(self).__name__} needs the shared parameters that require grad, got none")
        shared_ids = {id(p) for p in shared}
        heads = [p for p in task_params if p.requires_grad and id(p) not in shared_ids]

        # Step 1: per-task gradients of the shared parameters, in the scale the
        # wrapper backpropagates (accumulation factor, AMP loss scale).
        factor = _gradient_factor(optim_wrapper, vec)
        grads = task_gradients(vec * factor, shared)
        # Step 2: combine them (a non-finite gradient, e.g. an fp16 overflow that
        # the AMP scaler will skip, leaves the method's state untouched).
        if bool(torch.isfinite(grads).all()):
            shared_grad, head_weights = self.combine_gradients(vec.detach(), grads, step)
        else:
            head_weights = self.current_weights.detach().clone()
            shared_grad = head_weights @ grads
        # Step 3: backpropagate the weighted losses into the task-specific
        # parameters only, then add the combined gradient to the shared ones.
        total = (head_weights.detach() * vec).sum()
        previous = [p.grad for p in shared]
        for p in shared:
            p.grad = None
        optim_wrapper.backward(optim_wrapper.scale_loss(total), inputs=heads or shared)
        offset = 0
        for p, prev in zip(shared, previous):
            g = shared_grad[offset : offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            p.grad = g if prev is None else prev + g
        # Step 4: optimiser step when due (mmengine's update_params semantics).
        if optim_wrapper.should_update():
            optim_wrapper.step()
            optim_wrapper.zero_grad()
        return total.detach()


def _gradient_factor(optim_wrapper: Any, like: Tensor) -> float:
    """The factor the wrapper applies to a loss before backward (accumulation, AMP scale)."""
    factor = float(optim_wrapper.scale_loss(torch.ones((), device=like.device)))
    scaler = getattr(optim_wrapper, "loss_scaler", None)
    if scaler is not None:
        factor *= float(scaler.get_scale())
    return factor


def build_loss_weighting(cfg: dict | LossWeighting | None, task_names: Sequence[str]) -> LossWeighting:
    """Build a method from a config dict (``type`` names a registered method).

    Args:
        cfg: e.g. ``dict(type='FAMO', lr=0.025)``; None: ``EqualWeighting``; a
            built module is returned as is (its tasks must match).
        task_names: the model's tasks; passed as ``task_names``.

    Raises:
        KeyError: unknown method, listing the registered ones.
    """
    if cfg is None:
        cfg = dict(type="EqualWeighting")
    if isinstance(cfg, LossWeighting):
        if cfg.task_names != tuple(task_names):
            raise ValueError(
                f"loss weighting is for tasks {cfg.task_names}, the model has {tuple(task_names)}"
            )
        return cfg
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise TypeError(f"loss_weighting must be a config dict with a 'type', got {cfg!r}")
    kind = cfg["type"]
    if isinstance(kind, str) and kind not in LOSS_WEIGHTINGS.module_dict:
        raise KeyError(f"unknown loss weighting {kind!r}; registered: {sorted(LOSS_WEIGHTINGS.module_dict)}")
    return LOSS_WEIGHTINGS.build(dict(cfg), default_args=dict(task_names=list(task_names)))
