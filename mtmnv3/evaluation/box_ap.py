"""COCO box AP in NumPy: pycocotools' ``COCOeval`` (bbox) numbers, vectorised.

pycocotools evaluates every (image, category, area range) in Python, one
detection and one ground-truth box at a time, and builds result dicts for each
detection; its time grows with every detection of the split, and the shift
suite repeats the evaluation for every condition (``benchmarks/box_ap_speed.py``
times both backends on a split of the default test split's shape). This module
computes the three headline numbers ``mAP`` (IoU 0.50:0.95), ``mAP_50`` and
``mAP_75`` at area range "all" and 100 detections per image and category, plus
per-category AP, with the same rules, in the same order:

* IoU as pycocotools' C ``bbIou``: xywh boxes, ``inter / union``; for crowd
  ground truth ``inter / det_area``;
* per (image, category): detections stable-sorted by descending score and cut
  to ``max_dets``; ground truth stable-sorted with non-ignored boxes first
  (ignored = crowd, or area outside [0, 1e10]);
* greedy matching in score order at each IoU threshold: a detection takes the
  unmatched (or crowd) box of highest IoU >= the threshold, ties to the later
  box, and a non-ignored box beats any ignored one; a detection matched to an
  ignored box, or unmatched with an area outside the range, is ignored;
* per category: detections of all images (image ids sorted) stable-sorted by
  descending score, cumulative TP/FP, precision made monotone and read at the
  101 recall points; categories without non-ignored ground truth are
  undefined (-1) and left out of the means.

Vectorised over IoU thresholds; only detections that reach the lowest
threshold against some box go through the (per-detection) matching loop.
``tests/test_evaluation_box_ap.py`` checks the numbers against pycocotools
on random scenes with crowds, ties and empty images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["IOU_THRESHOLDS", "RECALL_THRESHOLDS", "BoxAPResult", "box_iou_xywh", "coco_box_ap"]

#: pycocotools' IoU thresholds 0.50:0.05:0.95 and 101 recall points (built the same way).
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: pycocotools' "all" area range.
AREA_ALL_RANGE = (0.0, 1e5**2)
#: pycocotools' cap on a threshold so that IoU 1 still matches at threshold 1.
_MAX_IOU_THR = 1 - 1e-10
UNDEFINED = -1.0


@dataclass(frozen=True)
class BoxAPResult:
    """``precision`` (T, R, K) and ``recall`` (T, K) as in ``COCOeval.eval`` (area all, 100 dets)."""

    precision: np.ndarray
    recall: np.ndarray
    cat_ids: tuple[int, ...]

    def _mean(self, p: np.ndarray) -> float:
        p = p[p > UNDEFINED]
        return float(np.mean(p)) if p.size else math.nan

    def summary(self) -> dict[str, float]:
        """``mAP``, ``mAP_50``, ``mAP_75`` (NaN where pycocotools gives -1)."""
        at = {thr: int(np.where(IOU_THRESHOLDS == thr)[0][0]) for thr in (0.5, 0.75)}
        return {
            "mAP": self._mean(self.precision),
            "mAP_50": self._mean(self.precision[at[0.5]]),
            "mAP_75": self._mean(self.precision[at[0.75]]),
        }

    def per_category(self) -> dict[int, float]:
        """AP (IoU 0.50:0.95) per category id."""
        return {c: self._mean(self.precision[:, :, k]) for k, c in enumerate(self.cat_ids)}


def box_iou_xywh(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU (D, G) of xywh boxes, pycocotools' ``bbIou``: crowd boxes divide by the detection's area."""
    dt = np.asarray(dt, np.float64).reshape(-1, 4)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    w = np.minimum(dt[:, None, 2] + dt[:, None, 0], gt[None, :, 2] + gt[None, :, 0]) - np.maximum(
        dt[:, None, 0], gt[None, :, 0]
    )
    h = np.minimum(dt[:, None, 3] + dt[:, None, 1], gt[None, :, 3] + gt[None, :, 1]) - np.maximum(
        dt[:, None, 1], gt[None, :, 1]
    )
    inter = w * h
    da = (dt[:, 2] * dt[:, 3])[:, None]
    ga = (gt[:, 2] * gt[:, 3])[None, :]
    union = np.where(np.asarray(crowd, bool)[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _positions(ids: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each id in the sorted ``table`` and whether it is there."""
    pos = np.searchsorted(table, ids)
    pos_c = np.minimum(pos, max(len(table) - 1, 0))
    found = (pos < len(table)) & (table[pos_c] == ids) if len(table) else np.zeros(len(ids), bool)
    return pos_c, found


def _group_starts(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted key array (plus the end)."""
    if len(keys) == 0:
        return np.zeros(1, np.int64)
    return np.concatenate([[0], np.flatnonzero(keys[1:] != keys[:-1]) + 1, [len(keys)]])


def _match(
    ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray, thr: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of score-sorted detections to ignore-sorted ground truth at every threshold.

    Returns:
        ``(matched, matched_ignored)``, both (T, D) bool.
    """
    num_t, (num_d, num_g) = len(thr), ious.shape
    matched = np.zeros((num_t, num_d), bool)
    matched_ign = np.zeros((num_t, num_d), bool)
    gt_taken = np.zeros((num_t, num_g), bool)
    n_keep = int(np.count_nonzero(~gt_ignore))  # non-ignored boxes come first
    reusable = gt_crowd[None, :]
    rows = np.arange(num_t)
    for d in np.flatnonzero(ious.max(axis=1, initial=0.0) >= thr.min()):
        row = ious[d]
        ok = (row[None, :] >= thr[:, None]) & (~gt_taken | reusable)
        pick = np.full(num_t, -1)
        for lo, hi in ((0, n_keep), (n_keep, num_g)):
            if hi <= lo:
                continue
            part = ok[:, lo:hi]
            has = part.any(axis=1) & (pick < 0)
            if not has.any():
                continue
            vals = np.where(part, row[None, lo:hi], -np.inf)[:, ::-1]
            last_best = hi - 1 - np.argmax(vals, axis=1)  # ties go to the later box
            pick = np.where(has, last_best, pick)
        hit = pick >= 0
        if hit.any():
            matched[hit, d] = True
            matched_ign[hit, d] = gt_ignore[pick[hit]]
            gt_taken[rows[hit], pick[hit]] = True
    return matched, matched_ign


def coco_box_ap(
    gt_boxes: np.ndarray,
    gt_img_ids: np.ndarray,
    gt_cat_ids: np.ndarray,
    gt_crowd: np.ndarray,
    gt_areas: np.ndarray,
    dt_boxes: np.ndarray,
    dt_img_ids: np.ndarray,
    dt_cat_ids: np.ndarray,
    dt_scores: np.ndarray,
    img_ids: Sequence[int],
    cat_ids: Sequence[int],
    max_dets: int = 100,
) -> BoxAPResult:
    """COCO bbox precision/recall at area "all" and ``max_dets`` detections, as ``COCOeval``.

    Args:
        gt_boxes: (G, 4) xywh ground-truth boxes, in annotation order.
        gt_img_ids, gt_cat_ids: (G,) their image and category ids.
        gt_crowd: (G,) crowd flags (crowd boxes are ignored regions).
        gt_areas: (G,) annotation areas (only the area-range test reads them).
        dt_boxes: (D, 4) xywh detections, in result order.
        dt_img_ids, dt_cat_ids, dt_scores: (D,) their image ids, category ids and scores.
        img_ids: images to evaluate (pycocotools' ``params.imgIds``).
        cat_ids: categories to evaluate (``params.catIds``).
        max_dets: detections kept per image and category.

    Returns:
        The precision (T, R, K) and recall (T, K) arrays.

    Raises:
        ValueError: mismatched lengths, or a detection on an image outside
            ``img_ids`` (pycocotools' ``loadRes`` refuses those too).
    """
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    dt_boxes = np.asarray(dt_boxes, np.float64).reshape(-1, 4)
    gt_cols = [np.asarray(a).reshape(-1) for a in (gt_img_ids, gt_cat_ids, gt_crowd, gt_areas)]
    dt_cols = [np.asarray(a).reshape(-1) for a in (dt_img_ids, dt_cat_ids, dt_scores)]
    if any(len(a) != len(gt_boxes) for a in gt_cols) or any(len(a) != len(dt_boxes) for a in dt_cols):
        raise ValueError(
            f"coco_box_ap: per-box arrays must match the boxes: {len(gt_boxes)} ground-truth boxes with "
            f"lengths {[len(a) for a in gt_cols]}, {len(dt_boxes)} detections with {[len(a) for a in dt_cols]}"
        )
    imgs = np.unique(np.asarray(list(img_ids), np.int64))
    cats = np.unique(np.asarray(list(cat_ids), np.int64))
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(cats)
    precision = np.full((num_t, num_r, num_k), UNDEFINED)
    recall = np.full((num_t, num_k), UNDEFINED)

    g_img, g_in_img = _positions(gt_cols[0].astype(np.int64), imgs)
    g_cat, g_in_cat = _positions(gt_cols[1].astype(np.int64), cats)
    d_img, d_in_img = _positions(dt_cols[0].astype(np.int64), imgs)
    d_cat, d_in_cat = _positions(dt_cols[1].astype(np.int64), cats)
    if not d_in_img.all():
        bad = sorted({int(v) for v in dt_cols[0][~d_in_img]})[:10]
        raise ValueError(
            f"coco_box_ap: detections on image ids {bad} that are not among the evaluated images"
        )

    # Ground truth grouped by (category, image), annotation order kept; non-ignored first.
    crowd = gt_cols[2].astype(bool)
    area = gt_cols[3].astype(np.float64)
    ignore = crowd | (area < AREA_ALL_RANGE[0]) | (area > AREA_ALL_RANGE[1])
    gsel = np.flatnonzero(g_in_img & g_in_cat)
    gsel = gsel[np.lexsort((ignore[gsel], g_img[gsel], g_cat[gsel]))]
    g_key = g_cat[gsel] * len(imgs) + g_img[gsel]
    g_starts = _group_starts(g_key)
    g_groups = {int(g_key[s]): (s, e) for s, e in zip(g_starts[:-1], g_starts[1:])}

    # Detections grouped by (category, image), sorted by descending score (stable), cut to max_dets.
    scores = dt_cols[2].astype(np.float64)
    dsel = np.flatnonzero(d_in_cat)
    dsel = dsel[np.lexsort((-scores[dsel], d_img[dsel], d_cat[dsel]))]
    d_key = d_cat[dsel] * len(imgs) + d_img[dsel]
    d_starts = _group_starts(d_key)
    rank = np.arange(len(dsel)) - np.repeat(d_starts[:-1], np.diff(d_starts))
    keep = rank < max_dets
    dsel, d_key = dsel[keep], d_key[keep]
    d_starts = _group_starts(d_key)

    thr = np.minimum(IOU_THRESHOLDS, _MAX_IOU_THR)
    matched = np.zeros((num_t, len(dsel)), bool)
    ignored = np.zeros((num_t, len(dsel)), bool)
    for s, e in zip(d_starts[:-1], d_starts[1:]):
        g = g_groups.get(int(d_key[s]))
        if g is None:
            continue
        gi = gsel[g[0] : g[1]]
        ious = box_iou_xywh(dt_boxes[dsel[s:e]], gt_boxes[gi], crowd[gi])
        matched[:, s:e], ignored[:, s:e] = _match(ious, ignore[gi], crowd[gi], thr)
    d_area = dt_boxes[dsel, 2] * dt_boxes[dsel, 3]
    out_of_range = (d_area < AREA_ALL_RANGE[0]) | (d_area > AREA_ALL_RANGE[1])
    ignored |= ~matched & out_of_range[None, :]

    # Accumulate per category: all images' detections (image order, then rank), stable by score.
    d_cat_sorted = d_cat[dsel]
    npig_per_cat = np.bincount(g_cat[gsel][~ignore[gsel]], minlength=num_k)
    for k in range(num_k):
        npig = int(npig_per_cat[k])
        if npig == 0:
            continue
        idx = np.flatnonzero(d_cat_sorted == k)
        order = np.argsort(-scores[dsel[idx]], kind="mergesort")
        idx = idx[order]
        tp = np.cumsum(matched[:, idx] & ~ignored[:, idx], axis=1).astype(float)
        fp = np.cumsum(~matched[:, idx] & ~ignored[:, idx], axis=1).astype(float)
        nd = tp.shape[1]
        for t in range(num_t):
            rc = tp[t] / npig
            pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            recall[t, k] = rc[-1] if nd else 0.0
            q = np.zeros(num_r)
            if nd:
                pr = np.maximum.accumulate(pr[::-1])[::-1]
                inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                valid = inds < nd
                q[valid] = pr[inds[valid]]
            precision[t, :, k] = q
    return BoxAPResult(precision=precision, recall=recall, cat_ids=tuple(int(c) for c in cats))
