"""The NumPy COCO box AP against pycocotools' COCOeval on random scenes."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mtmnv3.evaluation.box_ap import box_iou_xywh, coco_box_ap


def _scene(seed: int, num_imgs: int = 12, num_cats: int = 4):
    """Ground truth and detections with crowds, duplicates, score ties, empty images and off-category dets."""
    rng = np.random.default_rng(seed)
    gts, dts = [], []
    for img in range(1, num_imgs + 1):
        if img % 5 == 0:  # an image with no ground truth at all
            n_gt = 0
        else:
            n_gt = int(rng.integers(0, 6))
        boxes = []
        for _ in range(n_gt):
            x, y = rng.uniform(0, 200, 2)
            w, h = rng.uniform(4, 80, 2)
            cat = int(rng.integers(1, num_cats + 1))
            crowd = bool(rng.random() < 0.15)
            gts.append((img, cat, [x, y, w, h], crowd))
            boxes.append((cat, [x, y, w, h]))
        n_dt = int(rng.integers(0, 8))
        for _ in range(n_dt):
            if boxes and rng.random() < 0.7:  # a jittered copy of a box, sometimes a duplicate
                cat, (x, y, w, h) = boxes[int(rng.integers(len(boxes)))]
                jit = rng.normal(0, 0.12, 4) * [w, h, w, h]
                box = [x + jit[0], y + jit[1], max(w + jit[2], 1.0), max(h + jit[3], 1.0)]
                if rng.random() < 0.1:
                    cat = int(rng.integers(1, num_cats + 2))  # a wrong or unknown category
            else:
                box = [*rng.uniform(0, 200, 2), *rng.uniform(4, 80, 2)]
                cat = int(rng.integers(1, num_cats + 1))
            score = float(np.round(rng.random(), 1))  # coarse scores: many ties
            dts.append((img, cat, box, score))
    if seed % 3 == 0:  # areas beyond pycocotools' "all" range (1e10): an ignored box, an ignored miss
        gts.append((2, 1, [0.0, 0.0, 2e5, 2e5], False))
        dts += [
            (2, 1, [0.0, 0.0, 2e5, 1.9e5], 0.8),
            (2, 1, [0.0, 0.0, 2e5, 2.1e5], 0.7),
            (3, 2, [0.0, 0.0, 3e5, 3e5], 0.9),
        ]
    if seed % 2:  # many detections in one image and category: the max_dets cut
        for j in range(130):
            dts.append((1, 1, [float(j), float(j), 30.0, 30.0], float(np.round(rng.random(), 2))))
    return gts, dts


def _pycocotools(gts, dts, num_imgs, cat_ids):
    dataset = {
        "images": [{"id": i, "height": 300, "width": 300} for i in range(1, num_imgs + 1)],
        "annotations": [
            {
                "id": n + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": int(cr),
            }
            for n, (img, cat, box, cr) in enumerate(gts)
        ],
        "categories": [{"id": c} for c in cat_ids],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in dts])
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _ours(gts, dts, num_imgs, cat_ids):
    def col(rows, i, dtype):
        return np.asarray([r[i] for r in rows], dtype)

    return coco_box_ap(
        gt_boxes=np.asarray([g[2] for g in gts], np.float64).reshape(-1, 4),
        gt_img_ids=col(gts, 0, np.int64),
        gt_cat_ids=col(gts, 1, np.int64),
        gt_crowd=col(gts, 3, bool),
        gt_areas=np.asarray([g[2][2] * g[2][3] for g in gts], np.float64),
        dt_boxes=np.asarray([d[2] for d in dts], np.float64).reshape(-1, 4),
        dt_img_ids=col(dts, 0, np.int64),
        dt_cat_ids=col(dts, 1, np.int64),
        dt_scores=col(dts, 3, np.float64),
        img_ids=range(1, num_imgs + 1),
        cat_ids=cat_ids,
    )


@pytest.mark.parametrize("seed", range(8))
def test_precision_recall_and_summary_equal_pycocotools(seed):
    num_imgs, cat_ids = 12, [1, 2, 3, 4, 7]  # category 7 has no ground truth: undefined
    gts, dts = _scene(seed, num_imgs)
    ref = _pycocotools(gts, dts, num_imgs, cat_ids)
    ours = _ours(gts, dts, num_imgs, cat_ids)
    # COCOeval.eval['precision']: (T, R, K, area ranges, maxDets); area "all" = 0, maxDets 100 = -1.
    np.testing.assert_allclose(ours.precision, ref.eval["precision"][:, :, :, 0, -1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"][:, :, 0, -1], rtol=0, atol=1e-12)
    summary = ours.summary()
    for key, idx in (("mAP", 0), ("mAP_50", 1), ("mAP_75", 2)):
        assert summary[key] == pytest.approx(ref.stats[idx], abs=1e-12)


def test_iou_equals_pycocotools_mask_iou_with_crowds():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(3)
    dt = np.c_[rng.uniform(0, 50, (9, 2)), rng.uniform(1, 40, (9, 2))]
    gt = np.c_[rng.uniform(0, 50, (6, 2)), rng.uniform(1, 40, (6, 2))]
    crowd = np.array([0, 1, 0, 0, 1, 0], bool)
    ref = mask_utils.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())
    np.testing.assert_allclose(box_iou_xywh(dt, gt, crowd), ref, rtol=0, atol=1e-15)


def test_no_ground_truth_is_undefined_and_bad_input_is_named():
    res = coco_box_ap(
        np.zeros((0, 4)), [], [], [], [], [[0, 0, 5, 5]], [1], [1], [0.9], img_ids=[1], cat_ids=[1]
    )
    assert all(math.isnan(v) for v in res.summary().values())
    with pytest.raises(ValueError, match="image ids \\[9\\]"):
        coco_box_ap(
            np.zeros((0, 4)), [], [], [], [], [[0, 0, 5, 5]], [9], [1], [0.9], img_ids=[1], cat_ids=[1]
        )
    with pytest.raises(ValueError, match="must match the boxes"):
        coco_box_ap(
            [[0, 0, 1, 1]], [1, 2], [1], [0], [1], np.zeros((0, 4)), [], [], [], img_ids=[1], cat_ids=[1]
        )
