"""Evaluate a checkpoint on a config's test split and print the per-task metrics table.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options key=value ...]
                         [--launcher none|pytorch] [--out-json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from mtmnv3.engine import add_runner_args, build_runner, load_config, load_model_checkpoint, parse_runner_args
from mtmnv3.fileio import atomic_write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Test a mtmnv3 model")
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="where test logs go (default: a temporary folder)")
    p.add_argument("--out-json", help="also write the metrics as JSON here")
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
    metrics = runner.test()
    if args.out_json:
        atomic_write_json(args.out_json, {k: float(v) for k, v in metrics.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
