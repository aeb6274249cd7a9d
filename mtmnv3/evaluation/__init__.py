"""Metrics of the multi-task model, registered in ``mtmnv3.core.registry.METRICS``.

=====================  ==========================================================
metric                 keys returned by ``evaluate`` (default prefixes)
=====================  ==========================================================
:class:`Top1Accuracy`  ``cls/top1``, ``cls/top5``
:class:`CocoDetMetric` ``det/mAP``, ``det/mAP_50``, ``det/mAP_75`` (``det/AP_<class>``)
:class:`MOTMetric`     ``mot/MOTA``, ``mot/IDF1``, ``mot/HOTA``, ``mot/IDSW``,
                       ``mot/MOTP``, ``mot/FP``, ``mot/FN``, ``mot/DetA``, ``mot/AssA``
=====================  ==========================================================

:func:`format_metrics_table` turns the flat keys into a markdown table with one
row per task. :func:`evaluate_mot` and :func:`evaluate_mot_files` work without mmengine's Runner;
:func:`within_video_reid` scores embeddings against the other objects of their video.
"""

from mtmnv3.evaluation.classification import Top1Accuracy
from mtmnv3.evaluation.coco import CocoDetMetric, build_coco_gt, coco_evaluate
from mtmnv3.evaluation.mot import MOT_METRIC_KEYS, MOTMetric, evaluate_mot, evaluate_mot_files
from mtmnv3.evaluation.reid import within_video_reid
from mtmnv3.evaluation.table import format_metrics_table, format_splits_table, split_means, summarize_splits

__all__ = [
    "Top1Accuracy",
    "CocoDetMetric",
    "MOTMetric",
    "MOT_METRIC_KEYS",
    "build_coco_gt",
    "coco_evaluate",
    "evaluate_mot",
    "evaluate_mot_files",
    "format_metrics_table",
    "format_splits_table",
    "split_means",
    "summarize_splits",
    "within_video_reid",
]
