"""``mtmnv3 sweep``: train configs x seeds as trials on Ray, each a normal ``mtmnv3 train`` run.

Trial ``(CONFIG, k)`` trains in ``WORK_DIR/<config stem>/seed<k>`` with
``randomness.seed=k`` (and ``--cfg-options`` on top); rerunning the sweep
reuses finished trials and resumes interrupted ones. A local Ray cluster is
started by default (``--num-cpus``); ``--address`` joins an existing one. A
failed trial does not stop the others: each failure is printed with its log,
and the exit status is 1. See :mod:`mtmnv3.studies.sweep`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser, report

__all__ = ["add_parser", "run", "main"]

DESCRIPTION = "train configs x seeds as trials on Ray (local cluster, or --address), resumable"
EXAMPLE = """\
mtmnv3 sweep configs/mtmnv3_small_3task_synth.py configs/successors/*.py --seeds 0 1 \\
    --cfg-options train_cfg.max_iters=600 --work-dir work_dirs/sweep
mtmnv3 sweep configs/successors/*.py --seeds 0 --address auto --cpus-per-trial 4"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``sweep`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("sweep", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument(
        "configs", nargs="+", metavar="CONFIG", help="config files (one trial per config and seed)"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default 0)")
    p.add_argument(
        "--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every trial"
    )
    p.add_argument(
        "--work-dir", default="work_dirs/sweep", help="the sweep's folder (default work_dirs/sweep)"
    )
    p.add_argument(
        "--address", help="join this Ray cluster (e.g. auto, ray://host:10001) instead of a local one"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the local cluster (default: this machine's)")
    p.add_argument(
        "--cpus-per-trial", type=int, default=1, help="CPUs (and training threads) per trial (default 1)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    """Run the sweep; 0 when every trial trained or was reused, 1 when some failed, 2 on bad input."""
    from mtmnv3.studies.sweep import failures, format_results, run_sweep

    def progress(result) -> None:
        print(format_results([result]), flush=True)

    try:
        results = run_sweep(
            args.configs,
            args.seeds,
            args.work_dir,
            args.cfg_options,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_trial=args.cpus_per_trial,
            on_result=progress,
        )
    except (ValueError, ImportError) as e:
        return report(e)
    failed = failures(results)
    print(
        f"\n{len(results) - len(failed)} of {len(results)} trials done; summary: {args.work_dir}/sweep.json"
    )
    if failed:
        print(f"error: {len(failed)} trial(s) failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.name}: {r.error}\n    log: {r.log}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 sweep`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("sweep", argv)
    return run(args)
