"""Evaluate a checkpoint on a config's test split and print the per-task metrics table.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
                         [--launcher none|pytorch] [--out-json PATH]
                         [--track [--mot-dir DIR] [--track-size S] [--iou-only] [--results-dir DIR]]

``--track`` also runs the tracker (detection + embedding heads, ByteTrack-style
association) over MOTChallenge sequences -- the config's built-in test split,
or ``--mot-dir`` -- and reports MOTA, IDF1, HOTA and ID switches.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from mtmnv3.engine import (
    add_runner_args,
    build_runner,
    close_distributed,
    input_size,
    load_config,
    load_model_checkpoint,
    parse_runner_args,
)
from mtmnv3.fileio import atomic_write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Test a mtmnv3 model")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="where test logs go (default: a temporary folder)")
    p.add_argument("--out-json", help="also write the metrics as JSON here")
    p.add_argument(
        "--track", action="store_true", help="also track MOTChallenge sequences and report MOT metrics"
    )
    p.add_argument(
        "--mot-dir", help="MOTChallenge split folder (<seq>/img1, gt/gt.txt); default: the test split's"
    )
    p.add_argument(
        "--track-size", type=int, help="tracking input size (default: the test split's image size)"
    )
    p.add_argument("--iou-only", action="store_true", help="associate by IoU only (no embeddings)")
    p.add_argument("--results-dir", help="where MOT result files go (default: WORK_DIR/mot_results)")
    add_runner_args(p)
    return parse_runner_args(p, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        if not os.path.isfile(args.checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
        cfg.work_dir = args.work_dir or tempfile.mkdtemp(prefix="mtmnv3_test_")
        cfg.launcher = args.launcher
        cfg.load_from = None
        for key in ("train_dataloader", "train_cfg", "optim_wrapper", "param_scheduler"):
            cfg.pop(key, None)
        runner = build_runner(cfg)
        model = getattr(runner.model, "module", runner.model)  # unwrap DDP
        load_model_checkpoint(model, args.checkpoint)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metrics = dict(runner.test())
    if args.track:
        try:
            metrics.update(_track(args, cfg, runner, model))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.out_json:
        atomic_write_json(args.out_json, {k: float(v) for k, v in metrics.items()})
    close_distributed()
    return 0


def _track(args: argparse.Namespace, cfg, runner, model) -> dict[str, float]:
    from mtmnv3.evaluation import format_metrics_table
    from mtmnv3.inference import TorchFrameRunner, track_mot_sequences

    dataset_cfg = cfg.test_dataloader.dataset
    mot_dir = args.mot_dir
    if mot_dir is None:
        synth_dir = getattr(runner.test_dataloader.dataset, "synth_dir", None)
        if synth_dir is None:
            raise ValueError("the test split is not the built-in synthetic data; give --mot-dir")
        mot_dir = os.path.join(synth_dir, "mot")
    size = args.track_size or input_size(dataset_cfg)
    frame_runner = TorchFrameRunner(model, int(size))
    results_dir = args.results_dir or os.path.join(cfg.work_dir, "mot_results")
    tracker_cfg = dict(cfg.get("tracker") or {})
    tracker_cfg.pop("type", None)
    tracker_cfg["use_embeddings"] = not args.iou_only
    mot = track_mot_sequences(frame_runner, mot_dir, results_dir, tracker_cfg)
    mot = {f"mot/{k}": float(v) for k, v in mot.items()}
    print(format_metrics_table(mot))
    print(f"MOT results written to {results_dir}")
    return mot


if __name__ == "__main__":
    sys.exit(main())
