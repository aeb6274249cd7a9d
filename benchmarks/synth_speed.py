"""Speed of the procedural scene generator (writing JPEG + MOT + COCO to disk).

Floor: 1,000 frames of 320x320 with 8 objects (4 sequences of 250) in < 30 s
on 2 CPU cores. Prints a markdown table.

Usage:
    python benchmarks/synth_speed.py [--repeats 3] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mtmnv3.data import SceneConfig, resolve_appearance, write_synth_dataset

FLOOR_SECONDS = 30.0
CASES = (
    (
        "floor: 4x250 frames, 320 px, 8 objects",
        dict(num_sequences=4, num_frames=250, image_size=320, num_objects=8),
    ),
    (
        "same + blur 7, noise 8, downscale 2, lighting jitter",
        dict(
            num_sequences=4,
            num_frames=250,
            image_size=320,
            num_objects=8,
            motion_blur=7,
            noise_std=8.0,
            downscale=2.0,
            lighting_jitter=0.5,
        ),
    ),
    (
        "default train split: 16x60 frames, 192 px, 3 objects",
        dict(num_sequences=16, num_frames=60, image_size=192, num_objects=3),
    ),
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per case; the best is reported")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="process counts to measure")
    args = p.parse_args()
    print(f"appearance: {resolve_appearance('auto')}, CPU cores: {os.cpu_count()}")
    print("| case | workers | frames | best s | frames/s | floor (< 30 s for the first case) |")
    print("|---|---|---|---|---|---|")
    for name, knobs in CASES:
        cfg = SceneConfig(**knobs)
        frames = cfg.num_sequences * cfg.num_frames
        for workers in args.workers:
            best = float("inf")
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    t0 = time.perf_counter()
                    write_synth_dataset(os.path.join(tmp, "ds"), cfg, seed=0, workers=workers, progress=False)
                    best = min(best, time.perf_counter() - t0)
            verdict = ("pass" if best < FLOOR_SECONDS else "FAIL") if name.startswith("floor") else ""
            print(f"| {name} | {workers} | {frames} | {best:.2f} | {frames / best:.0f} | {verdict} |")


if __name__ == "__main__":
    main()
