"""Top-k classification accuracy (``cls/top1``, ``cls/top5``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement

from mtmnv3.core.registry import METRICS
from mtmnv3.evaluation._sample import get_field, has_field, sample_tasks, to_numpy

__all__ = ["Top1Accuracy"]

#: ``gt_label`` value of a sample without a classification label.
NO_CLASS_LABEL = -1


@METRICS.register_module()
class Top1Accuracy(BaseMetric):
    """Top-1 (and optionally top-k) accuracy over samples with a class label.

    A sample counts when its ``tasks`` metainfo includes ``'cls'`` (samples
    without ``tasks`` metainfo count whenever they have a label) and its
    ``gt_label`` is >= 0. Predictions are read from ``pred_score`` (shape
    ``(num_classes,)``); ``pred_label`` is used when no scores are present, in
    which case only top-1 is available.

    Accuracies are fractions in [0, 1]. With the default prefix ``'cls'`` the
    keys returned by ``evaluate`` are ``cls/top1`` and, when the model has at
    least 5 classes, ``cls/top5``.

    Args:
        topk: The k values to report. Each k > 1 is reported only when the
            scores have at least k classes.
        collect_device: ``'cpu'`` or ``'gpu'``, where results are gathered
            across processes.
        prefix: Key prefix; defaults to ``'cls'``.
    """

    default_prefix = "cls"

    def __init__(
        self,
        topk: int | Sequence[int] = (1, 5),
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not topk or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in topk):
            raise ValueError(f"topk must be positive integers, got {topk!r}")
        if 1 not in topk:
            raise ValueError(f"topk must include 1 (the headline metric), got {topk!r}")
        self.topk = tuple(sorted(set(topk)))

    def process(self, data_batch: Any, data_samples: Sequence[Mapping | BaseDataElement]) -> None:
        """Record, per labelled sample, the rank of the true class among the scores.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples: The model's outputs, as dicts or data elements.
        """
        for sample in data_samples:
            tasks = sample_tasks(sample)
            if tasks is not None and "cls" not in tasks:
                continue
            if not has_field(sample, "gt_label"):
                continue
            gt = int(to_numpy(get_field(sample, "gt_label")).reshape(-1)[0])
            if gt < 0:
                continue
            self.results.append(self._rank_of_truth(sample, gt))

    @staticmethod
    def _rank_of_truth(sample: Mapping | BaseDataElement, gt: int) -> dict[str, int]:
        """0-based rank of class ``gt`` among the predicted scores (ties count against)."""
        if has_field(sample, "pred_score"):
            scores = to_numpy(get_field(sample, "pred_score"), np.float64).reshape(-1)
            if gt >= scores.size:
                raise ValueError(f"gt_label {gt} is out of range for pred_score with {scores.size} classes")
            rank = int(np.sum(scores > scores[gt]))
            # Equal scores that come before the true class in index order beat it,
            # matching an argmax / stable top-k that breaks ties by index.
            rank += int(np.sum(scores[:gt] == scores[gt]))
            return {"rank": rank, "num_classes": int(scores.size)}
        if has_field(sample, "pred_label"):
            pred = int(to_numpy(get_field(sample, "pred_label")).reshape(-1)[0])
            return {"rank": 0 if pred == gt else -1, "num_classes": 0}
        raise KeyError("Top1Accuracy needs pred_score or pred_label in every sample with a class label")

    def compute_metrics(self, results: list[dict[str, int]]) -> dict[str, float]:
        """Accuracy at each k.

        Args:
            results: Per-sample ranks collected by :meth:`process`.

        Returns:
            ``{'top1': float, 'top5': float, ...}`` (without prefix). ``top1``
            is NaN when no sample had a class label.
        """
        if not results:
            print_log("Top1Accuracy: no sample had a classification label; top1 is NaN", logger="current")
            return {"top1": math.nan}
        ranks = np.array([r["rank"] for r in results])
        num_classes = min(r["num_classes"] for r in results)
        metrics = {"top1": float(np.mean(ranks == 0))}
        for k in self.topk:
            if k > 1 and num_classes >= k:
                metrics[f"top{k}"] = float(np.mean((ranks >= 0) & (ranks < k)))
        return metrics
