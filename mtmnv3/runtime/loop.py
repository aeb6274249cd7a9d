"""The live perception loop: frame plan -> heads -> tracker -> overlay.

Per frame, a budget scheduler (or, without a budget, a fixed "everything"
plan) decides which heads run and at what input size (the long side: the
runner letterboxes the frame into the rectangle that keeps its aspect); the frame runner
(PyTorch or ONNX Runtime) runs them; the tracker associates detections by
embedding and IoU (``full`` frames), by IoU (``det`` frames) or only
predicts motion (``motion`` frames); the overlay draws tracks, the frame's
class, FPS and budget use. Every frame's plan, measured latency, deadline
outcome and staleness go to the scheduler's :class:`BudgetLog`. Plans name
head roles; the model layout turns them into the model's head names, so the
heads may be named anything.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mtmnv3.runtime.budget import (
    CLS,
    DET,
    EMB,
    TRACK_UNIT,
    BudgetLog,
    BudgetScheduler,
    CostEstimator,
    FramePlan,
    FrameRecord,
    ModelLayout,
    head_unit,
    stage_unit,
)
from mtmnv3.runtime.video import Frame
from mtmnv3.runtime.visualize import draw_counters, draw_status, draw_tracks
from mtmnv3.tracking import EmbeddingTracker, TrackResult, tracks_to_mot_rows

__all__ = ["calibrate_costs", "PerceptionLoop", "StepResult", "summarize"]

#: Head-role subsets timed at start-up to split the cost into trunk and heads.
_CALIBRATION_SETS = ((CLS,), (DET,), (DET, EMB), (CLS, DET, EMB))
#: Floors of the derived costs (ms): a difference of two noisy medians can come out at or below 0.
_MIN_HEAD_MS = 0.05
_MIN_TRUNK_MS = 0.1
#: Without a classification-only timing, the trunk's share of the cheapest subset measured.
_TRUNK_SHARE = 0.8
#: Seed costs (ms) of the units that are not timed at start-up; measurements replace them.
_SEED_MS = {TRACK_UNIT: 0.5, "motion": 0.1, "overhead": 1.0}


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def calibrate_costs(
    runner: Any,
    layout: ModelLayout,
    resolutions: Sequence[int],
    stage_macs: Sequence[float],
    frame: np.ndarray,
    repeats: int = 5,
    **estimator_kwargs: Any,
) -> CostEstimator:
    """Measure the runner on ``frame`` and seed a cost estimator.

    ``frame`` should have the source's shape: each resolution is a long side,
    and the runner runs the frame at the rectangle that keeps its aspect, so
    the costs measured are those of the shapes the video will run at.

    At each resolution the head-role subsets ``cls``, ``det``, ``det+emb``
    and ``cls+det+emb`` are timed (median of ``repeats`` after one warm-up
    run; the runner gets the model's head names from ``layout``); their
    differences give each head's cost and the shared trunk's cost, which is
    spread over the trunk stages in proportion to their MACs.
    """
    heads = set(layout.heads)
    est = CostEstimator(**estimator_kwargs)
    total_macs = float(sum(stage_macs)) or 1.0
    for res in resolutions:
        ms: dict[tuple[str, ...], float] = {}
        for subset in _CALIBRATION_SETS:
            if not set(subset) <= heads:
                continue
            names = layout.model_heads(subset)
            runner.predict(frame, heads=names, input_size=res)  # warm-up (and lazy session creation)
            ms[subset] = _median_ms(
                lambda s=names, r=res: runner.predict(frame, heads=s, input_size=r), repeats
            )
        cls_ms = det_ms = emb_ms = None
        if (CLS, DET, EMB) in ms and (DET, EMB) in ms:
            cls_ms = max(ms[(CLS, DET, EMB)] - ms[(DET, EMB)], _MIN_HEAD_MS)
        if (DET, EMB) in ms and (DET,) in ms:
            emb_ms = max(ms[(DET, EMB)] - ms[(DET,)], _MIN_HEAD_MS)
        if (CLS,) in ms and cls_ms is not None:
            trunk_ms = max(ms[(CLS,)] - cls_ms, _MIN_TRUNK_MS)
        else:
            trunk_ms = _TRUNK_SHARE * min(ms.values())
        if (DET,) in ms:
            det_ms = max(ms[(DET,)] - trunk_ms, _MIN_HEAD_MS)
        for i, macs in enumerate(stage_macs):
            est.seed(stage_unit(i, res), trunk_ms * float(macs) / total_macs)
        for role, value in ((CLS, cls_ms), (DET, det_ms), (EMB, emb_ms)):
            if value is not None and role in heads:
                est.seed(head_unit(role, res), value)
    for unit, value in _SEED_MS.items():
        est.seed(unit, value)
    return est


@dataclass
class StepResult:
    """What one frame produced."""

    frame_index: int
    image: np.ndarray  # annotated RGB frame (or the input when drawing is off)
    tracks: TrackResult
    mot_rows: np.ndarray
    plan: FramePlan
    record: FrameRecord
    class_label: int | None
    class_age: int | None  # frames since the class label was computed
    timings: dict[str, float] = field(default_factory=dict)
    input_shape: tuple[int, int] | None = None  # (height, width) the model ran at; None: no model run
    counts: dict[str, dict[str, int]] = field(
        default_factory=dict
    )  # counter name -> its counts after this frame


def _all_heads_plan(layout: ModelLayout, resolution: int) -> FramePlan:
    return FramePlan.for_heads(layout.heads, resolution, layout)


class PerceptionLoop:
    """Runs frames through plan -> runner -> tracker -> overlay.

    Args:
        runner: a frame runner (``predict(frame, heads, input_size)``).
        tracker: the tracker (reset per video by the caller).
        scheduler: a :class:`BudgetScheduler`; ``None`` runs every head on
            every frame at ``resolution`` (and still logs each frame).
        layout: the model's :class:`ModelLayout`.
        resolution: input size (long side) of unbudgeted frames.
        det_classes / cls_classes: class names for the overlay.
        budget_ms: the deadline recorded for unbudgeted frames (``None``: inf).
        draw: draw the overlay (off for pure timing runs).
        keep_labels: object classes to keep (``--classes``): other detections
            are dropped before tracking, so they are neither tracked, drawn nor
            written; ``None`` keeps every class.
        counters: line and zone counters (:mod:`mtmnv3.tracking.counting`)
            updated with the tracks of every frame and drawn on it.
    """

    def __init__(
        self,
        runner: Any,
        tracker: EmbeddingTracker,
        scheduler: BudgetScheduler | None,
        layout: ModelLayout,
        resolution: int = 320,
        det_classes: Sequence[str] | None = None,
        cls_classes: Sequence[str] | None = None,
        budget_ms: float | None = None,
        draw: bool = True,
        keep_labels: Sequence[int] | None = None,
        counters: Sequence[Any] = (),
    ) -> None:
        self.runner = runner
        self.keep_labels = (
            None if keep_labels is None else np.asarray(sorted(set(keep_labels)), dtype=np.int64)
        )
        self.counters = list(counters)
        self.tracker = tracker
        self.scheduler = scheduler
        self.layout = layout
        self.resolution = int(resolution)
        self.det_classes = det_classes
        self.cls_classes = cls_classes
        self.budget_ms = budget_ms
        self.draw = draw
        self.log = scheduler.log if scheduler is not None else BudgetLog()
        self._last_cls: int | None = None
        self._last_cls_frame: int | None = None
        self._last_frame_time: float | None = None
        self._fps = 0.0
        self._staleness: dict[str, int] = {}

    def warm_up(self, frame_shape: tuple[int, int, int]) -> None:
        """Pay one-off costs (font set-up, the tracker's first association) before
        timing starts, so frame 0 is not a spurious deadline miss that makes a
        budget policy step down."""
        image = np.zeros(frame_shape, np.uint8)
        draw_tracks(image, np.array([[1.0, 1.0, 8.0, 8.0]]), [1], [0], None, self.det_classes)
        draw_status(image, ["warm-up"])
        box = np.array([[1.0, 1.0, 8.0, 8.0]])
        for k in (1, 2):
            self.tracker.update(box, np.array([0.9]), np.array([0]), None, frame_id=k)
        self.tracker.reset()

    def step(self, frame: Frame) -> StepResult:
        t0 = time.perf_counter()
        i = frame.index
        plan = (
            self.scheduler.begin_frame(i)
            if self.scheduler is not None
            else _all_heads_plan(self.layout, self.resolution)
        )
        timings: dict[str, float] = {}
        pred = None
        shape = None
        if plan.heads:
            t = time.perf_counter()
            heads = self.layout.model_heads(plan.heads)
            pred = self.runner.predict(frame.image, heads=heads, input_size=plan.resolution)
            timings["model"] = (time.perf_counter() - t) * 1e3
            if hasattr(self.runner, "input_shape"):
                shape = self.runner.input_shape(frame.image.shape[:2], plan.resolution)
            if self.keep_labels is not None:
                keep = np.isin(pred.labels, self.keep_labels)
                pred = dataclasses.replace(
                    pred,
                    bboxes=pred.bboxes[keep],
                    scores=pred.scores[keep],
                    labels=pred.labels[keep],
                    embeddings=None if pred.embeddings is None else pred.embeddings[keep],
                )
        t = time.perf_counter()
        if plan.mode in ("full", "det") and pred is not None:
            tracks = self.tracker.update(
                pred.bboxes,
                pred.scores,
                pred.labels,
                pred.embeddings if plan.mode == "full" else None,
                frame_id=i + 1,
                frame=frame.image,  # camera-motion compensation reads it (when on)
            )
            timings[TRACK_UNIT] = (time.perf_counter() - t) * 1e3
        else:
            tracks = self.tracker.predict_only(frame_id=i + 1, frame=frame.image)
            timings["motion"] = (time.perf_counter() - t) * 1e3
        if pred is not None and pred.class_probs is not None:
            self._last_cls, self._last_cls_frame = pred.class_label, i
        counts = {}
        for counter in self.counters:
            counter.update(tracks.ids, tracks.bboxes)
            counts[counter.name] = counter.counts()
        image = frame.image
        if self.draw:
            t = time.perf_counter()
            image = frame.image.copy()
            draw_tracks(
                image,
                tracks.bboxes,
                tracks.ids,
                tracks.labels,
                None,
                self.det_classes,
                predicted=plan.mode != "full",
            )
            if self.counters:
                draw_counters(image, self.counters)
            draw_status(image, self._status_lines(plan, i, shape))
            timings["draw"] = (time.perf_counter() - t) * 1e3
        measured = (time.perf_counter() - t0) * 1e3
        if self.scheduler is not None:
            planned = set(plan.units())
            measured_units = {
                TRACK_UNIT: timings.get(TRACK_UNIT),
                "motion": timings.get("motion"),
                "overhead": timings.get("draw"),
            }
            units = {u: ms for u, ms in measured_units.items() if ms is not None and u in planned}
            record = self.scheduler.end_frame(measured, unit_timings=units)
        else:
            for task in self.layout.heads:
                self._staleness[task] = 0
            deadline = float("inf") if self.budget_ms is None else float(self.budget_ms)
            record = FrameRecord(
                i, plan, deadline, measured, measured, measured, measured <= deadline, dict(self._staleness)
            )
            self.log.append(record)
        now = time.perf_counter()
        if self._last_frame_time is not None:
            dt = now - self._last_frame_time
            self._fps = 1.0 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / max(dt, 1e-6)
        self._last_frame_time = now
        age = None if self._last_cls_frame is None else i - self._last_cls_frame
        return StepResult(
            i,
            image,
            tracks,
            tracks_to_mot_rows(i + 1, tracks),
            plan,
            record,
            self._last_cls,
            age,
            timings,
            shape,
            counts,
        )

    def _status_lines(self, plan: FramePlan, i: int, shape: tuple[int, int] | None = None) -> list[str]:
        """The overlay's text; ``shape`` is the ``(height, width)`` the model ran at (shown as WxH)."""
        lines = []
        if self._last_cls is not None:
            name = (
                self.cls_classes[self._last_cls]
                if self.cls_classes and self._last_cls < len(self.cls_classes)
                else str(self._last_cls)
            )
            lines.append(f"class: {name} ({i - self._last_cls_frame} fr ago)")
        size = f"{shape[1]}x{shape[0]}" if shape is not None else str(plan.resolution)
        lines.append(f"{self._fps:5.1f} FPS  {plan.mode}@{size}")
        if self.scheduler is not None and self.log.records:
            last = self.log.records[-1]
            lines.append(
                f"budget {last.budget_ms:.0f} ms: last {last.measured_ms:.1f} ms ({100 * last.measured_ms / last.budget_ms:.0f}%)"
            )
        return lines


def summarize(
    log: BudgetLog, wall_s: float, frames: int, dropped: int = 0, extra: dict | None = None
) -> dict[str, Any]:
    """The demo's summary: frames, FPS, latency percentiles, deadline misses."""
    s = log.summary()
    out = dict(
        frames=frames,
        wall_s=round(wall_s, 3),
        fps=round(frames / wall_s, 2) if wall_s > 0 else None,
        dropped_frames=dropped,
        latency_ms=s["latency_ms"],
        deadline_misses=s["misses"],
        miss_rate=s["miss_rate"],
        mean_staleness=s["staleness_mean"],
        mode_share=s["mode_share"],
    )
    if extra:
        out.update(extra)
    return out
