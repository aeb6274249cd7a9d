"""ExecuTorch (XNNPACK) latency of the 3-task models: fp32 against PT2E int8, 1 and 2 threads.

The MobileNetV3-Small and -Large 3-task synth configs, built with random
weights, are exported with :func:`mtmnv3.runtime.executorch_runtime.export_executorch`
at the config's input size, batch 1 (int8 calibrated on seeded random
normalised batches: the speed does not depend on the calibration data), and
run through :class:`~mtmnv3.runtime.executorch_runtime.ExecuTorchSession`. For
each model and thread count fp32 and int8 are timed interleaved in the same
rounds; the table reports the medians and the int8 speed-up (fp32 / int8).

Usage: python benchmarks/executorch_speed.py [--rounds 15] [--inner 3] [--threads 1 2] [--out-dir DIR]
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
from mtmnv3.runtime.executorch_runtime import ExecuTorchSession, export_executorch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "small": ROOT / "configs" / "mtmnv3_small_3task_synth.py",
    "large": ROOT / "configs" / "mtmnv3_large_3task_synth.py",
}
#: Seeded random calibration batches for the int8 export (speed only).
CALIBRATION_BATCHES = 4
SEED = 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inner", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["small", "large"], choices=sorted(CONFIGS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument(
        "--out-dir", type=Path, default=None, help="keep the .pte files here (default: a temp dir)"
    )
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out_dir or Path(tmp)
        for arch in args.archs:
            config = CONFIGS[arch]
            model = init_model(config, None)
            size = input_size(load_config(config).test_dataloader.dataset)
            rng = np.random.default_rng(SEED)
            calibration = [
                rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(CALIBRATION_BATCHES)
            ]
            files = {}
            for precision, int8 in (("fp32", False), ("int8", True)):
                files[precision] = out_dir / f"{arch}_{precision}.pte"
                export_executorch(
                    model,
                    files[precision],
                    input_size=size,
                    int8=int8,
                    calibration=calibration if int8 else None,
                )
            x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
            for threads in args.threads:
                sessions = {k: ExecuTorchSession(f, threads=threads) for k, f in files.items()}
                timings = interleaved_timings(
                    {k: (lambda s=s, x=x: s.run(x)) for k, s in sessions.items()},
                    rounds=args.rounds,
                    inner=args.inner,
                )
                fp32, int8 = timings["fp32"].median_ms, timings["int8"].median_ms
                rows.append([arch, size, threads, fp32, int8, fp32 / int8])
    print(format_table(["trunk", "input", "threads", "fp32 ms", "int8 ms", "int8 speed-up"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
