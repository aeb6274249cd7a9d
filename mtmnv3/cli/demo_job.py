"""The main job (``make demo``): train or reuse, evaluate, track a held-out video, report.

Steps, each reusing what an earlier run left in ``WORK_DIR`` (default
``work_dirs/demo``):

1. train the default three-task model with ``tools/train.py`` (resumes an
   interrupted run; skipped when the final checkpoint exists), copy it to
   ``WORK_DIR/model.pth``;
2. evaluate it with ``tools/test.py --track``: classification, detection and
   MOT tables on the held-out split, ``WORK_DIR/metrics.json``;
3. encode a held-out sequence as ``WORK_DIR/heldout.mp4`` and run the tracking
   demo on it under a per-frame budget (ONNX Runtime): ``demo.mp4``,
   ``demo_mot.txt``, ``demo_summary.json``, ``budget_log.json``;
4. write ``WORK_DIR/report.md`` with the tables and ``latency.png`` (per-frame
   latency against the budget, coloured by what ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from mtmnv3.core.fileio import atomic_open

__all__ = ["main", "build_parser", "plot_latency", "write_report"]

DEFAULT_CONFIG = "configs/mtmnv3_small_3task_synth.py"
TOOLS = Path(__file__).resolve().parent.parent / "tools"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train (or reuse), evaluate, and demo the default three-task model"
    )
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"model config (default {DEFAULT_CONFIG})")
    p.add_argument("--work-dir", default="work_dirs/demo", help="outputs (default work_dirs/demo)")
    p.add_argument("--budget-ms", type=float, default=33.0, help="demo per-frame budget (default 33)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="onnxruntime")
    p.add_argument("--frames", type=int, default=300, help="frames of the held-out demo video (default 300)")
    p.add_argument(
        "--video-size", type=int, default=256, help="held-out video frame size in pixels (default 256)"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the held-out video (default 7)")
    p.add_argument(
        "--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (training too)"
    )
    return p


def _run(cmd: list[str], what: str) -> None:
    print(f"\n== {what}: {' '.join(cmd)}", flush=True)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    done = subprocess.run(cmd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed (exit {done.returncode})")


def _final_checkpoint(train_dir: Path, max_iters: int) -> Path:
    return train_dir / f"iter_{max_iters}.pth"


def plot_latency(budget_log: dict[str, Any], out_png: str | os.PathLike, budget_ms: float | None) -> None:
    """Per-frame measured latency, coloured by the frame's mode, with the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = budget_log["records"]
    colors = {"full": "tab:blue", "det": "tab:orange", "motion": "tab:green", "skip": "tab:gray"}
    fig, ax = plt.subplots(figsize=(8, 3))
    for mode, color in colors.items():
        pts = [(r["frame_index"], r["measured_ms"]) for r in records if r["plan"]["mode"] == mode]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=6, color=color, label=mode)
    if budget_ms:
        ax.axhline(budget_ms, color="red", lw=1, ls="--", label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("frame")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout()
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def _table(rows: dict[str, Any]) -> str:
    from mtmnv3.evaluation import format_metrics_table

    return format_metrics_table(rows)


def write_report(
    path: str | os.PathLike,
    config: str,
    metrics: dict[str, float],
    demo: dict[str, Any],
    demo_mot: dict[str, float],
) -> None:
    lat = demo["latency_ms"]
    lines = [
        "# mtmnv3 demo report",
        "",
        f"Config: `{config}`; checkpoint `model.pth`.",
        "",
        "## Held-out metrics (tools/test.py --track)",
        "",
        _table(metrics),
        "",
        "## Tracking demo on a held-out video",
        "",
        f"Backend {demo['backend']}, budget {demo['budget_ms']} ms ({demo['policy']} policy), "
        f"association {demo['association']}.",
        "",
        "| frames | FPS | p50 ms | p95 ms | max ms | deadline misses | miss rate |",
        "|---|---|---|---|---|---|---|",
        f"| {demo['frames']} | {demo['fps']} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['max']:.2f} | "
        f"{demo['deadline_misses']} | {100 * (demo['miss_rate'] or 0):.2f}% |",
        "",
        "Share of frames per mode: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in (demo.get("mode_share") or {}).items()),
        "",
        "Mean staleness (frames since the task last ran): "
        + ", ".join(f"{k} {v:.2f}" for k, v in (demo.get("mean_staleness") or {}).items()),
        "",
        "MOT metrics of the budgeted demo run on this video:",
        "",
        _table({f"mot/{k}": v for k, v in demo_mot.items()}),
        "",
        "![per-frame latency](latency.png)",
        "",
        "Files: `demo.mp4` (annotated), `demo_mot.txt` (MOTChallenge results), `budget_log.json` (per-frame plan, "
        "latency, deadline, staleness), `metrics.json`.",
        "",
    ]
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mtmnv3.apis.inference import mot_sequence_dirs
    from mtmnv3.cli.demo import _cfg_options, run_demo
    from mtmnv3.cli.demo import build_parser as demo_parser
    from mtmnv3.core.fileio import atomic_write_json
    from mtmnv3.data import SceneConfig, write_synth_dataset
    from mtmnv3.engine import load_config
    from mtmnv3.evaluation import evaluate_mot_files
    from mtmnv3.runtime.video import write_sequence_video

    if not os.path.isfile(args.config):
        print(f"error: config not found: {args.config!r}", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, _cfg_options(args.cfg_options) or None)
    py = sys.executable
    opts = ["--cfg-options", *args.cfg_options] if args.cfg_options else []

    # 1. train or reuse
    train_dir = work / "train"
    final = _final_checkpoint(train_dir, int(cfg.train_cfg.max_iters))
    if final.is_file():
        print(f"== reusing {final}")
    else:
        resume = ["--resume"] if (train_dir / "last_checkpoint").is_file() else []
        _run(
            [py, str(TOOLS / "train.py"), args.config, "--work-dir", str(train_dir), *resume, *opts],
            "training",
        )
    model_path = work / "model.pth"
    with atomic_open(model_path, "wb") as f, open(final, "rb") as src:
        shutil.copyfileobj(src, f)

    # 2. evaluate: cls, det and MOT tables
    metrics_json = work / "metrics.json"
    _run(
        [
            py,
            str(TOOLS / "test.py"),
            args.config,
            str(model_path),
            "--track",
            "--work-dir",
            str(work / "test"),
            "--out-json",
            str(metrics_json),
            *opts,
        ],
        "evaluation",
    )
    metrics = json.loads(metrics_json.read_text())

    # 3. a held-out video (one long sequence of unseen object images) and the budgeted demo
    scene = dict(cfg.test_dataloader.dataset.get("scene") or {})
    heldout = work / "heldout"
    if not (heldout / "mot").is_dir():
        scene_cfg = SceneConfig(
            num_sequences=1,
            num_frames=args.frames,
            image_size=args.video_size,
            num_objects=int(cfg.test_dataloader.dataset.get("num_objects", 4)),
            appearance_pool="test",
            **scene,
        )
        write_synth_dataset(heldout, scene_cfg, seed=args.seed, name_prefix="heldout", progress=False)
    seq = mot_sequence_dirs(heldout / "mot")[0]
    video = work / "heldout.mp4"
    if not video.is_file():
        write_sequence_video(seq, video)
    demo_args = demo_parser().parse_args(
        [
            "--config", args.config, "--checkpoint", str(model_path), "--video", str(video),
            "--backend", args.backend, "--budget-ms", str(args.budget_ms),
            "--out", str(work / "demo.mp4"), "--mot-out", str(work / "demo_mot.txt"),
            "--summary-json", str(work / "demo_summary.json"), "--budget-log", str(work / "budget_log.json"),
            *opts,
        ]
    )  # fmt: skip
    print(
        f"\n== tracking demo on {video} (held-out sequence {seq.name}), budget {args.budget_ms} ms",
        flush=True,
    )
    summary = run_demo(demo_args)
    demo_mot = evaluate_mot_files({seq.name: seq / "gt" / "gt.txt"}, {seq.name: work / "demo_mot.txt"})
    summary["mot"] = {k: float(v) for k, v in demo_mot.items()}
    atomic_write_json(work / "demo_summary.json", summary)

    # 4. report
    plot_latency(json.loads((work / "budget_log.json").read_text()), work / "latency.png", args.budget_ms)
    write_report(work / "report.md", args.config, metrics, summary, summary["mot"])
    print((work / "report.md").read_text())
    print(f"outputs in {work}/: model.pth, demo.mp4, report.md, latency.png, metrics.json")
    return 0
