"""Dynamic Weight Average.

Liu, Johns and Davison, "End-to-End Multi-Task Learning with Attention",
CVPR 2019 (arXiv:1803.10704).

``w_i(t) = T exp(r_i(t-1) / tau) / sum_j exp(r_j(t-1) / tau)`` with the
loss-rate ratio ``r_i(t-1) = L_i(t-1) / L_i(t-2)`` of the mean losses of the
last two complete intervals (the paper's epochs; here ``interval``
iterations, so iteration-based training works). Weights are 1 until two
intervals have completed. Ratios are scale-free, so losses of very different
magnitude do not matter; a floor keeps a spiking loss from taking all weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.models.weighting.base import (
    DEFAULT_MIN_WEIGHT,
    LossWeighting,
    floor_weights,
    rank_mean_losses,
)

__all__ = ["DWA"]


@LOSS_WEIGHTINGS.register_module()
class DWA(LossWeighting):
    """Dynamic Weight Average over intervals of ``interval`` iterations.

    Args:
        task_names: the tasks.
        temperature: softmax temperature ``tau`` (the paper uses 2).
        interval: iterations per averaging interval (an epoch in the paper).
        min_weight: floor per weight (weights sum to the number of tasks).
    """

    def __init__(
        self,
        task_names: Sequence[str],
        temperature: float = 2.0,
        interval: int = 100,
        min_weight: float = DEFAULT_MIN_WEIGHT,
    ) -> None:
        super().__init__(task_names)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an int >= 1, got {interval!r}")
        if not 0 <= min_weight < 1:
            raise ValueError(f"min_weight must be in [0, 1), got {min_weight}")
        self.temperature = float(temperature)
        self.interval = interval
        self.min_weight = float(min_weight)
        t = self.num_tasks
        # Running sums of the current interval; mean losses of the last two intervals.
        self.register_buffer("interval_sums", torch.zeros(t, dtype=torch.float64))
        self.register_buffer("interval_counts", torch.zeros(t, dtype=torch.float64))
        self.register_buffer("history", torch.zeros(2, t, dtype=torch.float64))
        self.register_buffer("completed_intervals", torch.zeros((), dtype=torch.long))
        self.register_buffer("current_interval", torch.full((), -1, dtype=torch.long))

    def combine(self, losses: Tensor, step: int) -> Tensor:
        index = step // self.interval
        if index != int(self.current_interval):
            if int(self.current_interval) >= 0:
                self._close_interval()
            self.current_interval.fill_(index)
        weights = self.dwa_weights()
        self.current_weights.copy_(weights)
        # the loss history follows every rank's losses, so all ranks keep the same weights
        detached = rank_mean_losses(losses.detach().to(torch.float64))
        present = detached != 0
        self.interval_sums += torch.where(present, detached, torch.zeros_like(detached))
        self.interval_counts += present.to(torch.float64)
        return (weights.to(losses.dtype) * losses).sum()

    def _close_interval(self) -> None:
        means = self.interval_sums / self.interval_counts.clamp_min(1)
        self.history[0] = self.history[1]
        self.history[1] = torch.where(self.interval_counts > 0, means, torch.zeros_like(means))
        self.completed_intervals += 1
        self.interval_sums.zero_()
        self.interval_counts.zero_()

    def dwa_weights(self) -> Tensor:
        """(T,) weights from the last two completed intervals (ones before two exist)."""
        if int(self.completed_intervals) < 2:
            return torch.ones(self.num_tasks, device=self.history.device)
        older, last = self.history
        valid = (older > 0) & (last > 0)
        ratio = torch.where(valid, last / older.clamp_min(1e-300), torch.ones_like(last))
        weights = self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)
        return floor_weights(weights, self.min_weight).to(torch.float32)
