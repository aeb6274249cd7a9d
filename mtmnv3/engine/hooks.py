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

__all__ = ["EvalProgressHook", "LossWeightsPlotHook", "TrainDataRecordHook"]


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


@HOOKS.register_module()
class TrainDataRecordHook(Hook):
    """Record what the model is trained on in every checkpoint: ``meta['train_data']``.

    One plain dict per training dataset (type, root, size, tasks, synthetic;
    :func:`mtmnv3.data.provenance.describe_datasets`). ``mtmnv3 publish``
    carries it into a released weights file, and the demo reads it to say when
    a model trained only on synthetic scenes is pointed at real footage.
    """

    priority = "LOW"

    def __init__(self) -> None:
        self._record: list[dict[str, Any]] | None = None

    def before_train(self, runner: Any) -> None:
        from mtmnv3.data.provenance import describe_datasets

        self._record = describe_datasets(runner.train_dataloader.dataset)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self._record is not None:
            checkpoint.setdefault("meta", {})["train_data"] = self._record
