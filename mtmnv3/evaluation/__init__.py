"""Metrics of the multi-task model, registered in ``mtmnv3.registry.METRICS``.

=====================  ==========================================================
metric                 keys returned by ``evaluate`` (default prefixes)
=====================  ==========================================================
:class:`Top1Accuracy`  ``cls/top1``, ``cls/top5``
:class:`CocoDetMetric` ``det/mAP``, ``det/mAP_50``, ``det/mAP_75`` (``det/AP_<class>``)
:class:`MOTMetric`     ``mot/MOTA``, ``mot/IDF1``, ``mot/HOTA``, ``mot/IDSW``,
                       ``mot/MOTP``, ``mot/FP``, ``mot/FN``, ``mot/DetA``, ``mot/AssA``
=====================  ==========================================================

:func:`format_metrics_table` turns the flat keys into a markdown table with one
row per task. :func:`evaluate_mot`, :func:`evaluate_mot_files`,
:func:`load_mot_txt` and :func:`write_mot_txt` work without mmengine's Runner;
:func:`within_video_reid` scores embeddings against the other objects of their video.
"""

from .classification import Top1Accuracy
from .coco import CocoDetMetric, build_coco_gt, coco_evaluate
from .mot import MOT_METRIC_KEYS, MOTMetric, evaluate_mot, evaluate_mot_files
from .mot_io import MOTFormatError, load_mot_txt, write_mot_txt
from .reid import within_video_reid
from .table import format_metrics_table, format_splits_table, split_means, summarize_splits

__all__ = [
    "Top1Accuracy",
    "CocoDetMetric",
    "MOTMetric",
    "MOT_METRIC_KEYS",
    "build_coco_gt",
    "coco_evaluate",
    "evaluate_mot",
    "evaluate_mot_files",
    "load_mot_txt",
    "write_mot_txt",
    "MOTFormatError",
    "format_metrics_table",
    "format_splits_table",
    "split_means",
    "summarize_splits",
    "within_video_reid",
]
