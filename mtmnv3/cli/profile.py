"""``mtmnv3 profile``: measure a per-block latency table for a trunk variant on one device profile.

Prints the per-block table and the whole-trunk latency predicted from the
blocks vs measured end to end, and writes the table as JSON.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtmnv3.backbone.variants import TRUNK_VARIANTS
from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.studies.latency import (
    BACKENDS,
    DTYPES,
    INT8_BACKENDS,
    PREDICTIONS,
    BackendUnavailableError,
    DeviceProfile,
    measure_latency_table,
)

DESCRIPTION = "measure a per-block latency table of a trunk variant on one device profile"
EXAMPLE = """\
mtmnv3 profile --variant small --backend onnxruntime --threads 1 --out table.json
mtmnv3 profile --variant small --backend openvino --dtype int8 --se-study --out table.json"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``profile`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("profile", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument(
        "--variant", default="small", help=f"trunk variant (default small); one of {sorted(TRUNK_VARIANTS)}"
    )
    p.add_argument(
        "--backend",
        default="eager",
        choices=BACKENDS,
        help="execution backend (default eager); openvino and executorch (XNNPACK) need their packages",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads (default 1; OpenVINO INFERENCE_NUM_THREADS, executorch's threadpool size)",
    )
    p.add_argument("--size", type=int, default=224, help="square input resolution (default 224)")
    p.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=DTYPES,
        help=f"fp32, or int8 (backends {', '.join(INT8_BACKENDS)}: ORT static QDQ, NNCF, XNNPACK PT2E)",
    )
    p.add_argument(
        "--se-study",
        action="store_true",
        help="also time blocks and the whole trunk with SE removed / ReLU for hard-swish",
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds (default 5)")
    p.add_argument("--repeats", type=int, default=100, help="timed rounds (default 100)")
    p.add_argument(
        "--prediction",
        choices=PREDICTIONS,
        help="how segments are predicted from blocks: raw sum, minus per-call overhead, or minus "
        "measured block-boundary savings (default: eager sum, every other backend boundary)",
    )
    p.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="wall time (default), or the calling thread's CPU time (--threads 1 only; "
        "not disturbed by other processes)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--out", required=True, help="where to write the table JSON")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 profile`` for parsed ``args``; returns the exit status."""
    if args.variant not in TRUNK_VARIANTS:
        print(f"error: unknown variant {args.variant!r}; known: {sorted(TRUNK_VARIANTS)}", file=sys.stderr)
        return 2
    if args.warmup < 0 or args.repeats < 1:
        print(
            f"error: need --warmup >= 0 and --repeats >= 1, got {args.warmup}, {args.repeats}",
            file=sys.stderr,
        )
        return 2
    try:
        profile = DeviceProfile(
            backend=args.backend,
            threads=args.threads,
            resolution=args.size,
            dtype=args.dtype,
            batch=args.batch,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        table = measure_latency_table(
            args.variant,
            profile,
            warmup=args.warmup,
            repeats=args.repeats,
            progress=not args.no_progress,
            se_study=args.se_study,
            prediction=args.prediction,
            clock=args.clock,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BackendUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    table.save(args.out)
    print(f"Latency table: variant {args.variant}, {profile.name}\n")
    print(table.format_blocks())
    print()
    print(table.format_summary())
    print(f"\nwrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 profile`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("profile", argv)
    return run(args)
