"""OpenVINO fp32 and NNCF int8 latency of the 3-task models against ONNX Runtime fp32, 1 and 2 threads.

The MobileNetV3-Small and -Large 3-task synth configs, built with random
weights, are exported at the config's input size, batch 1, three ways:
ONNX (:func:`mtmnv3.runtime.onnx_export.export_onnx`, run by
:func:`mtmnv3.runtime.ort_runtime.make_session` with spinning threads, ONNX
Runtime's own default for back-to-back runs), OpenVINO fp32 and OpenVINO
int8 (:func:`mtmnv3.runtime.openvino_runtime.export_openvino`, NNCF
post-training quantization calibrated on seeded random normalised batches:
the speed does not depend on the calibration data), run by
:class:`~mtmnv3.runtime.openvino_runtime.OpenVINOSession`. For each model and
thread count the three are timed interleaved in the same rounds; the table
reports the medians and each one's ratio to ONNX Runtime fp32 of the same
rounds (below 1: faster than ONNX Runtime).

ONNX Runtime's spinning pool threads keep spin-waiting for a while after each
run; on a machine with no more cores than threads they take cores from the
session timed next in the round. ``--no-ort-spinning`` lets them sleep
instead, to tell that effect apart from the runtimes' own speed. The largest raw-output
difference of each OpenVINO session from ONNX Runtime is printed too.

Usage: python benchmarks/openvino_speed.py [--rounds 15] [--inner 3] [--archs small large]
    [--threads 1 2] [--no-ort-spinning] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from mtmnv3.apis import init_model
from mtmnv3.core.profiling import format_table, interleaved_timings
from mtmnv3.engine.runner import input_size, load_config
from mtmnv3.runtime.onnx_export import INPUT_NAME, export_onnx
from mtmnv3.runtime.openvino_runtime import OpenVINOSession, export_openvino
from mtmnv3.runtime.ort_runtime import make_session

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "small": ROOT / "configs" / "mtmnv3_small_3task_synth.py",
    "large": ROOT / "configs" / "mtmnv3_large_3task_synth.py",
}
#: Seeded random calibration batches for the int8 export (speed only).
CALIBRATION_BATCHES = 8
SEED = 0
#: The reference every ratio is taken against.
REFERENCE = "ort fp32"
BACKENDS = (REFERENCE, "ov fp32", "ov int8")


def _export(arch: str, out_dir: Path) -> tuple[int, dict[str, Path]]:
    """The config's input size and the three exported files of one trunk."""
    config = CONFIGS[arch]
    model = init_model(config, None)
    size = input_size(load_config(config).test_dataloader.dataset)
    rng = np.random.default_rng(SEED)
    calibration = [
        rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(CALIBRATION_BATCHES)
    ]
    files = {
        REFERENCE: out_dir / f"{arch}.onnx",
        "ov fp32": out_dir / f"{arch}_fp32.xml",
        "ov int8": out_dir / f"{arch}_int8.xml",
    }
    export_onnx(model, files[REFERENCE], input_size=size)
    export_openvino(model, files["ov fp32"], input_size=size)
    export_openvino(model, files["ov int8"], input_size=size, int8=True, calibration=calibration)
    return size, files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inner", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["small", "large"], choices=sorted(CONFIGS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument(
        "--no-ort-spinning", action="store_true", help="ONNX Runtime's idle threads sleep instead of spinning"
    )
    p.add_argument(
        "--out-dir", type=Path, default=None, help="keep the exported files here (default: a temp dir)"
    )
    args = p.parse_args(argv)
    if min(args.rounds, args.inner, *args.threads) < 1:
        p.error("--rounds, --inner and --threads must be >= 1")
    rows, diffs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for arch in args.archs:
            size, files = _export(arch, out_dir)
            x = np.random.default_rng(SEED + 1).standard_normal((1, 3, size, size)).astype(np.float32)
            for threads in args.threads:
                ort_session = make_session(files[REFERENCE], threads, allow_spinning=not args.no_ort_spinning)
                ov_sessions = {k: OpenVINOSession(files[k], threads=threads) for k in BACKENDS[1:]}
                fns = {REFERENCE: lambda s=ort_session, feed={INPUT_NAME: x}: s.run(None, feed)}
                fns.update({k: (lambda s=s, x=x: s.run(x)) for k, s in ov_sessions.items()})
                timings = interleaved_timings(fns, rounds=args.rounds, inner=args.inner)
                ref_ms = timings[REFERENCE].median_ms
                row = [arch, size, threads]
                for k in BACKENDS:
                    row += [timings[k].median_ms, timings[k].median_ms / ref_ms]
                rows.append(row)
                if threads == args.threads[0]:
                    ref_out = ort_session.run(None, {INPUT_NAME: x})
                    for k, s in ov_sessions.items():
                        d = max(float(np.abs(a - b).max()) for a, b in zip(s.run(x), ref_out))
                        diffs.append([arch, k, f"{d:.2e}"])
    headers = ["trunk", "input", "threads"]
    for k in BACKENDS:
        headers += [f"{k} ms", f"{k} / {REFERENCE}"]
    print(format_table(headers, rows))
    print()
    print(format_table(["trunk", "session", f"max abs diff to {REFERENCE}"], diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
