"""COCO box mAP (``det/mAP``, ``det/mAP_50``, ``det/mAP_75``): pycocotools' numbers.

The default backend is :mod:`.box_ap`, an exact NumPy port of ``COCOeval``'s
bbox evaluation for these numbers (vectorised, ``benchmarks/box_ap_speed.py``
times it; checked against pycocotools in the tests); ``backend='pycocotools'`` runs ``COCOeval`` itself
and logs its full 12-line summary.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mtmnv3.core.registry import METRICS
from mtmnv3.evaluation._sample import boxes_to_original, get_field, has_field, sample_tasks, to_numpy
from mtmnv3.evaluation.box_ap import coco_box_ap

__all__ = ["CocoDetMetric", "build_coco_gt", "coco_evaluate"]

#: Indices into ``COCOeval.stats`` of the reported summary numbers.
STAT_MAP, STAT_MAP_50, STAT_MAP_75 = 0, 1, 2
#: Index of the "all" area range and of the largest ``maxDets`` in ``COCOeval.eval['precision']``.
AREA_ALL, MAX_DETS_LAST = 0, -1
#: pycocotools' marker for "no ground truth to evaluate against".
COCO_UNDEFINED = -1.0
#: Evaluation backends of :class:`CocoDetMetric`.
BACKENDS = ("numpy", "pycocotools")


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    out = boxes.astype(np.float64).copy()
    out[:, 2:] = boxes[:, 2:] - boxes[:, :2]
    return out


def _boxes_of(instances: Any, what: str, img_id: int) -> np.ndarray:
    boxes = to_numpy(get_field(instances, "bboxes"), np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what}.bboxes of img_id={img_id} must have shape (N, 4), got {boxes.shape}")
    return boxes


def build_coco_gt(images: Sequence[Mapping[str, Any]], categories: Sequence[int]) -> COCO:
    """Build an in-memory pycocotools ``COCO`` ground truth.

    Args:
        images: One dict per image with ``img_id`` (int), ``height``,
            ``width``, ``bboxes`` (K, 4) xyxy original-image pixels,
            ``labels`` (K,) category ids and ``ignore`` (K,) bool. Ignored
            boxes become ``iscrowd=1`` regions: detections on them count
            neither as true nor as false positives.
        categories: Category ids to evaluate.

    Returns:
        The indexed ``COCO`` object.
    """
    anns = []
    for image in images:
        xywh = _xyxy_to_xywh(np.asarray(image["bboxes"], np.float64).reshape(-1, 4))
        for box, label, ignore in zip(xywh, image["labels"], image["ignore"]):
            anns.append(
                {
                    "id": len(anns) + 1,  # pycocotools treats id 0 as "unmatched"
                    "image_id": int(image["img_id"]),
                    "category_id": int(label),
                    "bbox": [float(v) for v in box],
                    "area": float(box[2] * box[3]),
                    "iscrowd": int(bool(ignore)),
                }
            )
    dataset = {
        "images": [
            {"id": int(im["img_id"]), "height": int(im["height"]), "width": int(im["width"])} for im in images
        ],
        "annotations": anns,
        "categories": [{"id": int(c), "name": str(c)} for c in categories],
    }
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_evaluate(
    coco_gt: COCO,
    detections: Sequence[Mapping[str, Any]],
    img_ids: Sequence[int] | None = None,
    classwise: bool = False,
) -> tuple[dict[str, float], str]:
    """Run ``COCOeval`` (bbox) and return the summary numbers.

    Args:
        coco_gt: Ground truth.
        detections: COCO result dicts (``image_id``, ``category_id``,
            ``bbox`` xywh, ``score``).
        img_ids: Images to evaluate; all images of ``coco_gt`` when ``None``.
        classwise: Also return ``AP_<category id>`` per category.

    Returns:
        ``(metrics, summary)``: ``mAP``, ``mAP_50``, ``mAP_75`` (NaN when no
        ground truth box exists) and the text pycocotools prints.
    """
    img_ids = sorted(coco_gt.getImgIds()) if img_ids is None else sorted(int(i) for i in img_ids)
    if not detections:
        has_gt = any(not a.get("iscrowd", 0) for a in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=img_ids)))
        value = 0.0 if has_gt else math.nan
        metrics = {"mAP": value, "mAP_50": value, "mAP_75": value}
        if classwise:
            metrics.update({f"AP_{c}": value for c in coco_gt.getCatIds()})
        return metrics, "no detections"
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        coco_dt = coco_gt.loadRes(list(detections))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = img_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    def _defined(value: float) -> float:
        return math.nan if value == COCO_UNDEFINED else float(value)

    stats = evaluator.stats
    metrics = {
        "mAP": _defined(stats[STAT_MAP]),
        "mAP_50": _defined(stats[STAT_MAP_50]),
        "mAP_75": _defined(stats[STAT_MAP_75]),
    }
    if classwise:
        # precision: (iou thresholds, recall thresholds, categories, area ranges, max dets)
        precision = evaluator.eval["precision"]
        for k, cat_id in enumerate(evaluator.params.catIds):
            p = precision[:, :, k, AREA_ALL, MAX_DETS_LAST]
            p = p[p > COCO_UNDEFINED]
            metrics[f"AP_{cat_id}"] = float(np.mean(p)) if p.size else math.nan
    return metrics, buffer.getvalue()


@METRICS.register_module()
class CocoDetMetric(BaseMetric):
    """COCO box mAP (IoU 0.50:0.95), AP@0.5 and AP@0.75, pycocotools' numbers.

    Samples count when their ``tasks`` metainfo includes ``'det'`` (or, when
    ``tasks`` is absent, when they carry ``gt_instances``). Predictions come
    from ``pred_instances`` (``bboxes`` xyxy in original-image pixels,
    ``scores``, ``labels``).

    Ground truth, by default, is taken from each sample's ``gt_instances``:
    boxes in input-image pixels are mapped back to original-image pixels
    (letterbox ``pad_param`` removed, then divided by ``scale_factor`` (w, h)),
    ``labels`` are the category ids and ``ignore`` boxes become crowd regions.
    With ``ann_file`` a COCO json is the ground truth instead, matched to the
    samples on ``img_id``; predicted label ``i`` then means the i-th category
    id of the file in sorted order (the mmdet convention), unless
    ``label_to_cat_id`` says otherwise.

    With the default prefix ``'det'`` the keys returned by ``evaluate`` are
    ``det/mAP``, ``det/mAP_50``, ``det/mAP_75`` and, with ``classwise``,
    ``det/AP_<class name>``. With ``backend='pycocotools'``, pycocotools'
    printed summary goes to the logger at DEBUG level.

    Args:
        ann_file: Optional COCO json used as ground truth.
        classwise: Also report per-class AP.
        label_to_cat_id: Optional explicit map from predicted label to
            category id.
        collect_device: ``'cpu'`` or ``'gpu'``.
        prefix: Key prefix; defaults to ``'det'``.
        backend: ``'numpy'`` (:func:`.box_ap.coco_box_ap`, the default) or
            ``'pycocotools'`` (``COCOeval``); both give the same numbers.
    """

    default_prefix = "det"

    def __init__(
        self,
        ann_file: str | os.PathLike | None = None,
        classwise: bool = False,
        label_to_cat_id: Mapping[int, int] | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        backend: str = "numpy",
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if backend not in BACKENDS:
            raise ValueError(f"CocoDetMetric backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.classwise = bool(classwise)
        self.coco_gt: COCO | None = None
        self.label_to_cat_id: dict[int, int] | None = None
        if ann_file is not None:
            if not os.path.isfile(ann_file):
                raise FileNotFoundError(f"CocoDetMetric ann_file does not exist: {ann_file!r}")
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco_gt = COCO(os.fspath(ann_file))
            self.label_to_cat_id = dict(enumerate(sorted(self.coco_gt.getCatIds())))
        if label_to_cat_id is not None:
            if not isinstance(label_to_cat_id, Mapping):
                raise TypeError(f"label_to_cat_id must be a mapping, got {type(label_to_cat_id).__name__}")
            self.label_to_cat_id = {int(k): int(v) for k, v in label_to_cat_id.items()}

    def _uses_sample(self, sample: Mapping | BaseDataElement) -> bool:
        tasks = sample_tasks(sample)
        if tasks is not None:
            return "det" in tasks
        return has_field(sample, "gt_instances") or self.coco_gt is not None

    def process(self, data_batch: Any, data_samples: Sequence[Mapping | BaseDataElement]) -> None:
        """Collect, per detection sample, predictions and (in-memory mode) ground truth.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples: The model's outputs, as dicts or data elements.
        """
        for sample in data_samples:
            if not self._uses_sample(sample):
                continue
            img_id = int(get_field(sample, "img_id"))
            if not has_field(sample, "pred_instances"):
                raise KeyError(f"CocoDetMetric needs pred_instances in sample img_id={img_id}")
            pred = get_field(sample, "pred_instances")
            result: dict[str, Any] = {
                "img_id": img_id,
                "pred_bboxes": _boxes_of(pred, "pred_instances", img_id),
                "pred_scores": to_numpy(get_field(pred, "scores"), np.float64).reshape(-1),
                "pred_labels": to_numpy(get_field(pred, "labels"), np.int64).reshape(-1),
            }
            if self.coco_gt is None:
                result.update(self._gt_of(sample, img_id))
            self.results.append(result)

    @staticmethod
    def _gt_of(sample: Mapping | BaseDataElement, img_id: int) -> dict[str, Any]:
        gt = get_field(sample, "gt_instances")
        boxes = _boxes_of(gt, "gt_instances", img_id)
        boxes = boxes_to_original(boxes, sample)
        ignore = get_field(gt, "ignore", None)
        ignore = np.zeros(len(boxes), bool) if ignore is None else to_numpy(ignore, bool).reshape(-1)
        ori_shape = get_field(sample, "ori_shape", None)
        if ori_shape is None:
            raise KeyError(f"CocoDetMetric needs the ori_shape metainfo of sample img_id={img_id}")
        return {
            "height": int(ori_shape[0]),
            "width": int(ori_shape[1]),
            "bboxes": boxes,
            "labels": to_numpy(get_field(gt, "labels"), np.int64).reshape(-1),
            "ignore": ignore,
        }

    def _class_names(self, categories: Sequence[int]) -> dict[int, str]:
        classes = (self.dataset_meta or {}).get("classes")
        names = {}
        for cat_id in categories:
            if self.coco_gt is not None:
                names[cat_id] = self.coco_gt.loadCats([cat_id])[0].get("name", str(cat_id))
            elif classes is not None and 0 <= cat_id < len(classes):
                names[cat_id] = str(classes[cat_id])
            else:
                names[cat_id] = str(cat_id)
        return names

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float]:
        """COCO bbox evaluation of everything collected.

        Args:
            results: Per-image records collected by :meth:`process`.

        Returns:
            ``{'mAP', 'mAP_50', 'mAP_75'}`` (and ``AP_<name>`` with
            ``classwise``), fractions in [0, 1]; NaN when there is no ground
            truth box.
        """
        results = list({r["img_id"]: r for r in results}.values())  # drop padding duplicates
        if self.coco_gt is not None:
            coco_gt = self.coco_gt
            missing = sorted({r["img_id"] for r in results} - set(coco_gt.getImgIds()))
            if missing:
                raise ValueError(f"img_id(s) {missing[:10]} of the samples are not in the COCO ann_file")
        else:
            labels = {int(v) for r in results for v in r["labels"]} | {
                int(v) for r in results for v in r["pred_labels"]
            }
            coco_gt = build_coco_gt(results, sorted(labels))
        img_ids = [r["img_id"] for r in results]
        if self.backend == "numpy":
            metrics = self._numpy_metrics(coco_gt, results, img_ids)
        else:
            metrics, summary = coco_evaluate(
                coco_gt, self._detections(results), img_ids=img_ids, classwise=self.classwise
            )
            print_log(f"pycocotools bbox summary:\n{summary}", logger="current", level=logging.DEBUG)
        if self.classwise:
            names = self._class_names(sorted(coco_gt.getCatIds()))
            for cat_id, name in names.items():
                metrics[f"AP_{name}"] = metrics.pop(f"AP_{cat_id}")
        return metrics

    def _cat_ids_of(self, labels: np.ndarray) -> np.ndarray:
        if self.label_to_cat_id is None:
            return labels.astype(np.int64)
        missing = sorted({int(v) for v in labels} - set(self.label_to_cat_id))
        if missing:
            raise ValueError(f"predicted label {missing[0]} has no category id in label_to_cat_id")
        return np.asarray([self.label_to_cat_id[int(v)] for v in labels], np.int64)

    def _detections(self, results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """COCO result dicts of all predictions (the pycocotools backend)."""
        detections = []
        for r in results:
            cat_ids = self._cat_ids_of(r["pred_labels"])
            for box, score, cat_id in zip(_xyxy_to_xywh(r["pred_bboxes"]), r["pred_scores"], cat_ids):
                detections.append(
                    {
                        "image_id": r["img_id"],
                        "category_id": int(cat_id),
                        "bbox": [float(v) for v in box],
                        "score": float(score),
                    }
                )
        return detections

    def _numpy_metrics(
        self, coco_gt: COCO, results: Sequence[Mapping[str, Any]], img_ids: Sequence[int]
    ) -> dict[str, float]:
        """The same numbers as :func:`coco_evaluate`, from arrays (:func:`.box_ap.coco_box_ap`)."""
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=list(img_ids)))
        dt_boxes = [_xyxy_to_xywh(r["pred_bboxes"]).reshape(-1, 4) for r in results]

        def joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        result = coco_box_ap(
            gt_boxes=np.asarray([a["bbox"] for a in anns], np.float64).reshape(-1, 4),
            gt_img_ids=np.asarray([a["image_id"] for a in anns], np.int64),
            gt_cat_ids=np.asarray([a["category_id"] for a in anns], np.int64),
            gt_crowd=np.asarray([bool(a.get("iscrowd", 0)) for a in anns], bool),
            gt_areas=np.asarray([a["area"] for a in anns], np.float64),
            dt_boxes=joined(dt_boxes, np.float64).reshape(-1, 4),
            dt_img_ids=joined([np.full(len(b), r["img_id"]) for b, r in zip(dt_boxes, results)], np.int64),
            dt_cat_ids=joined([self._cat_ids_of(r["pred_labels"]) for r in results], np.int64),
            dt_scores=joined([r["pred_scores"] for r in results], np.float64),
            img_ids=img_ids,
            cat_ids=coco_gt.getCatIds(),
        )
        metrics = result.summary()
        if not any(len(b) for b in dt_boxes):  # as coco_evaluate: no detections score 0, or NaN without gt
            has_gt = any(not a.get("iscrowd", 0) for a in anns)
            metrics = {k: (0.0 if has_gt else math.nan) for k in metrics}
        if self.classwise:
            metrics.update({f"AP_{c}": v for c, v in result.per_category().items()})
            if not any(len(b) for b in dt_boxes):
                metrics.update({f"AP_{c}": metrics["mAP"] for c in result.cat_ids})
        return metrics
