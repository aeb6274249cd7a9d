"""The live pipeline on generated held-out videos: speed, the budget under load, association.

Three measurements with one trained checkpoint (default: the one ``make demo``
writes), on held-out sequences generated at 320x320 (unseen object images):

1. **FPS of the full pipeline** (video decode, model, peak decode + NMS,
   association, drawing) on every installed runtime (ONNX Runtime, OpenVINO,
   ExecuTorch), against the same pipeline in eager PyTorch (ratio in the
   same run), at the model's input size and at 320.
2. **The budget under load**: ``--budget-ms`` with another process keeping one
   core busy: deadline misses, and IDF1 against the unbudgeted run.
3. **Embedding vs IoU-only association** with the same detections (computed
   once per frame): IDF1, ID switches, MOTA, HOTA over all held-out
   sequences, and per sequence how often the embeddings win, at the generator's
   default object speed and with objects ``--fast-factor`` times faster (what
   the tracker sees when only every k-th frame is a detection keyframe, or
   under fast camera motion): at the default speed consecutive boxes overlap
   so much that IoU alone rarely confuses identities.

Usage: python benchmarks/demo_pipeline.py [--config CONFIG] [--checkpoint work_dirs/demo/model.pth]
           [--sequences 4] [--frames 150] [--budget-ms 33] [--threads 2] [--fast-factor 4]
           [--seed 2024] [--parts speed,budget,association]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The three measurements, in order (``--parts``).
PARTS = ("speed", "budget", "association")


def _busy() -> None:  # keeps one core busy
    x = 0
    while True:
        x += 1


def run_pipeline(
    model, layout, video, backend, size, threads, budget_ms=None, resolutions=None, tracker_cfg=None
):
    """One pass over ``video``; returns (summary dict, MOT rows)."""
    from mtmnv3.core.registry import BUDGET_POLICIES
    from mtmnv3.runtime.budget import BudgetLog, BudgetScheduler
    from mtmnv3.runtime.frame_runner import build_frame_runner
    from mtmnv3.runtime.loop import PerceptionLoop, calibrate_costs, summarize
    from mtmnv3.runtime.video import VideoFileReader
    from mtmnv3.tracking import build_tracker

    sizes = resolutions if budget_ms is not None else [size]
    runner = build_frame_runner(model, backend, input_size=max(sizes), threads=threads)
    reader = VideoFileReader(video)
    width, height = reader.size
    reader.close()
    probe = np.full((height, width, 3), 114, np.uint8)  # the video's own shape: costs at its rectangle
    scheduler = None
    if budget_ms is not None:
        est = calibrate_costs(runner, layout, sizes, model.trunk.stage_macs(sizes[0], sizes[0]), probe)
        policy = BUDGET_POLICIES.build(
            dict(type="AdaptiveDeadlinePolicy", budget_ms=budget_ms, resolutions=sizes)
        )
        scheduler = BudgetScheduler(policy, est, layout, BudgetLog())
    else:
        for _ in range(3):
            runner.predict(probe, input_size=size)
    tracker = build_tracker(dict(tracker_cfg or {"type": "EmbeddingTracker"}))
    loop = PerceptionLoop(runner, tracker, scheduler, layout, size, draw=True)
    source = VideoFileReader(video)
    loop.warm_up((source.size[1], source.size[0], 3))
    rows = []
    t0 = time.perf_counter()
    frames = 0
    for frame in source:  # decoding is inside the timed loop
        rows.append(loop.step(frame).mot_rows)
        frames += 1
    wall = time.perf_counter() - t0
    if hasattr(runner, "close"):
        runner.close()
    return summarize(loop.log, wall, frames), np.concatenate(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs/mtmnv3_small_3task_synth.py"))
    p.add_argument("--checkpoint", default=str(ROOT / "work_dirs/demo/model.pth"))
    p.add_argument("--sequences", type=int, default=4)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--budget-ms", type=float, default=33.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--fast-factor", type=float, default=4.0, help="object speed multiplier of the fast-motion set"
    )
    p.add_argument("--seed", type=int, default=2024, help="generator seed of the held-out sequences")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    args = p.parse_args(argv)
    parts = [x for x in args.parts.split(",") if x]
    if not parts or any(x not in PARTS for x in parts):
        p.error(f"--parts must be a comma-separated subset of {','.join(PARTS)}, got {args.parts!r}")
    if args.sequences < 1 or args.frames < 2:
        p.error(f"--sequences must be >= 1 and --frames >= 2, got {args.sequences} and {args.frames}")

    from mtmnv3.apis import init_model
    from mtmnv3.apis.inference import mot_sequence_dirs
    from mtmnv3.cli.demo import default_sizes
    from mtmnv3.data import SceneConfig, write_synth_dataset
    from mtmnv3.data.mot_io import write_mot_txt
    from mtmnv3.engine import load_config
    from mtmnv3.evaluation import evaluate_mot_files
    from mtmnv3.runtime.budget import ModelLayout
    from mtmnv3.runtime.video import write_sequence_video

    model = init_model(args.config, args.checkpoint)
    layout = ModelLayout.from_model(model)
    size, resolutions = default_sizes(args.config, None, None)
    full_cfg = load_config(args.config, None)
    scene = dict(full_cfg.test_dataloader.dataset.get("scene") or {})
    tcfg = dict(full_cfg.get("tracker") or {"type": "EmbeddingTracker"})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SceneConfig(
            num_sequences=args.sequences,
            num_frames=args.frames,
            image_size=320,
            appearance_pool="test",
            **scene,
        )
        data = write_synth_dataset(
            Path(tmp) / "heldout", cfg, seed=args.seed, name_prefix="heldout", progress=False
        )
        seqs = mot_sequence_dirs(data / "mot")
        video = Path(tmp) / "heldout.mp4"
        write_sequence_video(seqs[0], video)
        gt = {seqs[0].name: seqs[0] / "gt" / "gt.txt"}

        def idf1(rows, name):
            res = Path(tmp) / f"{name}.txt"
            write_mot_txt(res, rows)
            return evaluate_mot_files(gt, {seqs[0].name: res})

        if "speed" in parts:
            _speed(model, layout, video, size, args, tcfg)
        if "budget" in parts:
            _budget(model, layout, video, size, resolutions, args, tcfg, idf1)
        if "association" in parts:
            _association(model, size, cfg, data, Path(tmp), args, tcfg)
    return 0


def _speed(model, layout, video, size, args, tcfg) -> None:
    """1. Speed of the whole pipeline on every installed runtime, against eager PyTorch."""
    from mtmnv3.core.profiling import format_table
    from mtmnv3.runtime.sessions import installed_backends

    runtimes = [b for b in ("onnxruntime", "openvino", "executorch") if b in installed_backends()]
    speed = []
    for s in (size, 320):
        eager, _ = run_pipeline(model, layout, video, "torch", s, args.threads, tracker_cfg=tcfg)
        for backend in runtimes:
            got, _ = run_pipeline(model, layout, video, backend, s, args.threads, tracker_cfg=tcfg)
            speed.append([s, args.threads, backend, f"{got['fps']:.1f}", f"{eager['fps']:.1f}",
                          f"{got['fps'] / eager['fps']:.2f}", f"{got['latency_ms']['p50']:.2f}",
                          f"{got['latency_ms']['p95']:.2f}"])  # fmt: skip
    print(
        f"\n1. Full pipeline FPS ({args.frames} frames of a 320x320 held-out video, {args.threads} threads)"
    )
    print(
        format_table(
            ["input", "threads", "runtime", "FPS", "eager FPS", "x eager", "p50 ms", "p95 ms"], speed
        )
    )


def _budget(model, layout, video, size, resolutions, args, tcfg, idf1) -> None:
    """2. The budget under load: misses and IDF1 against the unbudgeted run."""
    from mtmnv3.core.profiling import format_table

    _, free_rows = run_pipeline(model, layout, video, "onnxruntime", size, args.threads, tracker_cfg=tcfg)
    base = idf1(free_rows, "unbudgeted")
    busy = mp.get_context("spawn").Process(target=_busy, daemon=True)
    busy.start()
    try:
        rows = []
        for threads in sorted({1, args.threads}):
            s, r = run_pipeline(
                model, layout, video, "onnxruntime", size, threads, args.budget_ms, resolutions, tcfg
            )
            m = idf1(r, f"budget{threads}")
            share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in s["mode_share"].items() if v)
            rows.append([threads, f"{100 * s['miss_rate']:.2f}%", f"{s['latency_ms']['p95']:.1f}",
                         f"{m['IDF1']:.3f}", f"{base['IDF1']:.3f}", f"{100 * (m['IDF1'] - base['IDF1']):+.1f}", share])  # fmt: skip
    finally:
        busy.terminate()
    print(
        f"\n2. Budget {args.budget_ms} ms, adaptive policy, sizes {resolutions}, one core kept busy by another process"
    )
    print(
        format_table(
            ["threads", "misses", "p95 ms", "IDF1 budgeted", "IDF1 unbudgeted", "diff (pts)", "modes"], rows
        )
    )


def _association(model, size, cfg, data, tmp, args, tcfg) -> None:
    """3. Association with the same detections (computed once per frame): embeddings + IoU
    against IoU only, with and without the config's Kalman motion gate (which the tracker
    applies only with embeddings, so the middle row keeps the gate and drops the embeddings),
    at two object speeds; then sequence by sequence, how often the embeddings win."""
    from mtmnv3.apis.inference import detect_mot_sequences, track_detections
    from mtmnv3.core.profiling import format_table
    from mtmnv3.data import write_synth_dataset
    from mtmnv3.runtime.frame_runner import ExportedFrameRunner

    lo, hi = cfg.speed
    fast = write_synth_dataset(
        tmp / "heldout_fast",
        cfg.replace(speed=(min(lo * args.fast_factor, 1.0), min(hi * args.fast_factor, 1.0))),
        seed=args.seed,
        name_prefix="heldout_fast",
        progress=False,
    )
    trackers = (
        ("embedding + IoU (config)", tcfg),
        ("IoU only, same motion gate", {**tcfg, "fusion": "min", "appearance_thr": 0.0}),
        ("IoU only (ByteTrack)", {**tcfg, "use_embeddings": False}),
    )
    runner = ExportedFrameRunner(model, "onnxruntime", size, threads=args.threads)
    rows, paired = [], []
    for motion, root in (("default", data), (f"x{args.fast_factor:g} faster", fast)):
        dets = detect_mot_sequences(runner, root / "mot", progress=False)
        results = []
        for i, (name, cfg_t) in enumerate(trackers):
            m, per_seq = track_detections(dets, tmp / f"{root.name}_{i}", cfg_t, per_sequence=True)
            results.append(per_seq)
            rows.append([motion, name, f"{m['IDF1']:.4f}", m["IDSW"], f"{m['MOTA']:.4f}", f"{m['HOTA']:.4f}"])
        emb = results[0]
        for (name, _), other in zip(trackers[1:], results[1:]):
            d_idf1 = np.array([emb[s]["IDF1"] - other[s]["IDF1"] for s in emb])
            d_idsw = np.array([emb[s]["IDSW"] - other[s]["IDSW"] for s in emb])
            paired.append([motion, name, f"{(d_idf1 > 0).sum()} / {(d_idf1 == 0).sum()} / {(d_idf1 < 0).sum()}",
                           f"{(d_idsw < 0).sum()} / {(d_idsw == 0).sum()} / {(d_idsw > 0).sum()}"])  # fmt: skip
    runner.close()
    print(
        f"\n3. Association on {args.sequences} held-out sequences x {args.frames} frames, generator seed "
        f"{args.seed} (same detections)"
    )
    print(format_table(["object motion", "association", "IDF1", "IDSW", "MOTA", "HOTA"], rows))
    print(f"\nEmbedding + IoU (config) against each IoU-only tracker, per sequence (of {args.sequences})")
    print(
        format_table(
            ["object motion", "against", "IDF1 higher / equal / lower", "IDSW fewer / equal / more"], paired
        )
    )


if __name__ == "__main__":
    sys.exit(main())
