"""Build every trunk variant and print params, MACs and measured latency per stage.

Usage: python tools/trunk_summary.py [--size 224] [--threads 2] [--repeats 10] [--variants a b]
"""

from __future__ import annotations

import argparse
import sys

from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk
from mtmnv3.core.profiling import format_table, num_threads, stage_latency


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224, help="square input size (default 224)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats per stage (default 10)")
    p.add_argument("--variants", nargs="+", default=sorted(TRUNK_VARIANTS), help="variants to show")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = [v for v in args.variants if v not in TRUNK_VARIANTS]
    if unknown:
        print(f"error: unknown variants {unknown}; known: {sorted(TRUNK_VARIANTS)}", file=sys.stderr)
        return 2
    if args.size < 32 or args.threads < 1 or args.repeats < 1:
        print(
            f"error: need --size >= 32, --threads >= 1, --repeats >= 1; got "
            f"{args.size}, {args.threads}, {args.repeats}",
            file=sys.stderr,
        )
        return 2
    rows, totals = [], []
    with num_threads(args.threads):
        for name in args.variants:
            trunk = create_trunk(name)
            timings = stage_latency(trunk, args.size, repeats=args.repeats)
            macs = trunk.stage_macs(args.size, args.size)
            for info, m, t in zip(trunk.feature_info, macs, timings):
                rows.append(
                    [
                        name,
                        info["name"],
                        info["channels"],
                        info["stride"],
                        info["params"],
                        m / 1e6,
                        t.median_ms,
                    ]
                )
            totals.append(
                [
                    name,
                    sum(i["params"] for i in trunk.feature_info) / 1e6,
                    sum(macs) / 1e6,
                    sum(t.median_ms for t in timings),
                ]
            )
    print(f"Per-stage summary (batch 1, {args.size}x{args.size}, {args.threads} threads, eager, median)\n")
    print(format_table(["variant", "stage", "channels", "stride", "params", "MMACs", "ms"], rows))
    print("\nTotals\n")
    print(format_table(["variant", "Mparams", "MMACs", "ms (sum of stages)"], totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
