"""``mtmnv3 train``: train a model from an mmengine config (mmdet's ``tools/train.py`` flags).

Distributed (CPU, gloo): ``torchrun --nproc_per_node 2 tools/train.py CONFIG --launcher pytorch``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser, report
from mtmnv3.engine import add_runner_args, build_runner, close_distributed, load_config, prepare_train_config

__all__ = ["add_parser", "run", "main"]

EXAMPLE = """\
mtmnv3 train configs/mtmnv3_small_3task_synth.py --work-dir work_dirs/small --resume
torchrun --nproc_per_node 2 tools/train.py configs/mtmnv3_small_3task_synth.py --launcher pytorch"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``train`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("train", "train a model from an mmengine config", EXAMPLE, subparsers)
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
    return p


def run(args: argparse.Namespace) -> int:
    """Train; 0 on success, 2 on bad input, 1 when training stops on a non-finite loss."""
    os.environ.setdefault("LOCAL_RANK", str(args.local_rank))  # torch.distributed, as mmengine expects
    try:
        cfg = load_config(args.config, args.cfg_options)
        cfg = prepare_train_config(cfg, args.config, args.work_dir, args.resume, args.amp, args.launcher)
        runner = build_runner(cfg)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        return report(e)
    from mtmnv3.data.common import DataError

    try:
        runner.train()
    except FloatingPointError as e:
        print(f"error: training stopped: {e}", file=sys.stderr)
        return 1
    except (DataError, FileNotFoundError) as e:  # the Runner builds the datasets lazily, inside train()
        return report(e)
    close_distributed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 train`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("train", argv)
    return run(args)
