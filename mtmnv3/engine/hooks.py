"""Runner hooks: evaluation progress and the per-task metrics table; loss weights plotted after training."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from mmengine.hooks import Hook
from mmengine.logging import print_log
from tqdm import tqdm

from mtmnv3.core.registry import HOOKS

__all__ = ["EvalProgressHook", "LossWeightsPlotHook"]


@HOOKS.register_module()
class EvalProgressHook(Hook):
    """A tqdm progress bar over validation/test iterations, and a markdown table
    of every task's metrics when evaluation ends (main process only)."""

    priority = "VERY_LOW"

    def __init__(self, show_bar: bool = True) -> None:
        self.show_bar = show_bar
        self._bar: tqdm | None = None

    def _open(self, runner: Any, loader: Any, desc: str) -> None:
        if self.show_bar and runner.rank == 0:
            self._bar = tqdm(total=len(loader), desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _close(self, runner: Any, metrics: dict[str, Any] | None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if metrics and runner.rank == 0:
            from mtmnv3.evaluation import format_metrics_table

            print_log("\n" + format_metrics_table(metrics), logger="current")

    def before_val_epoch(self, runner: Any) -> None:
        self._open(runner, runner.val_dataloader, "val")

    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._step()

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        self._close(runner, metrics)

    def before_test_epoch(self, runner: Any) -> None:
        self._open(runner, runner.test_dataloader, "test")

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._step()

    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        self._close(runner, metrics)


@HOOKS.register_module()
class LossWeightsPlotHook(Hook):
    """When training ends, plot the logged per-task weights and losses against
    iteration to ``<work_dir>/<filename>`` (main process only).

    The weights are the model's ``weight_<task>`` log variables (every loss
    weighting logs them), read back from the ``scalars.json`` of mmengine's
    local visualisation backend. A run that logged none is skipped with a
    message; a plotting failure is reported and does not fail the finished run.
    """

    priority = "VERY_LOW"

    def __init__(self, filename: str = "loss_weights.png") -> None:
        self.filename = filename

    def after_train(self, runner: Any) -> None:
        if runner.rank != 0:
            return
        from mtmnv3.models.weighting.plot import plot_weights

        scalars = Path(runner.log_dir) / "vis_data" / "scalars.json"
        if not scalars.is_file():
            print_log(f"no {scalars}: loss weights not plotted", logger="current")
            return
        try:
            out = plot_weights(scalars, Path(runner.work_dir) / self.filename)
        except (OSError, ValueError) as err:
            print_log(f"loss weights not plotted: {err}", logger="current", level=logging.WARNING)
            return
        print_log(f"per-task loss weights and losses plotted to {out}", logger="current")
