"""COCO box mAP: the NumPy backend of ``CocoDetMetric`` against pycocotools' ``COCOeval``.

Evaluates one detection result set of the default test split's shape
(2880 frames, ~4 ground-truth objects and ~40 detections per frame, 10
classes; detections are jittered ground-truth boxes plus clutter, with
scores that rank true boxes higher) with both backends, checks that they
give the same numbers and prints their times as a ratio (interleaved runs).
The shift suite evaluates detection once per corruption and severity
(56 times on the default split), so this time is paid 56 times there.

Usage: python benchmarks/box_ap_speed.py [--frames 2880] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np

from mtmnv3.core.profiling import compare_backends, format_table
from mtmnv3.evaluation import CocoDetMetric


def make_results(frames: int, seed: int = 0, num_classes: int = 10) -> list[dict]:
    """Per-frame records as ``CocoDetMetric.process`` collects them (in-memory ground truth)."""
    rng = np.random.default_rng(seed)
    results = []
    for img_id in range(frames):
        n_gt = int(rng.integers(1, 8))
        xy = rng.uniform(0, 120, (n_gt, 2))
        wh = rng.uniform(8, 40, (n_gt, 2))
        gt = np.c_[xy, xy + wh]
        labels = rng.integers(0, num_classes, n_gt)
        n_hit = int(rng.integers(0, n_gt + 1))
        hit = rng.choice(n_gt, n_hit, replace=False)
        jitter = rng.normal(0, 2.5, (n_hit, 4))
        n_clutter = int(rng.integers(20, 50))
        cxy = rng.uniform(0, 140, (n_clutter, 2))
        clutter = np.c_[cxy, cxy + rng.uniform(4, 40, (n_clutter, 2))]
        boxes = np.r_[gt[hit] + jitter, clutter]
        scores = np.r_[rng.uniform(0.3, 1.0, n_hit), rng.uniform(0.0, 0.6, n_clutter)]
        pred_labels = np.r_[labels[hit], rng.integers(0, num_classes, n_clutter)]
        results.append(
            {
                "img_id": img_id,
                "pred_bboxes": boxes,
                "pred_scores": scores,
                "pred_labels": pred_labels.astype(np.int64),
                "height": 160,
                "width": 160,
                "bboxes": gt,
                "labels": labels.astype(np.int64),
                "ignore": rng.random(n_gt) < 0.05,
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=2880)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if args.frames < 1 or args.rounds < 1:
        p.error(f"--frames and --rounds must be >= 1, got {args.frames} and {args.rounds}")
    results = make_results(args.frames)
    num_dets = sum(len(r["pred_scores"]) for r in results)
    cmp = compare_backends(
        {b: partial(CocoDetMetric(backend=b).compute_metrics, results) for b in ("pycocotools", "numpy")},
        rounds=args.rounds,
    )
    diff = cmp.max_diff
    print(
        f"COCO box mAP of {args.frames} frames, {num_dets} detections "
        f"(median of {args.rounds} interleaved rounds; mAP {cmp.outputs['numpy']['mAP']:.4f}, "
        f"max |numpy - pycocotools| {diff:.1e})\n"
    )
    print(format_table(["backend", "seconds", "speed-up vs pycocotools"], cmp.rows()))
    if diff > 1e-9:
        print(f"error: the backends disagree by {diff:.3e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
