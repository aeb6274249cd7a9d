"""Several live streams in one process: can two 320 px streams each keep 30 FPS on this machine?

A held-out synthetic video (unseen object images) is served by ffmpeg on
127.0.0.1 as live HTTP MPEG-TS streams in real time (``-re``; one ffmpeg
process per stream, H.264 encoding included, so the servers' CPU is charged
to this machine as well), and ``mtmnv3 demo``'s live path reads 1, 2, ...
of them at once in one process: stream decode threads, letterbox, the model
on the chosen runtime, one tracker per stream, the overlay and the annotated
videos written; without a budget (every head on every frame at ``--size``)
and under one shared ``--budget-ms`` per round. Per stream: frames
processed, FPS, frames dropped (arrived while busy), late frames (result
more than one frame period after capture), deadline misses, latency p50/p95.

The reference in the same run: the same pipeline on the same number of
*files* (no real-time pacing, no servers), the pipeline's capacity per
stream. ``--stream-fps 60`` re-times the served streams to 60 FPS, to see
past the 30 FPS a 30 FPS source caps.

Usage: python benchmarks/multi_stream.py [--checkpoint weights/mtmnv3_small_3task_synth.pth]
           [--streams 1 2] [--size 320] [--video-size 320] [--seconds 10] [--stream-fps 30]
           [--budgets 0 33] [--backends onnxruntime openvino] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args, sources: list[str], backend: str, budget: float, out_dir: Path, max_frames: int) -> dict:
    from mtmnv3.cli.live_demo import live_namespace, run_demo

    ns = live_namespace(
        args.config,
        args.checkpoint,
        source=sources,
        backend=backend,
        size=args.size,
        budget_ms=budget or None,
        threads=args.threads,
        max_frames=max_frames,
        out=str(out_dir / "demo.mp4"),
        summary_json=str(out_dir / "summary.json"),
        synthetic_source=True,
    )
    summary = run_demo(ns)
    return summary


def _rows(summary: dict) -> list[dict]:
    return summary.get("streams") or [dict(summary, stream="1")]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/mtmnv3_small_3task_synth.py"))
    p.add_argument("--checkpoint", default=str(ROOT / "weights/mtmnv3_small_3task_synth.pth"))
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2], help="stream counts to run")
    p.add_argument("--size", type=int, default=320, help="model input size (long side)")
    p.add_argument("--video-size", type=int, default=320, help="served video's frame size (square)")
    p.add_argument("--seconds", type=float, default=10.0, help="frames per stream = seconds x stream fps")
    p.add_argument("--stream-fps", type=float, default=30.0)
    p.add_argument(
        "--budgets", type=float, nargs="+", default=[0.0, 33.0],
        help="one round's budget (ms) shared by the streams; 0: no budget (every head, every frame)",
    )  # fmt: skip
    p.add_argument("--backends", nargs="+", default=["onnxruntime"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=2024)
    args = p.parse_args(argv)

    from mtmnv3.cli.demo_job import write_heldout_video
    from mtmnv3.engine import load_config
    from mtmnv3.runtime.sessions import installed_backends
    from mtmnv3.runtime.stream_server import FFmpegStream, ffmpeg_path

    if ffmpeg_path() is None:
        print("error: ffmpeg is not installed (Debian: apt-get install ffmpeg)", file=sys.stderr)
        return 2
    missing = [b for b in args.backends if b not in installed_backends()]
    if missing:
        print(
            f"error: runtime(s) not installed: {missing}; installed: {installed_backends()}", file=sys.stderr
        )
        return 2
    cfg = load_config(args.config)
    n_frames = int(round(args.seconds * args.stream_fps))
    print(
        f"streams of a {args.video_size}x{args.video_size} held-out video at {args.stream_fps:g} FPS, "
        f"{n_frames} frames each; model at {args.size}; budgets {args.budgets} ms per round; "
        f"{args.threads} threads"
    )
    header = (
        "| runtime | budget ms | streams | stream | frames | FPS | capacity FPS (files) | dropped | late "
        "| deadline misses | latency p50 / p95 ms |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # long enough to serve every frame without looping back to its start
        video, _ = write_heldout_video(cfg, tmp, max(n_frames + 30, 60), args.video_size, args.seed)
        for backend, budget, k in (
            (b, m, k) for b in args.backends for m in args.budgets for k in args.streams
        ):
            tag = f"{backend}_{budget:g}_{k}"
            files = _run(args, [str(video)] * k, backend, budget, tmp / f"files_{tag}", n_frames)
            capacity = {r["stream"]: r["fps"] for r in _rows(files)}
            with ExitStack() as stack:
                servers = [stack.enter_context(FFmpegStream(video, fps=args.stream_fps)) for _ in range(k)]
                live = _run(args, [s.url for s in servers], backend, budget, tmp / f"live_{tag}", n_frames)
            for r in _rows(live):
                lat = r["latency_ms"] or {}
                lines.append(
                    f"| {backend} | {budget:g} | {k} | {r['stream']} | {r['frames']} | {r['fps']:.1f} "
                    f"| {capacity.get(r['stream'], float('nan')):.1f} | {r['dropped_frames']} "
                    f"| {r['late_frames']} | {r['deadline_misses']} "
                    f"| {lat.get('p50', float('nan')):.1f} / {lat.get('p95', float('nan')):.1f} |"
                )
            print("\n".join(lines[-k:]), flush=True)
    print("\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
