"""``mtmnv3 demo``: the default job (train or reuse, evaluate, demo, report), or the live demo on ``--source``.

Without CONFIG CHECKPOINT it runs the job behind ``make demo``
(:mod:`mtmnv3.cli.demo_job`; ``--config`` picks another config, outputs go to
``--work-dir``, default ``work_dirs/demo``). With them and a ``--source``
(a camera index, a video file, a folder of images, or an rtsp/http(s) URL;
``--video`` and ``--camera-id`` are aliases) it runs the live demo
(:mod:`mtmnv3.cli.live_demo`): multi-task model -> tracker -> overlay, under a
per-frame budget with ``--budget-ms``; several ``--source`` flags run several
streams in one process with one shared budget.

Bad input (a source that cannot be opened, a missing checkpoint, ``--show``
without a display) prints ``error: ...`` and exits with status 2; outputs are
written atomically, so a failed run leaves no half-written files. A stream
that drops during the run is reopened with backoff; one that does not come
back ends with its error while the others go on, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser, report
from mtmnv3.cli.demo_job import DEFAULT_CONFIG, JOB_DEFAULTS, JobStepError, run_job
from mtmnv3.cli.live_demo import (
    LIVE_DEFAULTS,
    POLICIES,
    DemoError,
    default_sizes,
    failed_streams,
    parse_sizes,
    run_demo,
)
from mtmnv3.runtime.sessions import BACKENDS
from mtmnv3.runtime.video import VideoSourceError

__all__ = ["add_parser", "run", "main", "default_sizes"]

DESCRIPTION = (
    "the default job (the shipped model or training, evaluation, demo, report), or the live demo on --source"
)
EXAMPLE = f"""\
mtmnv3 demo                                   # the default job; outputs under work_dirs/demo
mtmnv3 demo {DEFAULT_CONFIG} work_dirs/demo/model.pth --source 0 --show
mtmnv3 demo {DEFAULT_CONFIG} work_dirs/demo/model.pth --source video.mp4 --budget-ms 33 --out annotated.mp4
mtmnv3 demo {DEFAULT_CONFIG} work_dirs/demo/model.pth --source frames/ --mot-out results.txt
mtmnv3 demo {DEFAULT_CONFIG} work_dirs/demo/model.pth --source rtsp://camera.local/stream
mtmnv3 demo {DEFAULT_CONFIG} work_dirs/demo/model.pth --source rtsp://cam1/s --source rtsp://cam2/s --budget-ms 30"""

#: Options only the default job takes, and only the live demo takes.
JOB_ONLY = ("work_dir", "frames", "video_size", "seed", "retrain")
LIVE_ONLY = (
    "size",
    "resolutions",
    "out",
    "mot_out",
    "summary_json",
    "budget_log",
    "max_frames",
    "classes",
    "line",
    "zone",
    "counts_csv",
)
LIVE_SET = (
    "policy",
    "threads",
    "cls_period",
    "iou_only",
    "show",
    "int8",
    "synthetic_source",
    "reconnect",
)  # live-demo options with a default


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``demo`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("demo", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="model config (live demo)")
    p.add_argument("checkpoint_file", nargs="?", metavar="CHECKPOINT", help="trained checkpoint (live demo)")
    p.add_argument("--config", help=f"model config (the same as CONFIG; the job's default {DEFAULT_CONFIG})")
    p.add_argument("--checkpoint", help="trained checkpoint (the same as CHECKPOINT)")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--source",
        action="append",
        help="camera index, video file, folder of images, glob pattern of images ('frames/*.jpg'), or "
        "rtsp/http(s) URL; repeat it to run several "
        "sources in one process with one shared --budget-ms (outputs get the stream's number: out_1.mp4)",
    )
    src.add_argument("--video", help="video file (alias of --source FILE)")
    src.add_argument("--camera-id", type=int, help="camera index (alias of --source N; 0 = default webcam)")
    live = p.add_argument_group("live demo")
    live.add_argument(
        "--backend",
        choices=BACKENDS,
        default="onnxruntime",
        help="runtime: the PyTorch model, or the model exported for onnxruntime, executorch or openvino "
        "(default onnxruntime)",
    )
    live.add_argument(
        "--int8",
        action="store_true",
        help="live demo on int8 files (executorch, openvino), calibrated on the config's training frames",
    )
    live.add_argument(
        "--budget-ms",
        type=float,
        help="per-frame compute budget in ms (live default: every head every frame; "
        f"the job's default {JOB_DEFAULTS['budget_ms']:g})",
    )
    live.add_argument(
        "--policy", choices=sorted(POLICIES), default="adaptive", help="budget policy (default adaptive)"
    )
    live.add_argument(
        "--size", type=int, help="input size, multiple of 32 (default: the config's test image size)"
    )
    live.add_argument(
        "--resolutions",
        type=parse_sizes,
        help="sizes the budget may pick (default: size and 3/4 of it; much smaller inputs than the "
        "training size lose the objects)",
    )
    live.add_argument(
        "--threads", type=int, default=LIVE_DEFAULTS["threads"], help="intra-op threads (default 2)"
    )
    live.add_argument(
        "--cls-period", type=int, default=10, help="classify every k frames under a budget (default 10)"
    )
    live.add_argument("--iou-only", action="store_true", help="associate by IoU only (no embeddings)")
    live.add_argument("--out", help="annotated video to write (.mp4 or .avi)")
    live.add_argument("--mot-out", help="MOTChallenge result file to write")
    live.add_argument("--summary-json", help="summary (frames, fps, p50/p95 latency, deadline misses)")
    live.add_argument("--budget-log", help="per-frame log (plan, latency, deadline, staleness) as JSON")
    live.add_argument("--show", action="store_true", help="show a window (q or Esc quits)")
    live.add_argument("--max-frames", type=int, help="stop after N frames (per source)")
    live.add_argument(
        "--reconnect",
        type=int,
        metavar="N",
        default=LIVE_DEFAULTS["reconnect"],
        help="reopen a network stream that drops up to N times in a row, waiting 0.5 s, 1 s, 2 s, ... "
        "(at most 8 s) between tries; 0 never reopens (default %(default)s)",
    )
    live.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        help="keep only these object classes (names from the model) for tracking, drawing and the result files",
    )
    live.add_argument(
        "--line",
        action="append",
        metavar="X1,Y1,X2,Y2",
        help="count tracks crossing this line, per direction (repeatable; source pixels; 'in' is to the "
        "right of the direction X1,Y1 -> X2,Y2: moving down for a line drawn left to right)",
    )
    live.add_argument(
        "--zone",
        action="append",
        metavar="X1,Y1,X2,Y2,X3,Y3,...",
        help="count tracks inside this polygon and how many entered (repeatable; source pixels)",
    )
    live.add_argument("--counts-csv", help="per-frame counts of every --line and --zone as CSV")
    live.add_argument(
        "--synthetic-source",
        action="store_true",
        help="the source shows the package's synthetic scenes (no notice that a synthetic-only model "
        "finds little in real footage)",
    )
    job = p.add_argument_group("default job (no CONFIG CHECKPOINT)")
    job.add_argument("--work-dir", help=f"outputs (default {JOB_DEFAULTS['work_dir']})")
    job.add_argument(
        "--frames", type=int, help=f"frames of the held-out video (default {JOB_DEFAULTS['frames']})"
    )
    job.add_argument(
        "--video-size",
        type=int,
        help=f"held-out video frame size in pixels (default {JOB_DEFAULTS['video_size']})",
    )
    job.add_argument("--seed", type=int, help=f"seed of the held-out video (default {JOB_DEFAULTS['seed']})")
    job.add_argument(
        "--retrain",
        action="store_true",
        default=None,
        help="train from scratch even when the config has released weights (weights/), and compare the "
        "result with their model card (make train-demo)",
    )
    p.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides (the job's training too)",
    )
    return p


def _one(positional: str | None, flag: str | None, what: str, option: str) -> str | None:
    if positional is not None and flag is not None and positional != flag:
        raise DemoError(f"{what} given twice: {positional!r} and {option} {flag!r}")
    return positional if positional is not None else flag


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run(args: argparse.Namespace) -> int:
    """The live demo when a source is given, else the default job; returns the exit status."""
    try:
        config = _one(args.config_file, args.config, "CONFIG", "--config")
        checkpoint = _one(args.checkpoint_file, args.checkpoint, "CHECKPOINT", "--checkpoint")
        live = any(getattr(args, k) is not None for k in ("source", "video", "camera_id"))
        if live:
            if config is None or checkpoint is None:
                raise DemoError("the live demo needs CONFIG and CHECKPOINT (or --config and --checkpoint)")
            given = [_flag(k) for k in JOB_ONLY if getattr(args, k) is not None]
            if given:
                raise DemoError(f"{', '.join(given)} only apply to the default job (no --source)")
            args.config, args.checkpoint = config, checkpoint
            summary = run_demo(args)
        else:
            if checkpoint is not None:
                raise DemoError(
                    "the live demo needs a source: --source (camera index, video file, folder of images or "
                    "URL), --video or --camera-id; without CHECKPOINT, mtmnv3 demo runs the default job"
                )
            given = [_flag(k) for k in LIVE_ONLY if getattr(args, k) is not None]
            given += [_flag(k) for k in LIVE_SET if getattr(args, k) != LIVE_DEFAULTS[k]]
            if given:
                raise DemoError(f"{', '.join(given)} only apply to the live demo (give --source)")
            job = {k: v for k, v in JOB_DEFAULTS.items() if k not in ("config", "backend")}
            job.update(
                {k: getattr(args, k) for k in (*JOB_ONLY, "budget_ms") if getattr(args, k) is not None}
            )
            return run_job(
                config=config or DEFAULT_CONFIG, backend=args.backend, cfg_options=args.cfg_options, **job
            )
    except JobStepError as e:  # the step printed its own error
        return e.code
    except (DemoError, VideoSourceError, FileNotFoundError, KeyError, ValueError) as e:
        return report(e)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    for s in summary.get("streams") or [summary]:
        lat = s["latency_ms"] or {"p50": float("nan"), "p95": float("nan")}
        head = f"[{s['stream']}] {s['source']}: " if "stream" in s else ""
        print(
            f"{head}{s['frames']} frames, {s['fps']} FPS, latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms, "
            f"deadline misses {s['deadline_misses']} ({100 * (s['miss_rate'] or 0):.1f}%), "
            f"dropped {s['dropped_frames']}, late {s['late_frames']}, reconnects {s['reconnects']}"
        )
    failed = failed_streams(summary)
    for s in failed:
        print(f"error: source {s['source']!r} failed: {s['error']}", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 demo`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("demo", argv)
    return run(args)
