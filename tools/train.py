"""Train a model from an mmengine config.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--cfg-options key=value ...] [--launcher none|pytorch]

Distributed (CPU, gloo): torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch
"""

from __future__ import annotations

import argparse
import sys

from mtmnv3.engine import (
    add_runner_args,
    build_runner,
    close_distributed,
    load_config,
    parse_runner_args,
    prepare_train_config,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a mtmnv3 model")
    p.add_argument("config", help="config file path")
    p.add_argument("--work-dir", help="where logs and checkpoints go (default: work_dirs/CONFIG_NAME)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="resume from CKPT, or without a value from the work dir's last checkpoint",
    )
    p.add_argument("--amp", action="store_true", help="automatic mixed precision")
    add_runner_args(p)
    return parse_runner_args(p, argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg = prepare_train_config(cfg, args.config, args.work_dir, args.resume, args.amp, args.launcher)
        runner = build_runner(cfg)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        runner.train()
    except FloatingPointError as e:
        print(f"error: training stopped: {e}", file=sys.stderr)
        return 1
    close_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
