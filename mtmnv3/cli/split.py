"""``mtmnv3 split``: search a stage split from a latency table and write it as a plan.

``--balanced`` and ``--device-server`` write a StagePlan; ``--budget-ms``
writes the budget fit (heads, trunk depth, costs) as JSON. ``--run``
executes the balanced plan with one thread per stage and prints measured vs
predicted stage times (the written plan then carries ``measured_ms``). The
stages run on the table's backend when the pipeline supports it (eager or
onnxruntime; ``--backend`` overrides), else on eager PyTorch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk
from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.runtime.pipeline import PIPELINE_BACKENDS, run_pipeline
from mtmnv3.studies.latency import BackendUnavailableError, LatencyTable
from mtmnv3.studies.split_search import balanced_stages, best_device_server_split, fit_budget

#: Default server speed-up over the device when no server table is given.
DEFAULT_SERVER_SPEEDUP = 10.0

DESCRIPTION = "search a stage split from a latency table and write it as a plan"
EXAMPLE = """\
mtmnv3 split table.json --balanced 2 --run --out plan.json
mtmnv3 split table.json --device-server --bandwidth-mbps 20 --rtt-ms 5"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``split`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("split", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("table", help="latency table JSON (from mtmnv3 profile)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--balanced", type=int, metavar="K", help="K pipeline stages, slowest stage minimised")
    mode.add_argument("--device-server", action="store_true", help="best device/server cut")
    mode.add_argument("--budget-ms", type=float, metavar="X", help="heads and trunk depth that fit X ms")
    p.add_argument("--bandwidth-mbps", type=float, help="uplink bandwidth, megabits/s (--device-server)")
    p.add_argument("--rtt-ms", type=float, default=0.0, help="network round trip, ms (default 0)")
    server = p.add_mutually_exclusive_group()
    server.add_argument(
        "--server-speedup",
        type=float,
        help=f"server runs blocks S times faster (default {DEFAULT_SERVER_SPEEDUP:g})",
    )
    server.add_argument("--server-table", help="the server's latency table for the same trunk")
    p.add_argument("--int8", action="store_true", help="send int8-compressed activations (1 byte/element)")
    p.add_argument(
        "--head",
        action="append",
        default=[],
        metavar="NAME:MS:TAPS",
        help="a head's cost and comma-separated stage taps, e.g. cls:0.3:4 (--budget-ms; "
        "default: the heads in the table)",
    )
    p.add_argument("--run", action="store_true", help="run the balanced plan in threads and measure it")
    p.add_argument("--frames", type=int, default=32, help="timed frames for --run (default 32)")
    p.add_argument(
        "--backend",
        choices=PIPELINE_BACKENDS,
        help="backend the --run stages run on (default: the table's backend if supported, else eager)",
    )
    p.add_argument("--out", help="write the plan (or budget fit) JSON here")
    return p


def parse_heads(specs: list[str]) -> tuple[dict[str, float], dict[str, list[int]]]:
    """``['cls:0.3:4', 'det:1.2:2,3']`` -> costs and taps per head."""
    costs, taps = {}, {}
    for spec in specs:
        parts = spec.split(":")
        if len(parts) != 3:
            raise ValueError(f"--head expects NAME:MS:TAP[,TAP...], got {spec!r}")
        name, ms, tap_text = parts
        try:
            costs[name] = float(ms)
            taps[name] = [int(t) for t in tap_text.split(",")]
        except ValueError as e:
            raise ValueError(f"--head {spec!r}: cost must be a number and taps integers ({e})") from e
    return costs, taps


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 split`` for parsed ``args``; returns the exit status."""
    try:
        if args.run and args.balanced is None:
            raise ValueError("--run only applies to --balanced K")
        if args.backend is not None and not args.run:
            raise ValueError("--backend only applies to --run")
        table = LatencyTable.load(args.table)
        if args.balanced is not None:
            result = _balanced(table, args)
        elif args.device_server:
            result = _device_server(table, args)
        else:
            result = _budget(table, args)
    except (FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BackendUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.out:
        atomic_write_json(args.out, result)
        print(f"\nwrote {args.out}")
    return 0


def _balanced(table: LatencyTable, args: argparse.Namespace) -> dict:
    if args.run and args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    plan = balanced_stages(table, args.balanced)
    predicted = plan.predicted_ms or ()
    print(f"Balanced {plan.num_stages}-stage plan from {table.profile.name} ({table.variant or table.arch})")
    for i, ((a, b), ms) in enumerate(zip(plan.stages, predicted)):
        print(f"  stage {i}: blocks {a}..{b - 1}  predicted {ms:.3f} ms")
    print(
        f"  slowest stage (predicted): {max(predicted):.3f} ms; whole trunk {table.predicted_total_ms:.3f} ms"
    )
    if args.run:
        if table.variant not in TRUNK_VARIANTS:
            raise ValueError(
                f"--run needs the table's trunk variant to rebuild the trunk; the table has {table.variant!r}"
            )
        backend = _run_backend(table, args.backend)
        trunk = create_trunk(table.variant)
        result = run_pipeline(
            trunk,
            plan,
            frames=args.frames,
            size=table.profile.resolution,
            intra_op_threads=table.profile.threads,
            backend=backend,
        )
        print()
        print(result.format())
        plan = result.plan
    return plan.to_dict()


def _run_backend(table: LatencyTable, requested: str | None) -> str:
    """The pipeline backend for ``--run``: ``requested``, else the table's if supported, else eager."""
    measured = table.profile.backend
    if requested is None:
        requested = measured if measured in PIPELINE_BACKENDS else "eager"
    if requested != measured:
        print(f"note: the pipeline runs {requested}; the table was measured on {measured}")
    if table.profile.dtype != "fp32":
        print(f"note: the pipeline runs fp32; the table was measured in {table.profile.dtype}")
    return requested


def _device_server(table: LatencyTable, args: argparse.Namespace) -> dict:
    if args.bandwidth_mbps is None:
        raise ValueError("--device-server needs --bandwidth-mbps")
    if args.server_table:
        server: LatencyTable | float = LatencyTable.load(args.server_table)
    else:
        server = args.server_speedup if args.server_speedup is not None else DEFAULT_SERVER_SPEEDUP
    split = best_device_server_split(
        table, server, args.bandwidth_mbps, args.rtt_ms, int8_activations=args.int8
    )
    print(
        f"Device/server split: {args.bandwidth_mbps:g} Mbit/s, RTT {args.rtt_ms:g} ms, "
        f"{'int8' if args.int8 else 'fp32'} activations, server "
        + (f"table {args.server_table}" if args.server_table else f"speed-up {server:g}x")
        + "\n"
    )
    print(split.format())
    b = split.best
    print(f"\nbest cut: {b.cut} (device blocks 0..{b.cut - 1}), total {b.total_ms:.3f} ms")
    return split.to_plan(table).to_dict()


def _budget(table: LatencyTable, args: argparse.Namespace) -> dict:
    costs, taps = parse_heads(args.head) if args.head else (None, None)
    if costs is None and not table.heads:
        raise ValueError("the table has no head timings; give heads with --head NAME:MS:TAPS")
    fit = fit_budget(table, costs, args.budget_ms, taps)
    print(fit.format())
    return {"format": "mtmnv3.BudgetFit", "profile": table.profile.to_dict(), **fit.to_dict()}


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 split`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("split", argv)
    return run(args)
