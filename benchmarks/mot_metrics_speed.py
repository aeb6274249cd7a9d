"""MOT metrics: the NumPy CLEAR MOT backend of ``evaluate_mot`` against motmetrics, with and without HOTA.

Evaluates one tracking result set of the default test split's shape (96
videos x 30 frames, 3-7 objects per video moving at constant velocity;
tracks are jittered ground-truth boxes that now and then drop a frame, take a
new id or another object's id, plus clutter) three ways: motmetrics + HOTA
(what ``MOTMetric`` ran before), NumPy + HOTA (its default now) and NumPy
without HOTA (what the shift suite runs, 56 times per model). Checks that the
backends give the same numbers and prints the times as ratios against the
first (interleaved runs, medians).

Usage: python benchmarks/mot_metrics_speed.py [--videos 96] [--frames 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

import numpy as np

from mtmnv3.core.profiling import compare_backends, format_table
from mtmnv3.evaluation import evaluate_mot

VARIANTS = {
    "motmetrics + HOTA (before)": dict(backend="motmetrics", hota=True),
    "numpy + HOTA (MOTMetric default)": dict(backend="numpy", hota=True),
    "numpy, no HOTA (the shift suite)": dict(backend="numpy", hota=False),
}


def make_tracking(videos: int, frames: int, seed: int = 0) -> tuple[dict, dict]:
    """Ground truth and tracker output per video, MOTChallenge rows."""
    rng = np.random.default_rng(seed)
    gt, res = {}, {}
    for v in range(videos):
        g, r = [], []
        n_obj = int(rng.integers(3, 8))
        start = rng.uniform(0, 120, (n_obj, 2))
        vel = rng.normal(0, 1.5, (n_obj, 2))
        size = rng.uniform(12, 40, (n_obj, 2))
        track_of = np.arange(1, n_obj + 1)
        next_id = n_obj + 1
        for f in range(1, frames + 1):
            for o in range(n_obj):
                box = np.r_[start[o] + vel[o] * f, size[o]]
                g.append([f, o + 1, *box, 1, 1, 1])
                u = rng.random()
                if u < 0.02:  # a new id (fragmentation)
                    track_of[o], next_id = next_id, next_id + 1
                elif u < 0.03:  # swap ids with another object
                    other = int(rng.integers(0, n_obj))
                    track_of[[o, other]] = track_of[[other, o]]
                if rng.random() < 0.9:
                    r.append([f, track_of[o], *(box + rng.normal(0, 1.5, 4)), 0.9])
            for _ in range(int(rng.poisson(0.5))):
                r.append([f, next_id, *rng.uniform(0, 140, 2), 20, 20, 0.4])
                next_id += 1
        r = np.asarray(r)
        _, first = np.unique(r[:, :2], axis=0, return_index=True)  # one row per (frame, id)
        gt[f"video_{v}"], res[f"video_{v}"] = np.asarray(g), r[np.sort(first)]
    return gt, res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=96)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    if min(args.videos, args.frames, args.rounds) < 1:
        p.error("--videos, --frames and --rounds must be >= 1")
    gt, res = make_tracking(args.videos, args.frames)
    cmp = compare_backends(
        {name: partial(evaluate_mot, gt, res, **kwargs) for name, kwargs in VARIANTS.items()},
        rounds=args.rounds,
    )
    m = cmp.outputs[list(VARIANTS)[1]]
    diff = cmp.max_diff
    print(
        f"MOT metrics of {args.videos} videos x {args.frames} frames, "
        f"{sum(len(r) for r in res.values())} track boxes (median of {args.rounds} interleaved rounds; "
        f"MOTA {m['MOTA']:.4f}, IDF1 {m['IDF1']:.4f}, IDSW {m['IDSW']}, "
        f"max |numpy - motmetrics| {diff:.1e})\n"
    )
    print(format_table(["metrics", "seconds", "speed-up"], cmp.rows()))
    if diff > 1e-9:
        print(f"error: the backends disagree by {diff:.3e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
