"""Robustness study of a checkpoint: every task's metric under the shift suite (and attacks).

Usage:
    python tools/robustness.py CONFIG CHECKPOINT [--corruptions all|a,b] [--severities 1,2,3,4,5]
                               [--reference-json REF] [--out-dir DIR] [--attacks] [--eps 2/255,4/255]
                               [--pgd-steps N] [--max-samples N] [--track [--iou-only]] [--seed S]
                               [--device cpu|cuda] [--workers N] [--no-fold-bn]
                               [--no-progress] [--cfg-options key=value ...]

``--track`` also tracks every test video under every condition with the
config's tracker and reports MOTA and IDF1 (``--max-samples`` then keeps whole
videos). ``--workers 2`` runs the corruption conditions in two forked CPU
processes (the tracker and the metrics are single-threaded). Writes
``robustness.json``, ``robustness.md`` and ``severity_curves.png`` to
``--out-dir`` (default ``work_dirs/robustness/<config name>``). See
:mod:`mtmnv3.studies.robustness.evaluate`.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys

from mtmnv3.engine import DictAction, load_config
from mtmnv3.studies.robustness.evaluate import (
    DEFAULT_PGD_STEPS,
    WorkerError,
    build_study,
    format_markdown,
    parse_corruptions,
    parse_eps,
    parse_severities,
    run_study,
    write_outputs,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Evaluate every task of a mtmnv3 model under corruptions and attacks"
    )
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--corruptions", default="all", help="'all' or comma-separated corruption families")
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated severities in 1..5")
    p.add_argument("--reference-json", help="a reference model's robustness.json: normalises CE (mCE)")
    p.add_argument("--out-dir", help="output folder (default work_dirs/robustness/<config name>)")
    p.add_argument("--attacks", action="store_true", help="also run FGSM/PGD against each head and the trunk")
    p.add_argument("--eps", default="2/255,4/255", help="attack radii in [0, 1] pixel units")
    p.add_argument("--pgd-steps", type=int, default=DEFAULT_PGD_STEPS)
    p.add_argument("--max-samples", type=int, help="evaluate at most N test samples (spread evenly)")
    p.add_argument("--track", action="store_true", help="also track each video: MOTA, IDF1 per condition")
    p.add_argument("--iou-only", action="store_true", help="with --track: IoU-only association")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption and attack draws")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run the corruption conditions in N forked CPU processes (2 on 2 cores: ~1.5x faster)",
    )
    p.add_argument(
        "--no-fold-bn",
        action="store_true",
        help="keep the BatchNorms (slower; clean metrics then equal tools/test.py's to the last digit)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        corruptions = parse_corruptions(args.corruptions)
        severities = parse_severities(args.severities)
        eps = parse_eps(args.eps) if args.attacks else None
        if args.pgd_steps < 1:
            raise ValueError(f"--pgd-steps must be >= 1, got {args.pgd_steps}")
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        if args.iou_only and not args.track:
            raise ValueError("--iou-only needs --track")
        if args.reference_json and not osp.isfile(args.reference_json):
            raise FileNotFoundError(f"reference JSON not found: {args.reference_json}")
        cfg = load_config(args.config, args.cfg_options)
        study, skipped = build_study(
            cfg,
            args.checkpoint,
            args.max_samples,
            args.device,
            args.seed,
            progress=not args.no_progress,
            track=("iou" if args.iou_only else True) if args.track else False,
            workers=args.workers,
            fold_bn=not args.no_fold_bn,
        )
        if skipped:
            print(f"note: {skipped} left out (tracking metrics need --track)", file=sys.stderr)
        out_dir = args.out_dir or osp.join(
            "work_dirs", "robustness", osp.splitext(osp.basename(args.config))[0]
        )
        results = run_study(
            study,
            corruptions,
            severities,
            reference=args.reference_json,
            attack_eps=eps,
            pgd_steps=args.pgd_steps,
            meta=dict(config=args.config, checkpoint=args.checkpoint, skipped_metrics=skipped),
        )
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except WorkerError as e:  # not bad input: a worker crashed or ran out of memory
        print(f"error: {e}", file=sys.stderr)
        return 1
    paths = write_outputs(results, out_dir)
    print(format_markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
