"""Per-operator time of an fp32 ONNX graph next to its int8 graph, from ONNX Runtime's profiler.

Answers "why is int8 not faster?": which kernels got faster under int8, which
got slower, and which the int8 graph added (QuantizeLinear/DequantizeLinear
at float boundaries, layout transposes). The two graphs are profiled
alternately, ``--repeats`` times each, and each op type's median is reported.

The graphs come from ``mtmnv3 quantize ... --method ort-static``, which writes
``NAME.fp32.onnx`` and ``NAME.int8.onnx`` into its ``--out-dir``.

Usage:
    python benchmarks/ort_op_profile.py FP32.onnx INT8.onnx [--size 160] [--threads 1]
                                        [--runs 50] [--repeats 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.studies.latency import OpProfile, median_profile, op_profile_table, profile_ops


def _input_shape(path: Path, size: int | None) -> tuple[int, ...]:
    import onnxruntime as ort

    shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    dims = [d if isinstance(d, int) else None for d in shape]
    if dims[0] is None:
        dims[0] = 1
    if None in dims[2:]:
        if size is None:
            raise ValueError(f"{path} has a dynamic input size {shape}; pass --size")
        dims[2:] = [size, size]
    return tuple(dims)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fp32", type=Path)
    p.add_argument("int8", type=Path)
    p.add_argument("--size", type=int, help="input size when the graph's is dynamic")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=50, help="profiled runs per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the profiles here")
    args = p.parse_args(argv)
    for name in ("threads", "runs", "repeats"):
        if getattr(args, name) < 1:
            print(f"error: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 2
    for path in (args.fp32, args.int8):
        if not path.is_file():
            print(f"error: ONNX model not found: {path}", file=sys.stderr)
            return 2
    try:
        shape = _input_shape(args.fp32, args.size)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    runs: dict[str, list[OpProfile]] = {"fp32": [], "int8": []}
    for _ in range(args.repeats):  # alternate, so drift hits both alike
        runs["fp32"].append(profile_ops(args.fp32, x, args.threads, args.runs))
        runs["int8"].append(profile_ops(args.int8, x, args.threads, args.runs))
    profiles = {k: median_profile(v) for k, v in runs.items()}
    print(
        f"ONNX Runtime per-op kernel time, input {shape}, {args.threads} thread(s), "
        f"median of {args.repeats} x {args.runs} profiled runs\n"
    )
    print(op_profile_table(profiles))
    if args.json:
        payload = {
            k: {"run_ms": v.run_ms, "ops": [o.__dict__ for o in v.ops], "threads": v.threads}
            for k, v in profiles.items()
        }
        atomic_write_json(args.json, {"input": list(shape), **payload})
    return 0


if __name__ == "__main__":
    sys.exit(main())
