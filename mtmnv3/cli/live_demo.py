"""Command line of ``tools/demo.py`` (kept in the package so it is importable and tested)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.runtime.video import AtomicVideoWriter, VideoSourceError, display_available, open_source

__all__ = ["build_parser", "main", "run_demo", "POLICIES", "DemoError"]

#: --policy name -> registered budget policy.
POLICIES = {
    "adaptive": "AdaptiveDeadlinePolicy",
    "greedy": "GreedyUtilityPolicy",
    "fixed": "FixedIntervalPolicy",
}
WINDOW = "mtmnv3 demo"


class DemoError(RuntimeError):
    """Bad input to the demo (reported as ``error: ...`` with exit status 2)."""


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 or v % 32 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive multiples of 32, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Multi-task tracking demo on a camera or a video file")
    p.add_argument("--config", required=True, help="model config (mmengine .py)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.pth)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera-id", type=int, help="camera index (0 = default webcam)")
    src.add_argument("--video", help="video file (any container/codec OpenCV reads)")
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="onnxruntime",
        help="runtime (default onnxruntime)",
    )
    p.add_argument(
        "--budget-ms", type=float, help="per-frame compute budget in ms (default: run every head every frame)"
    )
    p.add_argument(
        "--policy", choices=sorted(POLICIES), default="adaptive", help="budget policy (default adaptive)"
    )
    p.add_argument(
        "--size", type=int, help="input size, multiple of 32 (default: the config's test image size)"
    )
    p.add_argument(
        "--resolutions",
        type=_ints,
        help="sizes the budget may pick (default: size and 3/4 of it; much smaller inputs than the training size lose the objects)",
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument(
        "--cls-period", type=int, default=10, help="classify every k frames under a budget (default 10)"
    )
    p.add_argument("--iou-only", action="store_true", help="associate by IoU only (no embeddings)")
    p.add_argument("--out", help="annotated video to write (.mp4 or .avi)")
    p.add_argument("--mot-out", help="MOTChallenge result file to write")
    p.add_argument("--summary-json", help="summary (frames, fps, p50/p95 latency, deadline misses)")
    p.add_argument("--budget-log", help="per-frame log (plan, latency, deadline, staleness) as JSON")
    p.add_argument("--show", action="store_true", help="show a window (q or Esc quits)")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides")
    return p


def _check_args(args: argparse.Namespace) -> None:
    for name in ("config", "checkpoint"):
        path = getattr(args, name)
        if not os.path.isfile(path):
            raise DemoError(f"{name} not found: {path!r} (expected an existing file)")
    if args.show and not display_available():
        raise DemoError(
            "--show needs a display, but neither DISPLAY nor WAYLAND_DISPLAY is set; drop --show or use --out"
        )
    if args.budget_ms is not None and not args.budget_ms > 0:
        raise DemoError(f"--budget-ms must be > 0, got {args.budget_ms}")
    if args.size is not None and (args.size <= 0 or args.size % 32):
        raise DemoError(f"--size must be a positive multiple of 32, got {args.size}")
    if args.threads < 1:
        raise DemoError(f"--threads must be >= 1, got {args.threads}")
    if args.max_frames is not None and args.max_frames < 1:
        raise DemoError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.cls_period < 1:
        raise DemoError(f"--cls-period must be >= 1, got {args.cls_period}")
    if args.out and Path(args.out).suffix.lower() not in AtomicVideoWriter.CODECS:
        raise DemoError(f"--out must end in one of {sorted(AtomicVideoWriter.CODECS)}, got {args.out!r}")


def _cfg_options(items: list[str]) -> dict[str, Any]:
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="opts")(None, ns, items)
    return getattr(ns, "opts", {}) or {}


def _class_names(checkpoint: str) -> tuple[list[str] | None, list[str] | None]:
    import torch

    meta = torch.load(checkpoint, map_location="cpu", weights_only=False).get("meta", {}) or {}
    ds = meta.get("dataset_meta") or {}
    det = ds.get("classes")
    return (list(det) if det else None), (list(ds["cls_classes"]) if ds.get("cls_classes") else None)


def default_sizes(
    config: str, size: int | None, resolutions: list[int] | None, cfg_options: dict | None = None
) -> tuple[int, list[int]]:
    """The input size (the config's test input size unless given) and the budget's size ladder."""
    if size is None:
        from mtmnv3.engine import input_size, load_config

        size = input_size(load_config(config, cfg_options or None).test_dataloader.dataset)
    if resolutions is None:
        resolutions = sorted({max(32, int(round(size * f / 32)) * 32) for f in (1.0, 0.75)}, reverse=True)
    return size, list(resolutions)


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo for parsed ``args``; returns the summary dict."""
    import cv2

    from mtmnv3.apis import init_model
    from mtmnv3.core.registry import BUDGET_POLICIES
    from mtmnv3.data.mot_io import write_mot_txt
    from mtmnv3.runtime.budget import BudgetLog, BudgetScheduler, ModelLayout
    from mtmnv3.runtime.frame_runner import build_frame_runner
    from mtmnv3.runtime.loop import PerceptionLoop, calibrate_costs, summarize
    from mtmnv3.tracking import build_tracker

    _check_args(args)
    options = _cfg_options(args.cfg_options)
    args.size, args.resolutions = default_sizes(args.config, args.size, args.resolutions, options)
    source = open_source(camera_id=args.camera_id, video=args.video, max_frames=args.max_frames)
    try:
        model = init_model(args.config, args.checkpoint, options)
    except BaseException:
        if hasattr(source, "close"):
            source.close()
        raise
    det_classes, cls_classes = _class_names(args.checkpoint)
    layout = ModelLayout.from_model(model)
    sizes = args.resolutions if args.budget_ms is not None else [args.size]
    runner = build_frame_runner(model, args.backend, input_size=max(sizes), threads=args.threads)
    scheduler = None
    if args.budget_ms is not None:
        probe = np.full((sizes[0], sizes[0], 3), 114, np.uint8)
        estimator = calibrate_costs(runner, layout, sizes, model.trunk.stage_macs(sizes[0], sizes[0]), probe)
        policy = BUDGET_POLICIES.build(
            dict(
                type=POLICIES[args.policy],
                budget_ms=args.budget_ms,
                resolutions=sizes,
                cls_period=args.cls_period,
            )
        )
        scheduler = BudgetScheduler(policy, estimator, layout, BudgetLog())
    else:
        runner.predict(np.full((args.size, args.size, 3), 114, np.uint8), input_size=args.size)  # warm-up
    from mtmnv3.engine import load_config

    tracker_cfg = dict(
        load_config(args.config, options or None).get("tracker") or {"type": "EmbeddingTracker"}
    )
    tracker_cfg.update(use_embeddings=not args.iou_only, frame_rate=getattr(source, "fps", 30.0))
    tracker = build_tracker(tracker_cfg)
    loop = PerceptionLoop(
        runner,
        tracker,
        scheduler,
        layout,
        args.size,
        det_classes,
        cls_classes,
        draw=bool(args.out or args.show),
    )
    w, h = source.size
    loop.warm_up((h, w, 3))
    rows = []
    writer = AtomicVideoWriter(args.out, fps=getattr(source, "fps", 30.0)) if args.out else None
    frames = 0
    t_start = time.perf_counter()
    try:
        for frame in source:
            result = loop.step(frame)
            rows.append(result.mot_rows)
            frames += 1
            if writer is not None:
                writer.write(result.image)
            if args.show:
                cv2.imshow(WINDOW, cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
        wall = time.perf_counter() - t_start
        if frames == 0:
            raise DemoError("the source delivered no frames")
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer._discard()
        raise
    finally:
        if args.show:
            cv2.destroyAllWindows()
        if hasattr(runner, "close"):
            runner.close()
    summary = summarize(
        loop.log,
        wall,
        frames,
        dropped=getattr(source, "dropped", 0),
        extra=dict(
            backend=args.backend,
            budget_ms=args.budget_ms,
            policy=args.policy if args.budget_ms is not None else None,
            association="iou" if args.iou_only else "embedding+iou",
            source=str(args.video) if args.video else f"camera {args.camera_id}",
        ),
    )
    if args.mot_out:
        write_mot_txt(args.mot_out, np.concatenate(rows) if rows else np.zeros((0, 10)))
    if args.budget_log:
        loop.log.to_json(args.budget_log)
    if args.summary_json:
        atomic_write_json(args.summary_json, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = run_demo(args)
    except (DemoError, VideoSourceError, FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    lat = summary["latency_ms"]
    print(
        f"{summary['frames']} frames, {summary['fps']} FPS, latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms, "
        f"deadline misses {summary['deadline_misses']} ({100 * (summary['miss_rate'] or 0):.1f}%)"
    )
    return 0
