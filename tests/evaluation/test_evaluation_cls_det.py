"""Top-1 accuracy, COCO mAP and the metrics table on hand-worked cases."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import BaseDataElement, InstanceData

from mtmnv3.evaluation import CocoDetMetric, Top1Accuracy, format_metrics_table

# COCO's 101 recall points 0, 0.01, ..., 1: a detector that reaches recall
# 0.5 at precision p (and no further) scores p on the 51 points <= 0.5 and 0
# on the other 50, so AP = p * 51/101.
HALF_RECALL_POINTS = 51 / 101


def cls_sample(gt: int, scores: list[float] | None, tasks: tuple = ("cls",)) -> BaseDataElement:
    sample = BaseDataElement(metainfo=dict(img_id=0, tasks=tasks))
    sample.gt_label = torch.tensor(gt)
    if scores is not None:
        sample.pred_score = torch.tensor(scores, dtype=torch.float32).softmax(0)
        sample.pred_label = sample.pred_score.argmax()
    return sample


def test_top1_and_top5_on_hand_made_scores():
    metric = Top1Accuracy()
    samples = [
        cls_sample(0, [5, 1, 0, 0, 0, 0]),  # rank 0: top-1 hit
        cls_sample(2, [5, 1, 4, 0, 0, 0]),  # rank 1: top-5 hit only
        cls_sample(5, [5, 4, 3, 2, 1, 0]),  # rank 5: miss at 5
        cls_sample(1, [0, 9, 0, 0, 0, 0]),  # rank 0
        cls_sample(-1, [9, 0, 0, 0, 0, 0]),  # no label: ignored
        cls_sample(3, [0, 0, 0, 9, 0, 0], tasks=("det",)),  # not a cls sample: ignored
    ]
    metric.process(None, samples)
    assert metric.evaluate(len(samples)) == {
        "cls/top1": pytest.approx(2 / 4),
        "cls/top5": pytest.approx(3 / 4),
    }


def test_top1_ties_go_to_the_lower_index_and_top5_needs_five_classes():
    metric = Top1Accuracy()
    # Equal scores: argmax picks class 0, so a true class 1 is a miss.
    metric.process(None, [cls_sample(1, [1, 1, 0]), cls_sample(0, [1, 1, 0])])
    assert metric.evaluate(2) == {"cls/top1": pytest.approx(0.5)}  # 3 classes: no top5


def test_top1_from_pred_label_only_and_empty():
    metric = Top1Accuracy()
    sample = BaseDataElement(metainfo=dict(img_id=0, tasks=("cls",)))
    sample.gt_label = torch.tensor(4)
    sample.pred_label = torch.tensor(4)
    metric.process(None, [sample])
    assert metric.evaluate(1) == {"cls/top1": 1.0}
    assert math.isnan(metric.evaluate(0)["cls/top1"])  # no labelled samples


def test_top1_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"topk must be positive integers, got \(0,\)"):
        Top1Accuracy(topk=(0,))
    with pytest.raises(ValueError, match="include 1"):
        Top1Accuracy(topk=(5,))
    with pytest.raises(ValueError, match="out of range"):
        Top1Accuracy().process(None, [cls_sample(7, [1, 0])])


SCALE = 2.0  # input image = 2x the original


def det_sample(
    img_id: int,
    gt_boxes: list,
    gt_labels: list,
    pred_boxes: list,
    scores: list,
    pred_labels: list,
    ignore: list | None = None,
) -> BaseDataElement:
    """Boxes given in original pixels; gt stored in input-image pixels like the data pipeline does."""
    sample = BaseDataElement(
        metainfo=dict(
            img_id=img_id,
            video_id=-1,
            frame_id=1,
            ori_shape=(300, 400),
            img_shape=(600, 800),
            scale_factor=(SCALE, SCALE),
            tasks=("det",),
        )
    )
    gt = InstanceData()
    gt.bboxes = torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4) * SCALE
    gt.labels = torch.tensor(gt_labels, dtype=torch.long)
    gt.instance_ids = torch.arange(len(gt_labels))
    gt.visibility = torch.ones(len(gt_labels))
    gt.ignore = torch.tensor(ignore if ignore is not None else [False] * len(gt_labels))
    sample.gt_instances = gt
    pred = InstanceData()
    pred.bboxes = torch.tensor(pred_boxes, dtype=torch.float32).reshape(-1, 4)
    pred.scores = torch.tensor(scores, dtype=torch.float32)
    pred.labels = torch.tensor(pred_labels, dtype=torch.long)
    sample.pred_instances = pred
    return sample


GT_1 = [0.0, 0.0, 100.0, 100.0]
GT_2 = [200.0, 100.0, 300.0, 200.0]
MATCH_82 = [0.0, 0.0, 100.0, 82.0]  # IoU with GT_1 = 8200/10000 = 0.82
NOWHERE = [350.0, 250.0, 390.0, 290.0]  # overlaps no gt


def run_metric(metric, samples) -> dict:
    evaluator = Evaluator(metric)
    evaluator.process(samples)
    return evaluator.evaluate(len(samples))


def test_perfect_detections_give_map_one():
    samples = [
        det_sample(1, [GT_1, GT_2], [0, 1], [GT_1, GT_2], [0.9, 0.8], [0, 1]),
        det_sample(2, [GT_2], [1], [GT_2], [0.7], [1]),
    ]
    m = run_metric(CocoDetMetric(), samples)
    assert m == {
        "det/mAP": pytest.approx(1.0),
        "det/mAP_50": pytest.approx(1.0),
        "det/mAP_75": pytest.approx(1.0),
    }


def test_hand_worked_ap_one_match_one_false_positive():
    # Two gts of one class. Detections: IoU-0.82 match (score 0.9), false positive (0.8).
    # Ranked: TP (P=1, R=0.5), FP (P=0.5, R=0.5). Recall never passes 0.5, and
    # the interpolated precision up to 0.5 is 1 -> AP = 51/101 at IoU 0.5 and 0.75.
    # The match survives IoU thresholds 0.50..0.80 (7 of 10); above, both
    # detections are false positives (AP 0) -> mAP = 7/10 * 51/101.
    sample = det_sample(1, [GT_1, GT_2], [0, 0], [MATCH_82, NOWHERE], [0.9, 0.8], [0, 0])
    m = run_metric(CocoDetMetric(), [sample])
    assert m["det/mAP_50"] == pytest.approx(HALF_RECALL_POINTS)
    assert m["det/mAP_75"] == pytest.approx(HALF_RECALL_POINTS)
    assert m["det/mAP"] == pytest.approx(0.7 * HALF_RECALL_POINTS)


def test_hand_worked_ap_false_positive_ranked_first():
    # Same boxes, the false positive scores higher: FP (P=0, R=0), TP (P=0.5, R=0.5).
    # Interpolated precision up to recall 0.5 is 0.5 -> AP@0.5 = 0.5 * 51/101.
    sample = det_sample(1, [GT_1, GT_2], [0, 0], [MATCH_82, NOWHERE], [0.3, 0.8], [0, 0])
    m = run_metric(CocoDetMetric(), [sample])
    assert m["det/mAP_50"] == pytest.approx(0.5 * HALF_RECALL_POINTS)


def test_ignored_gt_is_a_crowd_region_and_classwise_names():
    # GT_2 is ignored; a detection on it is neither TP nor FP; the remaining gt
    # is found -> AP 1 for class 0. Class 1 has a gt and no detection -> AP 0.
    sample = det_sample(
        1, [GT_1, GT_2, NOWHERE], [0, 0, 1], [GT_1, GT_2], [0.5, 0.9], [0, 0], ignore=[False, True, False]
    )
    metric = CocoDetMetric(classwise=True)
    metric.dataset_meta = {"classes": ("shirt", "shoe")}
    m = run_metric(metric, [sample])
    assert m["det/AP_shirt"] == pytest.approx(1.0)
    assert m["det/AP_shoe"] == pytest.approx(0.0)
    assert m["det/mAP"] == pytest.approx(0.5)


def test_in_memory_gt_matches_coco_json(tmp_path):
    samples = [
        det_sample(1, [GT_1, GT_2], [0, 1], [MATCH_82, NOWHERE, GT_2], [0.9, 0.8, 0.6], [0, 0, 1]),
        det_sample(2, [GT_2, NOWHERE], [1, 0], [[201, 101, 290, 205], NOWHERE], [0.4, 0.95], [1, 0]),
        det_sample(3, [GT_1], [1], [[5, 0, 100, 95]], [0.5], [1], ignore=[True]),
    ]
    # The same ground truth as a COCO json in original pixels (xywh), categories 1 and 2.
    images, anns = [], []
    for s in samples:
        images.append({"id": s.img_id, "height": 300, "width": 400, "file_name": f"{s.img_id}.jpg"})
        for box, label, ign in zip(
            s.gt_instances.bboxes / SCALE, s.gt_instances.labels, s.gt_instances.ignore
        ):
            x1, y1, x2, y2 = box.tolist()
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": s.img_id,
                    "category_id": int(label) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(ign),
                }
            )
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": anns,
                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            }
        )
    )
    in_memory = run_metric(CocoDetMetric(), samples)
    from_file = run_metric(CocoDetMetric(ann_file=ann_file), samples)
    assert 0 < in_memory["det/mAP"] < 1
    assert from_file == pytest.approx(in_memory)
    # The NumPy backend (default) and pycocotools' COCOeval agree in both ground-truth modes.
    for kwargs in ({}, {"ann_file": ann_file}):
        ref = run_metric(CocoDetMetric(backend="pycocotools", classwise=True, **kwargs), samples)
        assert run_metric(CocoDetMetric(classwise=True, **kwargs), samples) == pytest.approx(ref, abs=1e-12)
    with pytest.raises(ValueError, match="backend must be one of"):
        CocoDetMetric(backend="fast")


def test_coco_metric_errors_and_edge_cases(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDetMetric(ann_file=tmp_path / "missing.json")
    no_dets = det_sample(1, [GT_1], [0], [], [], [])
    for backend in ("numpy", "pycocotools"):
        zeros = {"det/mAP": 0.0, "det/mAP_50": 0.0, "det/mAP_75": 0.0}
        assert run_metric(CocoDetMetric(backend=backend), [no_dets]) == zeros
        metric = CocoDetMetric(label_to_cat_id={0: 0}, backend=backend)
        with pytest.raises(ValueError, match="predicted label 3 has no category id"):
            run_metric(metric, [det_sample(1, [GT_1], [0], [GT_1], [0.9], [3])])


def test_all_metrics_in_one_evaluator_and_table():
    cls = cls_sample(0, [3, 1, 0])
    det = det_sample(1, [GT_1], [0], [GT_1], [0.9], [0])
    evaluator = Evaluator([Top1Accuracy(), CocoDetMetric()])
    evaluator.process([cls, det])
    metrics = evaluator.evaluate(2)
    assert metrics["cls/top1"] == 1.0 and metrics["det/mAP"] == pytest.approx(1.0)
    table = format_metrics_table({**metrics, "mot/IDSW": 3, "mot/MOTA": math.nan}).splitlines()
    assert table[0] == "| task | top1 | mAP | mAP_50 | mAP_75 | IDSW | MOTA |"
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert table[2] == "| cls | 1.0000 |  |  |  |  |  |"
    assert table[3] == "| det |  | 1.0000 | 1.0000 | 1.0000 |  |  |"
    assert table[4] == "| mot |  |  |  |  | 3 | nan |"


def test_format_metrics_table_orders_tasks_and_validates():
    table = format_metrics_table({"mot/HOTA": 0.5, "speed": 12.345678, "cls/top1": 0.25}, precision=2)
    assert table.splitlines()[2:] == ["| cls |  |  | 0.25 |", "| mot | 0.50 |  |  |", "| - |  | 12.35 |  |"]
    assert format_metrics_table({}) == ""
    with pytest.raises(TypeError, match="list"):
        format_metrics_table([("cls/top1", 1.0)])
    with pytest.raises(ValueError, match="-1"):
        format_metrics_table({"cls/top1": 1.0}, precision=-1)


def test_letterboxed_multitask_samples_map_back_to_original_pixels():
    from mtmnv3.core.structures import MultiTaskDataSample
    from mtmnv3.evaluation import MOTMetric

    # Original 300x400 (H, W) letterboxed into 320x320: scale 0.8 -> 240x320, 40 px pad on top.
    scale, top, left = 0.8, 40, 0
    samples = []
    for frame in (1, 2):
        sample = MultiTaskDataSample(
            metainfo=dict(
                img_id=frame,
                video_id=0,
                frame_id=frame,
                ori_shape=(300, 400),
                img_shape=(320, 320),
                scale_factor=(scale, scale),
                pad_param=(top, 40, left, 0),
                tasks=("det", "track"),
            )
        )
        original = torch.tensor([GT_1, GT_2])
        gt = InstanceData()
        gt.bboxes = original * scale + torch.tensor([left, top, left, top])
        gt.labels = torch.tensor([0, 1])
        gt.instance_ids = torch.tensor([1, 2])
        gt.visibility = torch.ones(2)
        gt.ignore = torch.zeros(2, dtype=torch.bool)
        sample.gt_instances = gt
        pred = InstanceData(
            bboxes=original.clone(), scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1])
        )
        sample.pred_instances = pred
        sample.pred_track_instances = InstanceData(
            bboxes=original.clone(), scores=torch.tensor([0.9, 0.8]), instance_ids=torch.tensor([7, 8])
        )
        samples.append(sample)
    m = run_metric([CocoDetMetric(), MOTMetric()], samples)
    assert m["det/mAP"] == pytest.approx(1.0)
    assert m["mot/MOTA"] == pytest.approx(1.0) and m["mot/MOTP"] == pytest.approx(1.0)
    assert m["mot/HOTA"] == pytest.approx(1.0)
