"""``mtmnv3 robustness``: every task's metric of a checkpoint under the shift suite (and attacks).

``--track`` also tracks every test video under every condition with the
config's tracker and reports MOTA and IDF1 (``--max-samples`` then keeps whole
videos). ``--workers 2`` runs the corruption conditions in two forked CPU
processes (the tracker and the metrics are single-threaded). Writes
``robustness.json``, ``robustness.md`` and ``severity_curves.png`` to
``--out-dir`` (default ``work_dirs/robustness/<config name>``). See
:mod:`mtmnv3.studies.robustness`.
"""

from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.engine import DictAction, load_config
from mtmnv3.studies.robustness import (
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

DESCRIPTION = "every task's metric under corruptions and attacks"
EXAMPLE = """\
mtmnv3 robustness configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --severities 1,3,5 --track"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``robustness`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("robustness", DESCRIPTION, EXAMPLE, subparsers)
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
        help="keep the BatchNorms (slower; clean metrics then equal mtmnv3 test's to the last digit)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 robustness`` for parsed ``args``; returns the exit status."""
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


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 robustness`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("robustness", argv)
    return run(args)
