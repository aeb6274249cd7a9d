"""Runtime x precision x variant x threads: model latency and the task metrics of each deployed file.

For each trunk variant of the 3-task model (MobileNetV3-Small and -Large,
stock and quantization-friendly: no SE, ReLU6 for hard-swish), every
installed runtime (ONNX Runtime, OpenVINO, ExecuTorch/XNNPACK) gets an fp32
and an int8 file made with its own tools (ORT static QDQ per-channel, NNCF,
XNNPACKQuantizer through PT2E), calibrated on real training frames. The
files of one variant and thread count are timed in interleaved rounds
(batch 1, the config's input size) and reported as ms and as a ratio to
ONNX Runtime fp32 measured in the same rounds (these machines are noisy:
compare ratios, not absolute times). With a checkpoint for a variant
(``--checkpoint small=PATH``), each file's own task metrics on the held-out
test split (top-1, mAP@0.5, and IDF1 from tracking ``--mot-sequences``
sequences) are reported with their drop from PyTorch fp32; without one, the
metrics columns say so. A plot of latency against mAP@0.5 per runtime is
written with ``--plot``.

    python benchmarks/runtime_matrix.py --checkpoint small=work_dirs/rt_small/iter_1200.pth \\
        --variants small small_qfriendly --threads 1 2 --plot docs/runtime_matrix.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
#: Variant -> (config, trunk overrides).
VARIANTS = {
    "small": ("configs/mtmnv3_small_3task_synth.py", {}),
    "small_qfriendly": ("configs/mtmnv3_small_3task_synth.py", {"se": "none", "activation": "relu6"}),
    "large": ("configs/mtmnv3_large_3task_synth.py", {}),
    "large_qfriendly": ("configs/mtmnv3_large_3task_synth.py", {"se": "none", "activation": "relu6"}),
}
RUNTIMES = ("onnxruntime", "openvino", "executorch")
SUFFIX = {"onnxruntime": ".onnx", "openvino": ".xml", "executorch": ".pte"}
METRICS = (("cls/top1", "top-1"), ("det/mAP_50", "mAP@0.5"), ("mot/IDF1", "IDF1"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    p.add_argument(
        "--checkpoint", nargs="+", default=[], metavar="VARIANT=PATH", help="trained weights per variant"
    )
    p.add_argument(
        "--calib-images", type=int, default=32, help="training frames calibrating int8 (default 32)"
    )
    p.add_argument(
        "--eval-samples", type=int, default=384, help="test images per metric evaluation (default 384)"
    )
    p.add_argument("--mot-sequences", type=int, default=8, help="test sequences tracked for IDF1 (default 8)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    p.add_argument("--plot", help="write latency vs mAP@0.5 per runtime here (PNG)")
    p.add_argument(
        "--cfg-options", nargs="+", default=[], help="config overrides for every variant, key=value"
    )
    return p.parse_args(argv)


def build(variant: str, checkpoint: str | None, options: dict):
    from mtmnv3.apis import init_model
    from mtmnv3.engine import load_config

    config, trunk = VARIANTS[variant]
    opts = {**options, **{f"model.trunk.{k}": v for k, v in trunk.items()}}
    cfg = load_config(ROOT / config, opts)
    return cfg, init_model(ROOT / config, checkpoint, opts), ROOT / config


def make_files(model, cfg, size, runtimes, calib_images, folder: Path) -> dict[tuple[str, str], Path]:
    """Every (runtime, precision) file of one model; failures are reported and skipped."""
    from mtmnv3.cli._deploy import held_out_frames
    from mtmnv3.runtime.frame_runner import export_for_backend
    from mtmnv3.runtime.onnx_export import export_onnx
    from mtmnv3.studies.quantization import quantize_onnx

    calibration, _ = held_out_frames(cfg, model, calib_images, size, split="train")
    files = {}
    for runtime in runtimes:
        for precision in ("fp32", "int8"):
            path = folder / f"{runtime}_{precision}{SUFFIX[runtime]}"
            try:
                if runtime == "onnxruntime" and precision == "int8":
                    quantize_onnx(files[(runtime, "fp32")], path, calibration)
                elif runtime == "onnxruntime":
                    export_onnx(model, path, input_size=size, exporter="torchscript")
                else:
                    export_for_backend(
                        model,
                        runtime,
                        path,
                        input_size=size,
                        int8=precision == "int8",
                        calibration=calibration if precision == "int8" else None,
                    )
                files[(runtime, precision)] = path
            except Exception as e:  # noqa: BLE001 - one runtime failing must not stop the matrix
                print(
                    f"  {runtime} {precision}: export failed ({type(e).__name__}: {str(e)[:200]})",
                    file=sys.stderr,
                )
    return files


def time_files(files, threads: int, size: int, rounds: int) -> dict[tuple[str, str], float]:
    """Median ms of each file, timed in interleaved rounds."""
    from mtmnv3.core.profiling import interleaved_timings
    from mtmnv3.runtime.sessions import open_session

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    sessions = {key: open_session(path, threads) for key, path in files.items()}
    calls = {key: (lambda s=s: s.run(x)) for key, s in sessions.items()}
    timings = interleaved_timings(calls, rounds=rounds, inner=3, warmup=3)
    return {key: t.median_ms for key, t in timings.items()}


def metrics_of(raw_fn, model, layout, cfg, frame_runner, mot_dir, args) -> dict[str, float]:
    """top-1 and mAP@0.5 on the test split, IDF1 from tracking the first sequences."""
    from mtmnv3.apis.inference import track_mot_sequences
    from mtmnv3.studies.quantization import evaluate_raw_fn

    out = evaluate_raw_fn(raw_fn, model, layout, cfg, split="test", max_samples=args.eval_samples)
    with tempfile.TemporaryDirectory() as tmp:
        tracker = {k: v for k, v in dict(cfg.get("tracker") or {}).items() if k != "type"}
        mot = track_mot_sequences(
            frame_runner, mot_dir, tmp, tracker, input_size=frame_runner.input_size, progress=False
        )
    out["mot/IDF1"] = float(mot["IDF1"])
    return out


def mot_subset(cfg, model, n: int, folder: Path) -> Path:
    """A MOTChallenge folder with the test split's first ``n`` sequences (links)."""
    from mmengine.runner import Runner

    dataset = Runner.build_dataloader(
        dict(cfg.test_dataloader, num_workers=0, persistent_workers=False)
    ).dataset
    src = Path(dataset.synth_dir) / "mot"
    dst = folder / "mot"
    dst.mkdir()
    for seq in sorted(p for p in src.iterdir() if (p / "seqinfo.ini").is_file())[:n]:
        os.symlink(seq, dst / seq.name)
    return dst


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import DictAction  # noqa: F401  (config values parse as mmengine does)

    from mtmnv3.cli._deploy import deployed_raw_fn
    from mtmnv3.core.profiling import format_table
    from mtmnv3.engine import input_size
    from mtmnv3.runtime.frame_runner import DeployedFrameRunner, TorchFrameRunner
    from mtmnv3.runtime.sessions import installed_backends

    options = dict(o.split("=", 1) for o in args.cfg_options)
    options = {k: _value(v) for k, v in options.items()}
    checkpoints = dict(c.split("=", 1) for c in args.checkpoint)
    runtimes = [r for r in args.runtimes if r in installed_backends()]
    torch.set_num_threads(max(args.threads))
    rows, points = [], []
    for variant in args.variants:
        ckpt = checkpoints.get(variant)
        cfg, model, _ = build(variant, ckpt, options)
        size = input_size(cfg.test_dataloader.dataset)
        print(f"{variant}: exporting {len(runtimes) * 2} files at {size} px", file=sys.stderr)
        folder = Path(tempfile.mkdtemp(prefix=f"runtime-matrix-{variant}-"))
        try:
            files = make_files(model, cfg, size, runtimes, args.calib_images, folder)
            scores: dict = {}
            if ckpt:
                mot_dir = mot_subset(cfg, model, args.mot_sequences, folder)
                from mtmnv3.runtime.export_meta import load_export_meta

                torch_fn = _torch_raw_fn(model, load_export_meta(files[("onnxruntime", "fp32")])["outputs"])
                layout = load_export_meta(files[("onnxruntime", "fp32")])["outputs"]
                scores["torch"] = metrics_of(
                    # square, as the files in the matrix are
                    torch_fn,
                    model,
                    layout,
                    cfg,
                    TorchFrameRunner(model, size, keep_aspect=False),
                    mot_dir,
                    args,
                )
                for key, path in files.items():
                    raw_fn, meta = deployed_raw_fn(path, max(args.threads))
                    frame_runner = DeployedFrameRunner(path, model, threads=max(args.threads))
                    scores[key] = metrics_of(raw_fn, model, meta["outputs"], cfg, frame_runner, mot_dir, args)
            for threads in args.threads:
                ms = time_files(files, threads, size, args.rounds)
                ref = ms.get(("onnxruntime", "fp32"))
                for (runtime, precision), value in ms.items():
                    fp32 = ms.get((runtime, "fp32"))
                    row = [
                        variant,
                        threads,
                        runtime,
                        precision,
                        f"{value:.2f}",
                        _ratio(ref, value),
                        _ratio(fp32, value) if precision == "int8" else "-",
                    ]
                    got = scores.get((runtime, precision))
                    for key, _ in METRICS:
                        row.append(
                            "no checkpoint"
                            if got is None
                            else f"{got[key]:.3f} ({got[key] - scores['torch'][key]:+.3f})"
                        )
                    rows.append(row)
                    if got is not None:
                        points.append((runtime, precision, variant, threads, value, got["det/mAP_50"]))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    headers = [
        "variant", "threads", "runtime", "precision", "ms", "speed-up vs ORT fp32", "int8 speed-up vs own fp32"
    ]  # fmt: skip
    headers += [f"{name} (vs torch fp32)" for _, name in METRICS]
    print(format_table(headers, rows))
    if args.plot and points:
        _plot(points, args.plot)
        print(f"\nplot: {args.plot}")
    return 0


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}"


def _torch_raw_fn(model, layout):
    names = list(dict.fromkeys(o["head"] for o in layout))

    @torch.no_grad()
    def run(images):
        out = model.head_outputs(images, names)
        return tuple(out[o["head"]] if o["key"] is None else out[o["head"]][o["key"]] for o in layout)

    return run


def _plot(points, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    markers = {"onnxruntime": "o", "openvino": "s", "executorch": "^"}
    for runtime, precision, variant, threads, ms, score in points:
        ax.scatter(
            ms, score, marker=markers[runtime], facecolors="none" if precision == "fp32" else None,
            edgecolors="k", c=None if precision == "fp32" else "k", s=40,
        )  # fmt: skip
        ax.annotate(
            f"{variant} {threads}t", (ms, score), fontsize=6, xytext=(3, 2), textcoords="offset points"
        )
    for runtime, marker in markers.items():
        ax.scatter([], [], marker=marker, c="k", label=f"{runtime} (filled: int8)")
    ax.set_xlabel("model ms (batch 1)")
    ax.set_ylabel("mAP@0.5 of the deployed file")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
