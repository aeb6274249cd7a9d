"""An exponential moving average of the model's weights, evaluated and saved in their place.

Why not mmengine's ``EMAHook``: its ``AveragedModel`` copies every
``state_dict`` entry as a tensor, and a loss-weighting method's optimiser
(GradNorm's) is extra, non-tensor state there, so it fails on the first
update; it would also average the weighting's own training state. This hook
averages the floating-point parameters and buffers of the model only, in
place with ``torch._foreach_lerp_`` (no model copy).

Checkpoint layout: ``state_dict`` holds the averaged weights, so
``tools/test.py``, the ONNX export, the demo and ``load_from`` use them
without knowing about the average; ``raw_state_dict`` holds the trained
weights the average came from. Resuming puts the raw weights back into the
model and the averaged ones back into the hook, so a resumed run trains on
from its own weights and continues its average where it stopped.
"""

from __future__ import annotations

from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mtmnv3.core.registry import HOOKS

__all__ = ["ModelEMAHook", "RAW_STATE_KEY", "ema_decay"]

#: Checkpoint key of the trained (not averaged) weights.
RAW_STATE_KEY = "raw_state_dict"


def ema_decay(momentum: float, updates: int, warmup: bool) -> float:
    """The average's decay at the ``updates``-th update (1-based).

    ``1 - momentum``, or with ``warmup`` the smaller ``(1 + n) / (10 + n)``
    early on, so the average forgets the random initial weights quickly
    (as in timm's ModelEmaV3 and the TensorFlow EMA it follows).
    """
    decay = 1.0 - momentum
    if warmup:
        decay = min(decay, (1.0 + updates) / (10.0 + updates))
    return decay


@HOOKS.register_module()
class ModelEMAHook(Hook):
    """Keep ``ema = decay * ema + (1 - decay) * weights`` after every training
    iteration; validate, test and save with the average.

    Args:
        momentum: ``1 - decay``; the average's half-life is about
            ``0.69 / momentum`` iterations.
        warmup: ramp the decay up from 0.1 over the first iterations (see
            :func:`ema_decay`).
        begin_iter: iterations before the average starts (it starts as a
            copy of the weights at that iteration).
        exclude: state-dict name prefixes left out of the average: training
            state that is not part of the model's function (a loss-weighting
            method's logits and loss history).
    """

    priority = "ABOVE_NORMAL"  # swap before the evaluation and checkpoint hooks run

    def __init__(
        self,
        momentum: float = 0.002,
        warmup: bool = True,
        begin_iter: int = 0,
        exclude: tuple[str, ...] = ("loss_weighting.",),
    ) -> None:
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"ModelEMAHook momentum must be in (0, 1), got {momentum!r}")
        if begin_iter < 0:
            raise ValueError(f"ModelEMAHook begin_iter must be >= 0, got {begin_iter!r}")
        self.momentum = float(momentum)
        self.warmup = bool(warmup)
        self.begin_iter = int(begin_iter)
        self.exclude = tuple(exclude)
        self.ema: dict[str, torch.Tensor] | None = None
        self.updates = 0
        self._swapped = False

    # -------------------------------------------------------------- internals
    @staticmethod
    def _model(runner: Any) -> torch.nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    def _averaged(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's floating-point parameters and buffers, by state-dict name."""
        return {
            k: v
            for k, v in model.state_dict(keep_vars=True).items()
            if torch.is_tensor(v) and v.is_floating_point() and not k.startswith(self.exclude)
        }

    def _swap(self, runner: Any) -> None:
        """Exchange the model's weights with the average (its own inverse)."""
        if self.ema is None:
            return
        live = self._averaged(self._model(runner))
        with torch.no_grad():
            for k, avg in self.ema.items():
                tmp = live[k].detach().clone()
                live[k].data.copy_(avg)
                avg.copy_(tmp)
        self._swapped = not self._swapped

    # ------------------------------------------------------------------ train
    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if runner.iter + 1 <= self.begin_iter:
            return
        live = self._averaged(self._model(runner))
        with torch.no_grad():
            if self.ema is None:
                self.ema = {k: v.detach().clone() for k, v in live.items()}
                self.updates = 0
            elif any(self.ema[k].device != v.device for k, v in live.items()):  # resumed onto another device
                self.ema = {k: self.ema[k].to(v.device) for k, v in live.items()}
            self.updates += 1
            decay = ema_decay(self.momentum, self.updates, self.warmup)
            keys = list(self.ema)
            torch._foreach_lerp_([self.ema[k] for k in keys], [live[k].detach() for k in keys], 1.0 - decay)

    # -------------------------------------------------------- val and test
    def before_val_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if self._swapped:
            self._swap(runner)

    def before_test_epoch(self, runner: Any) -> None:
        self._swap(runner)

    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if self._swapped:
            self._swap(runner)

    # ------------------------------------------------------------ checkpoints
    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self.ema is None:
            return
        state = checkpoint["state_dict"]
        checkpoint[RAW_STATE_KEY] = {k: state[k] for k in self.ema}
        for k, avg in self.ema.items():
            state[k] = avg.detach().to("cpu").clone()
        checkpoint.setdefault("meta", {})["ema"] = dict(momentum=self.momentum, updates=self.updates)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        """On resume, the model gets the raw weights back and the hook the average.

        Loading a checkpoint any other way (``load_from``, testing) keeps its
        ``state_dict``, the average; a later average starts from it.
        """
        raw = checkpoint.get(RAW_STATE_KEY)
        if not (raw and getattr(runner, "_resume", False)):
            return
        state = checkpoint["state_dict"]
        self.ema = {k: state[k].detach().clone() for k in raw}
        self.updates = int(checkpoint.get("meta", {}).get("ema", {}).get("updates", 0))
        state.update(raw)
