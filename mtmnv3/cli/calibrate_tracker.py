"""``mtmnv3 calibrate-tracker``: tune the tracker's score thresholds to one model, on a calibration split.

A tracker's score thresholds are tied to its detector's score scale: robust or
fine-tuned training moves the scores, and thresholds tuned for another model
then let in false positives or drop true objects (MOTA pays for both). This
tool runs the detection and embedding heads once over every frame of a
calibration split, then tracks those same detections with each
``(high_thr, new_track_thr = high_thr + margin)`` of the grid (the config's
other tracker settings unchanged) and keeps the setting with the best
``--objective``.

The calibration split is the config's test split generated again with
``--split-seed`` (built-in data: other scenes, the same object-image pool), so
the thresholds are not tuned on the sequences they are then evaluated on; or
any MOTChallenge folders with ``--mot-dir``. Several seeds (or folders) pool
their sequences: neighbouring thresholds can differ by a few MOTA points on
one 96-sequence split, and a setting tuned on one split does not always carry
over to another. The tool prints the grid, the
config's own setting and the ``--cfg-options`` that apply the best one (to
``mtmnv3 test``, ``mtmnv3 robustness`` or ``mtmnv3 demo``), and with
``--out-json`` writes them all.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.engine import DictAction, check_split_seeds, input_size, load_config
from mtmnv3.studies.tracker_calibration import CALIBRATION_OBJECTIVES as OBJECTIVES
from mtmnv3.studies.tracker_calibration import calibrate_thresholds

DEFAULT_HIGH_THRS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
DEFAULT_MARGINS = (0.0, 0.05, 0.1, 0.2)

DESCRIPTION = "tune the tracker's score thresholds to one model"
EXAMPLE = """\
mtmnv3 calibrate-tracker configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --split-seed 1 2"""


def parse_floats(text: str, what: str, low: float, high: float) -> list[float]:
    """``'0.3,0.4'`` -> ``[0.3, 0.4]``, each in ``[low, high]``, without repeats."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers, got {text!r}") from None
    if not values or any(not (low <= v <= high) for v in values) or len(set(values)) != len(values):
        raise ValueError(f"{what} must be distinct numbers in [{low:g}, {high:g}], got {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``calibrate-tracker`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("calibrate-tracker", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config")
    p.add_argument("checkpoint")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--split-seed",
        type=int,
        nargs="+",
        default=[1],
        help="calibrate on the config's test split generated with each of these seeds (built-in data; default 1)",
    )
    src.add_argument("--mot-dir", nargs="+", help="calibrate on these MOTChallenge split folders instead")
    p.add_argument(
        "--high-thr",
        default=",".join(f"{v:g}" for v in DEFAULT_HIGH_THRS),
        help="comma-separated high_thr values to try",
    )
    p.add_argument(
        "--new-track-margin",
        default=",".join(f"{v:g}" for v in DEFAULT_MARGINS),
        help="comma-separated new_track_thr - high_thr values to try",
    )
    p.add_argument(
        "--objective", default="MOTA", choices=OBJECTIVES, help="metric to maximise (default MOTA)"
    )
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="inference threads")
    p.add_argument("--out-json", help="write the grid, the config's setting and the best one here")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p


def _calibration_mot_dir(cfg, seed: int) -> Path:
    """The MOTChallenge folder of the config's test split generated with ``seed`` (checked beforehand)."""
    from mtmnv3.core.registry import DATASETS

    dataset_cfg = dict(cfg.test_dataloader.dataset)
    if int(dataset_cfg.get("seed", 0)) == seed:
        raise ValueError(
            f"--split-seed {seed} is the test split's own seed: the thresholds would be tuned on the "
            "sequences they are evaluated on; pick another seed"
        )
    dataset_cfg.update(seed=seed, pipeline=[])
    return Path(DATASETS.build(dataset_cfg).synth_dir) / "mot"


def _table(rows: list[dict], objective: str, hota: bool) -> str:
    from mtmnv3.core.profiling import format_table

    keys = ["MOTA", "IDF1", *(["HOTA"] if hota else []), "IDSW", "FP", "FN"]
    body = [
        [
            f"{r['high_thr']:g}",
            f"{r['new_track_thr']:g}",
            *(f"{r[k]:.4f}" if k in OBJECTIVES else int(r[k]) for k in keys),
        ]
        for r in rows
    ]
    header = ["high_thr", "new_track_thr", *(f"{k} (objective)" if k == objective else k for k in keys)]
    return format_table(header, body)


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 calibrate-tracker`` for parsed ``args``; returns the exit status."""
    try:
        high_thrs = parse_floats(args.high_thr, "--high-thr", 0.0, 1.0)
        margins = parse_floats(args.new_track_margin, "--new-track-margin", 0.0, 1.0)
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        if not os.path.isfile(args.checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        cfg = load_config(args.config, args.cfg_options)
        base = dict(cfg.get("tracker") or {})
        base.pop("type", None)
        if args.mot_dir:
            from mtmnv3.apis.inference import mot_sequence_dirs

            mot_dirs = [Path(d) for d in args.mot_dir]
            for d in mot_dirs:  # a missing or empty folder fails before the model loads
                mot_sequence_dirs(d)
        else:
            check_split_seeds(cfg, args.split_seed, "--split-seed")
            mot_dirs = [_calibration_mot_dir(cfg, seed) for seed in args.split_seed]

        from mtmnv3.apis import init_model
        from mtmnv3.apis.inference import detect_mot_sequences
        from mtmnv3.runtime.frame_runner import build_frame_runner

        model = init_model(args.config, args.checkpoint, args.cfg_options)
        size = int(input_size(cfg.test_dataloader.dataset))
        runner = build_frame_runner(model, args.backend, input_size=size, threads=args.threads)
        try:
            dets = {}
            for k, mot_dir in enumerate(mot_dirs):
                found = detect_mot_sequences(
                    runner,
                    mot_dir,
                    embeddings=base.get("use_embeddings", True),
                    progress=not args.no_progress,
                )
                # sequences of several folders may share names: prefix them with the folder's index
                dets.update(found if len(mot_dirs) == 1 else {f"{k}_{n}": d for n, d in found.items()})
        finally:
            if hasattr(runner, "close"):
                runner.close()
        with tempfile.TemporaryDirectory(prefix="mtmnv3_calib_") as tmp:
            config_row, grid, skipped = calibrate_thresholds(
                dets, tmp, base, high_thrs, margins, args.objective
            )
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    best = grid[0]
    hota = args.objective == "HOTA"
    if skipped:
        low = float(base.get("low_thr", 0.1))
        print(
            f"note: --high-thr values below the tracker's low_thr ({low:g}) skipped: {skipped}",
            file=sys.stderr,
        )
    frames = sum(d.num_frames for d in dets.values())
    print(f"calibration data: {', '.join(map(os.fspath, mot_dirs))} ({len(dets)} sequences, {frames} frames)")
    print(
        f"\nthe config's tracker (high_thr {config_row['high_thr']:g}, new_track_thr {config_row['new_track_thr']:g}):"
    )
    print(_table([config_row], args.objective, hota))
    print(f"\nthe grid, best {args.objective} first ({len(grid)} settings; top 10):")
    print(_table(grid[:10], args.objective, hota))
    options = f"tracker.high_thr={best['high_thr']:g} tracker.new_track_thr={best['new_track_thr']:g}"
    gain = 100 * (best[args.objective] - config_row[args.objective])
    print(
        f"\nbest: {args.objective} {best[args.objective]:.4f} ({gain:+.2f} points over the config's setting)"
    )
    print(f"apply with: --cfg-options {options}")
    if args.out_json:
        atomic_write_json(
            args.out_json,
            dict(
                config=args.config,
                checkpoint=args.checkpoint,
                mot_dirs=[os.fspath(d) for d in mot_dirs],
                objective=args.objective,
                config_setting=config_row,
                grid=grid,
                best=best,
                cfg_options=options,
            ),
        )
        print(f"wrote {args.out_json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 calibrate-tracker`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("calibrate-tracker", argv)
    return run(args)
