"""SE and hard-swish cost per deployment runtime and precision: one markdown table of MobileNetV3 trunks.

For each trunk (MobileNetV3-Small and -Large, stock and quantization-friendly:
no SE, ReLU6), runtime (onnxruntime, openvino, executorch) and precision
(fp32, int8) it measures a latency table
(:func:`~mtmnv3.studies.latency.measure_latency_table`) and prints one row:

* the whole trunk measured end to end, predicted from its blocks, and the
  prediction error;
* SE share: what dropping every SE saves end to end (``1 - t(no-SE copy) /
  t(stock)``), and the hard-swish share (``1 - t(ReLU copy) / t(stock)``);
* whether SE / hard-swish cost more than they save: ``yes`` when the copy
  without them is faster than stock by more than :data:`NOISE_MARGIN`,
  ``no`` when it is not (the runtime fuses them nearly for free, or they
  are within noise); ``n/a`` for trunks without them.

Kept short on purpose: few warm-up and timed rounds, the per-call
``'overhead'`` prediction model (no block-pair programs) and the whole-trunk
SE / ReLU copies only (``se_study='trunk'``), because every block is
exported, quantized and compiled by each runtime and that, not the timing,
dominates the run; ExecuTorch's XNNPACK lowering is by far the slowest step,
so on two shared cores the full default grid takes well over ten minutes:
narrow it with ``--trunks`` / ``--runtimes`` / ``--dtypes``. Rows are
printed as they are measured. ``--prediction boundary`` and ``--se-blocks`` give each
runtime's default prediction model and the per-block breakdown at several
times the cost; ``--repeats`` steadies the numbers. Timings are wall clock on
a possibly shared machine: compare rows of one run, not across runs.

Usage::

    .venv/bin/python benchmarks/se_hswish_runtimes.py [--size 160] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk
from mtmnv3.core.profiling import format_table
from mtmnv3.studies.latency import PREDICTIONS, BackendUnavailableError, DeviceProfile, measure_latency_table

#: Trunks measured: label -> (variant, overrides). Large has no named
#: quantization-friendly variant, so it is built like ``small_qfriendly``.
TRUNKS: dict[str, tuple[str, dict[str, str]]] = {
    "small": ("small", {}),
    "small_qfriendly": ("small_qfriendly", {}),
    "large": ("large", {}),
    "large_qfriendly": ("large", dict(TRUNK_VARIANTS["small_qfriendly"], arch="large")),
}
RUNTIMES = ("onnxruntime", "openvino", "executorch")
DTYPES = ("fp32", "int8")
#: The configs' input size.
DEFAULT_SIZE = 160
DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 10
#: Random images that calibrate int8.
CALIBRATION_SAMPLES = 2
#: A copy must be this much faster than stock for SE / hard-swish to count as a net cost.
NOISE_MARGIN = 0.03
HEADERS = [
    "trunk",
    "runtime",
    "dtype",
    "measured ms",
    "predicted ms",
    "error",
    "SE share",
    "hswish share",
    "SE costs more than it saves",
    "hswish costs more than it saves",
]


def _trunk(label: str) -> MobileNetV3Trunk:
    variant, overrides = TRUNKS[label]
    return create_trunk(variant, **overrides)


def _verdict(saving: float | None) -> str:
    if saving is None:
        return "n/a"
    return "yes" if saving > NOISE_MARGIN else "no"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:+.1f}%"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help=f"input size (default {DEFAULT_SIZE})")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    p.add_argument("--trunks", default=",".join(TRUNKS), help=f"comma-separated subset of {list(TRUNKS)}")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated subset of runtimes")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="comma-separated subset of fp32,int8")
    p.add_argument("--prediction", default="overhead", choices=PREDICTIONS, help="default overhead (cheap)")
    p.add_argument("--se-blocks", action="store_true", help="also time per-block SE-off / ReLU copies")
    args = p.parse_args(argv)
    trunks, runtimes, dtypes = (s.split(",") for s in (args.trunks, args.runtimes, args.dtypes))
    for name, given, known in (
        ("trunk", trunks, TRUNKS),
        ("runtime", runtimes, RUNTIMES),
        ("dtype", dtypes, DTYPES),
    ):
        bad = [g for g in given if g not in known]
        if bad:
            p.error(f"unknown {name}s {bad}; expected some of {list(known)}")

    print(format_table(HEADERS, []), flush=True)
    start = time.perf_counter()
    for label in trunks:
        for runtime in runtimes:
            for dtype in dtypes:
                profile = DeviceProfile(
                    backend=runtime, threads=args.threads, resolution=args.size, dtype=dtype
                )
                t0 = time.perf_counter()
                try:
                    table = measure_latency_table(
                        _trunk(label),
                        profile,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        progress=False,
                        se_study=True if args.se_blocks else "trunk",
                        prediction=args.prediction,
                        calibration_samples=CALIBRATION_SAMPLES,
                    )
                except BackendUnavailableError as e:
                    print(f"skip {label} {profile.name}: {e}", file=sys.stderr)
                    _print_row([label, runtime, dtype, "unavailable", "", "", "", "", "", ""])
                    continue
                print(
                    f"{label} {profile.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True
                )
                _print_row(
                    [
                        label,
                        runtime,
                        dtype,
                        f"{table.measured_total_ms:.3f}",
                        f"{table.predicted_total_ms:.3f}",
                        _pct(table.prediction_error),
                        _pct(table.se_trunk_saving),
                        _pct(table.relu_trunk_saving),
                        _verdict(table.se_trunk_saving),
                        _verdict(table.relu_trunk_saving),
                    ]
                )
    print(
        f"\nSE / hard-swish per runtime: {args.size} px, {args.threads} thread(s), {args.repeats} rounds after "
        f"{args.warmup} warm-up, prediction '{args.prediction}', {time.perf_counter() - start:.0f} s in all"
    )
    return 0


def _print_row(row: Sequence[object]) -> None:
    print("| " + " | ".join(str(v) for v in row) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
