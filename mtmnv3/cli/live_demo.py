"""The live demo behind ``mtmnv3 demo CONFIG CHECKPOINT --source ...``: frames -> model -> tracker -> overlay.

Sources: a camera index, a video file, a folder of images, or an rtsp/http(s)
stream (see :func:`mtmnv3.runtime.video.open_source`); several ``--source`` values
run in one process with one shared budget (:mod:`mtmnv3.runtime.streams`). ``--size`` (and the
budget's ``--resolutions``) are long sides: frames run at the smallest
rectangle that keeps the source's aspect (a 1920x1080 video at 320 runs at
320x192), on every runtime; the exported files get that shape. Outputs are
written atomically, so a failed run leaves no half-written files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.runtime.video import AtomicVideoWriter, Reconnect, display_available, open_source

__all__ = [
    "run_demo",
    "live_namespace",
    "parse_cfg_options",
    "default_sizes",
    "parse_sizes",
    "POLICIES",
    "LIVE_DEFAULTS",
    "DemoError",
    "failed_streams",
    "source_list",
    "stream_path",
]

#: --policy name -> registered budget policy.
POLICIES = {
    "adaptive": "AdaptiveDeadlinePolicy",
    "greedy": "GreedyUtilityPolicy",
    "fixed": "FixedIntervalPolicy",
}
WINDOW = "mtmnv3 demo"


class DemoError(RuntimeError):
    """Bad input to the demo (reported as ``error: ...`` with exit status 2)."""


#: The live demo's option defaults (the parser of ``mtmnv3 demo`` and the demo job share them).
LIVE_DEFAULTS: dict[str, Any] = dict(
    source=None,
    video=None,
    camera_id=None,
    backend="onnxruntime",
    int8=False,
    budget_ms=None,
    policy="adaptive",
    size=None,
    resolutions=None,
    threads=2,
    cls_period=10,
    iou_only=False,
    out=None,
    mot_out=None,
    summary_json=None,
    budget_log=None,
    show=False,
    max_frames=None,
    synthetic_source=False,
    classes=None,
    line=None,
    zone=None,
    counts_csv=None,
    reconnect=Reconnect.attempts,  # the reader's own default
    cfg_options=[],
)

#: Said once when a model trained only on synthetic scenes is given a camera, a stream or a real video.
SYNTHETIC_NOTICE = (
    "note: this model was trained only on synthetic scenes ({data}); on real footage it will find little. "
    "To train on your own data (MOT17, COCO, an image folder or a custom dataset), see docs/own-data/ "
    "(the 'Train on your own data' pages of the documentation)."
)


def live_namespace(config: str, checkpoint: str, **options: Any) -> argparse.Namespace:
    """The arguments of one live-demo run: :data:`LIVE_DEFAULTS` updated with ``options``."""
    unknown = sorted(set(options) - set(LIVE_DEFAULTS))
    if unknown:
        raise TypeError(f"unknown live-demo options {unknown}; known: {sorted(LIVE_DEFAULTS)}")
    return argparse.Namespace(config=config, checkpoint=checkpoint, **{**LIVE_DEFAULTS, **options})


def parse_sizes(text: str) -> list[int]:
    """``'320,256'`` -> ``[320, 256]`` (positive multiples of 32); an ``ArgumentTypeError`` otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 or v % 32 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive multiples of 32, got {text!r}")
    return values


def _source_name(args: argparse.Namespace) -> str:
    """The name of the ``--video`` / ``--camera-id`` source."""
    return str(args.video) if args.video is not None else f"camera {args.camera_id}"


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
    if args.reconnect < 0:
        raise DemoError(f"--reconnect must be >= 0 (0: never reopen a stream), got {args.reconnect}")
    if args.cls_period < 1:
        raise DemoError(f"--cls-period must be >= 1, got {args.cls_period}")
    if args.out and Path(args.out).suffix.lower() not in AtomicVideoWriter.CODECS:
        raise DemoError(f"--out must end in one of {sorted(AtomicVideoWriter.CODECS)}, got {args.out!r}")


def parse_cfg_options(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` (``--cfg-options``) -> the override dict mmengine merges."""
    from mmengine.config import DictAction

    ns = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="opts")(None, ns, items)
    return getattr(ns, "opts", {}) or {}


def checkpoint_meta(checkpoint: str) -> dict[str, Any]:
    """A checkpoint's ``meta`` (loaded with ``weights_only=True``; empty if it has none)."""
    import torch

    from mtmnv3.core.checkpoint import allow_mmengine_checkpoint_globals

    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return (ckpt.get("meta") if isinstance(ckpt, dict) else None) or {}


def synthetic_notice(meta: dict[str, Any], synthetic_source: bool) -> str | None:
    """The notice for a synthetic-only model on a real source (None when it does not apply)."""
    from mtmnv3.data.provenance import format_train_data, trained_only_on_synthetic

    if synthetic_source or not trained_only_on_synthetic(meta):
        return None
    return SYNTHETIC_NOTICE.format(data=format_train_data(meta["train_data"]))


#: Columns of ``--counts-csv`` after ``frame,counter`` (a line fills in/out, a zone inside/entered).
COUNT_FIELDS = ("in", "out", "inside", "entered")


def _config_classes(cfg: Any) -> list[str] | None:
    """The detection class names a config states (its test dataset's ``classes`` or ``metainfo.classes``)."""
    for key in ("test_dataloader", "val_dataloader", "train_dataloader"):
        ds = (cfg.get(key) or {}).get("dataset") or {}
        for part in [ds, *(ds.get("datasets") or [])]:
            names = part.get("classes") or (part.get("metainfo") or {}).get("classes")
            if names:
                return list(names)
    return None


def _keep_labels(names: list[str] | None, det_classes: list[str] | None) -> list[int] | None:
    """``--classes`` names -> class indices; an unknown name lists the known ones."""
    if not names:
        return None
    if not det_classes:
        raise DemoError(
            "--classes needs the model's class names, but neither the checkpoint nor the config has them"
        )
    unknown = [n for n in names if n not in det_classes]
    if unknown:
        raise DemoError(
            f"--classes: unknown class name(s) {unknown}; the model's classes are {list(det_classes)}"
        )
    return [det_classes.index(n) for n in names]


def _counters(lines: list[str] | None, zones: list[str] | None, size: tuple[int, int]) -> list:
    """Counters for ``--line``/``--zone``, checked against the source's frame size before the first frame."""
    from mtmnv3.tracking.counting import (
        CountingError,
        LineCounter,
        ZoneCounter,
        check_in_frame,
        parse_line,
        parse_zone,
    )

    w, h = size
    counters: list = []
    try:
        for k, text in enumerate(lines or [], 1):
            a, b = parse_line(text)
            check_in_frame((a, b), w, h, f"--line {text}")
            counters.append(LineCounter(a, b, name=f"line{k}"))
        for k, text in enumerate(zones or [], 1):
            poly = parse_zone(text)
            check_in_frame(poly, w, h, f"--zone {text}")
            counters.append(ZoneCounter(poly, name=f"zone{k}"))
    except CountingError as err:
        raise DemoError(str(err)) from None
    return counters


def _write_counts_csv(path: str, rows: list[list]) -> None:
    import csv

    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["frame", "counter", *COUNT_FIELDS])
        out.writerows(rows)


def _class_names(meta: dict[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    ds = meta.get("dataset_meta") or {}
    det = ds.get("classes")
    return (list(det) if det else None), (list(ds["cls_classes"]) if ds.get("cls_classes") else None)


def default_sizes(
    config: str, size: int | None, resolutions: list[int] | None, cfg_options: dict | None = None
) -> tuple[int, list[int]]:
    """The input size (the config's test input size unless given) and the budget's size ladder.

    Both are long sides (multiples of 32): each frame runs at the rectangle that keeps its aspect.
    """
    if size is None:
        from mtmnv3.engine import input_size, load_config

        size = input_size(load_config(config, cfg_options or None).test_dataloader.dataset)
    if resolutions is None:
        resolutions = sorted({max(32, int(round(size * f / 32)) * 32) for f in (1.0, 0.75)}, reverse=True)
    return size, list(resolutions)


def _calibration_at(cfg: Any, model: Any):
    """int8 calibration of the demo's exports: training frames letterboxed into each export's ``(height, width)``."""
    from mtmnv3.cli._deploy import DEFAULT_CALIB_IMAGES, held_out_frames

    made: dict[tuple[int, int], list[np.ndarray]] = {}

    def frames(shape: tuple[int, int]) -> list[np.ndarray]:
        if shape not in made:
            made[shape] = held_out_frames(cfg, model, DEFAULT_CALIB_IMAGES, shape, split="train")[0]
        return made[shape]

    return frames


def source_list(args: argparse.Namespace) -> list[Any]:
    """The ``--source`` values (one or several; ``[None]`` when ``--video``/``--camera-id`` names it)."""
    if args.source is None:
        return [None]
    return list(args.source) if isinstance(args.source, (list, tuple)) else [args.source]


def stream_path(path: str | None, k: int, n: int) -> str | None:
    """Stream ``k``'s (1-based) output file of ``path``: ``path`` itself for one stream, else ``STEM_k.SUFFIX``."""
    if path is None or n == 1:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}_{k}{p.suffix}"))


def _open_sources(args: argparse.Namespace, notify: Any) -> list:
    """Every source opened (a live reader sets ``notify`` on each frame); all closed if one fails."""
    readers: list = []
    try:
        for src in source_list(args):
            readers.append(
                open_source(
                    src,
                    camera_id=args.camera_id if src is None else None,
                    video=args.video if src is None else None,
                    max_frames=args.max_frames,
                    reconnect=Reconnect(attempts=args.reconnect),
                    notify=notify,
                )
            )
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


def failed_streams(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-stream summaries of the streams that failed (a stream that dropped and did not come back)."""
    streams = summary.get("streams") or [summary]
    return [s for s in streams if s.get("status") == "failed"]


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo for parsed ``args``; returns the summary dict.

    Several ``--source`` values run in this one process (:class:`MultiStreamRunner`):
    one model, a tracker, counters and budget scheduler per stream, and
    ``--budget-ms`` as one round's budget shared by the running streams. Each
    stream's files get its number (``out.mp4`` -> ``out_1.mp4``, ``out_2.mp4``);
    the summary holds one entry per stream under ``streams``.
    """
    import threading

    import cv2

    from mtmnv3.apis import init_model
    from mtmnv3.core.registry import BUDGET_POLICIES
    from mtmnv3.data.mot_io import write_mot_txt
    from mtmnv3.engine import load_config
    from mtmnv3.runtime.budget import BudgetLog, BudgetScheduler, ModelLayout
    from mtmnv3.runtime.export_meta import size_text
    from mtmnv3.runtime.frame_runner import build_frame_runner
    from mtmnv3.runtime.loop import PerceptionLoop, calibrate_costs
    from mtmnv3.runtime.streams import MultiStreamRunner, Stream
    from mtmnv3.tracking import build_tracker

    _check_args(args)
    options = parse_cfg_options(args.cfg_options)
    args.size, args.resolutions = default_sizes(args.config, args.size, args.resolutions, options)
    notify = threading.Event()
    readers = _open_sources(args, notify)
    n = len(readers)
    names = [str(s) if s is not None else _source_name(args) for s in source_list(args)]
    try:
        model = init_model(args.config, args.checkpoint, options)
        meta = checkpoint_meta(args.checkpoint)
        notice = synthetic_notice(meta, args.synthetic_source)
        if notice:
            print(notice, file=sys.stderr, flush=True)
        det_classes, cls_classes = _class_names(meta)
        cfg = load_config(args.config, options or None)
        if det_classes is None:
            det_classes = _config_classes(cfg)
        keep_labels = _keep_labels(args.classes, det_classes)
        counters = [_counters(args.line, args.zone, r.size) for r in readers]
        if args.int8 and cfg.get("train_dataloader") is None:
            raise DemoError("--int8 calibrates on the config's training frames; the config has none")
    except BaseException:
        for r in readers:
            r.close()
        raise
    layout = ModelLayout.from_model(model)
    sizes = args.resolutions if args.budget_ms is not None else [args.size]
    runner = build_frame_runner(
        model,
        args.backend,
        input_size=max(sizes),
        threads=args.threads,
        int8=args.int8,
        calibration=_calibration_at(cfg, model) if args.int8 else None,
    )
    tracker_cfg = dict(cfg.get("tracker") or {"type": "EmbeddingTracker"})
    estimators: dict[tuple[int, int], Any] = {}  # one cost estimator per frame shape, shared by its streams
    streams: list[Stream] = []
    for k, (reader, name) in enumerate(zip(readers, names), 1):
        # Sizes are long sides: the frames run at the rectangle that keeps the source's aspect.
        frame_hw = (reader.size[1], reader.size[0])
        probe = np.full((*frame_hw, 3), 114, np.uint8)  # a grey frame of the source's shape
        scheduler = None
        if args.budget_ms is not None:
            if frame_hw not in estimators:
                macs = model.trunk.stage_macs(*runner.input_shape(frame_hw, sizes[0]))
                estimators[frame_hw] = calibrate_costs(runner, layout, sizes, macs, probe)
            policy = BUDGET_POLICIES.build(
                dict(
                    type=POLICIES[args.policy],
                    budget_ms=args.budget_ms / n,
                    resolutions=sizes,
                    cls_period=args.cls_period,
                )
            )
            scheduler = BudgetScheduler(policy, estimators[frame_hw], layout, BudgetLog())
        elif frame_hw not in estimators:
            runner.predict(probe, input_size=args.size)  # warm-up (and, on a fixed-shape runtime, the export)
            estimators[frame_hw] = None
        tracker = build_tracker(
            {
                **tracker_cfg,
                "use_embeddings": not args.iou_only,
                "frame_rate": getattr(reader, "fps", 30.0),
            }
        )
        loop = PerceptionLoop(
            runner,
            tracker,
            scheduler,
            layout,
            args.size,
            det_classes,
            cls_classes,
            draw=bool(args.out or args.show),
            keep_labels=keep_labels,
            counters=counters[k - 1],
        )
        loop.warm_up((frame_hw[0], frame_hw[1], 3))
        streams.append(Stream(str(k) if n > 1 else name, reader, loop))
    writers = {
        s.name: AtomicVideoWriter(stream_path(args.out, k, n), fps=s.fps) if args.out else None
        for k, s in enumerate(streams, 1)
    }
    rows: dict[str, list] = {s.name: [] for s in streams}
    count_rows: dict[str, list[list]] = {s.name: [] for s in streams}

    def on_result(stream: Stream, frame: Any, result: Any) -> bool:
        rows[stream.name].append(result.mot_rows)
        for cname, c in result.counts.items():
            count_rows[stream.name].append(
                [result.frame_index + 1, cname, *(c.get(key, "") for key in COUNT_FIELDS)]
            )
        if writers[stream.name] is not None:
            writers[stream.name].write(result.image)
        if args.show:
            title = WINDOW if n == 1 else f"{WINDOW} [{stream.name}: {names[int(stream.name) - 1]}]"
            cv2.imshow(title, cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
            return cv2.waitKey(1) & 0xFF in (ord("q"), 27)
        return False

    multi = MultiStreamRunner(streams, budget_ms=args.budget_ms, notify=notify)
    try:
        wall = multi.run(on_result)
        if sum(s.frames for s in streams) == 0:
            errors = "; ".join(s.error for s in streams if s.error)
            raise DemoError(f"the source delivered no frames{': ' + errors if errors else ''}")
        for s in streams:
            if writers[s.name] is not None:
                writers[s.name].close()
    except BaseException:
        for w in writers.values():
            if w is not None:
                w._discard()
        raise
    finally:
        if args.show:
            cv2.destroyAllWindows()
        if hasattr(runner, "close"):
            runner.close()
    common = dict(
        backend=args.backend,
        precision="int8" if args.int8 else "fp32",
        budget_ms=args.budget_ms,
        policy=args.policy if args.budget_ms is not None else None,
        association="iou" if args.iou_only else "embedding+iou",
        classes=args.classes,
    )
    per_stream = []
    for k, s in enumerate(streams, 1):
        frame_hw = (s.reader.size[1], s.reader.size[0])
        c = counters[k - 1]
        per_stream.append(
            s.summary(
                wall,
                extra=dict(
                    common,
                    input_size=size_text(runner.input_shape(frame_hw, args.size)),
                    source=names[k - 1],
                    budget_share_ms=None if args.budget_ms is None else args.budget_ms / n,
                    counts={x.name: x.counts() for x in c} or None,
                ),
            )
        )
    if n == 1:
        summary = per_stream[0]
        summary.pop("stream", None)
        summary.pop("budget_share_ms", None)
    else:
        frames = sum(s.frames for s in streams)
        summary = dict(
            frames=frames,
            wall_s=round(wall, 3),
            fps=round(frames / wall, 2) if wall > 0 else None,
            streams=per_stream,
            failed=[p["stream"] for p in per_stream if p["status"] == "failed"],
            **common,
        )
    for k, s in enumerate(streams, 1):
        if args.mot_out:
            r = rows[s.name]
            write_mot_txt(stream_path(args.mot_out, k, n), np.concatenate(r) if r else np.zeros((0, 10)))
        if args.counts_csv:
            _write_counts_csv(stream_path(args.counts_csv, k, n), count_rows[s.name])
        if args.budget_log:
            s.loop.log.to_json(stream_path(args.budget_log, k, n))
    if args.summary_json:
        atomic_write_json(args.summary_json, summary)
    return summary
