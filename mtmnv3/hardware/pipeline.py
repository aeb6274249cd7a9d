"""Run a StagePlan for real: one thread per stage, connected by queues.

Each stage is the plan's contiguous range of trunk blocks, run eagerly in
its own Python thread; stage ``i`` takes frames from queue ``i`` and puts
its output on queue ``i + 1`` (bounded, so a slow stage back-pressures the
ones before it). Frames leave the pipeline in order. PyTorch releases the
GIL inside its kernels, so stages overlap on separate cores.

Threads: ``torch.set_num_threads`` sets one process-wide intra-op thread
count; it cannot be set per stage thread. :func:`run_pipeline` sets it once
(``intra_op_threads``, default 1, so that ``k`` stages use about ``k`` cores)
before the stage threads start and restores it afterwards.
``torch.inference_mode`` is thread-local, so every stage thread enters it.
"""

from __future__ import annotations

import dataclasses
import queue
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..plan import StagePlan
from ..profiling import format_table, num_threads
from ..trunk import MobileNetV3Trunk

__all__ = ["PipelineResult", "run_pipeline", "stage_modules"]

#: Frames each inter-stage queue holds before the producer blocks.
QUEUE_DEPTH = 2
#: Seconds a stage waits on a queue before it checks whether another stage failed.
POLL_S = 0.1
_STOP = object()


@dataclass(frozen=True)
class PipelineResult:
    """What a pipelined run measured.

    Attributes:
        outputs: the trunk's final output per frame, in input order.
        stage_ms: median compute time per frame of each stage (queue waits excluded).
        throughput_fps: timed frames / wall time of the timed frames.
        wall_s: wall time of the timed frames.
        frames / warmup: timed frames and untimed leading frames.
        plan: the plan that ran, with ``measured_ms`` filled in.
    """

    outputs: list[Tensor]
    stage_ms: tuple[float, ...]
    throughput_fps: float
    wall_s: float
    frames: int
    warmup: int
    plan: StagePlan

    @property
    def slowest_stage(self) -> int:
        return max(range(len(self.stage_ms)), key=lambda i: self.stage_ms[i])

    @property
    def predicted_slowest_stage(self) -> int | None:
        p = self.plan.predicted_ms
        return None if p is None else max(range(len(p)), key=lambda i: p[i])

    @property
    def predicted_fps(self) -> float | None:
        """Throughput the plan predicts: one frame per slowest-stage time."""
        p = self.plan.predicted_ms
        return None if not p or max(p) <= 0 else 1e3 / max(p)

    def format(self) -> str:
        predicted = self.plan.predicted_ms
        rows = []
        for i, (a, b) in enumerate(self.plan.stages):
            rows.append(
                [
                    i,
                    f"{a}..{b - 1}",
                    predicted[i] if predicted is not None else "",
                    self.stage_ms[i],
                    ", ".join(
                        label
                        for label, stage in (
                            ("measured", self.slowest_stage),
                            ("predicted", self.predicted_slowest_stage),
                        )
                        if stage == i
                    ),
                ]
            )
        table = format_table(["stage", "blocks", "predicted ms", "measured ms", "slowest"], rows)
        lines = [table, ""]
        lines.append(
            f"measured slowest stage: {self.slowest_stage} ({self.stage_ms[self.slowest_stage]:.3f} ms)"
        )
        if predicted is not None:
            p = self.predicted_slowest_stage
            lines.append(f"predicted slowest stage: {p} ({predicted[p]:.3f} ms)")  # type: ignore[index]
        lines.append(
            f"throughput: {self.throughput_fps:.1f} frames/s over {self.frames} frames "
            f"({1e3 / self.throughput_fps:.3f} ms/frame)"
        )
        if self.predicted_fps is not None:
            lines.append(f"predicted throughput: {self.predicted_fps:.1f} frames/s")
        return "\n".join(lines)


def stage_modules(trunk: MobileNetV3Trunk, plan: StagePlan) -> list[nn.Sequential]:
    """One ``nn.Sequential`` of the trunk's blocks per plan stage (shares weights)."""
    if plan.num_blocks != len(trunk.blocks):
        raise ValueError(f"plan covers {plan.num_blocks} blocks but the trunk has {len(trunk.blocks)}")
    return [nn.Sequential(*(trunk.blocks[i] for i in range(a, b))) for a, b in plan.stages]


class _Stage(threading.Thread):
    """One pipeline stage: take from ``inbox``, run, put on ``outbox``."""

    def __init__(
        self, index: int, module: nn.Module, inbox: queue.Queue, outbox: queue.Queue, failed: threading.Event
    ) -> None:
        super().__init__(name=f"pipeline-stage{index}", daemon=True)
        self.module = module
        self.inbox = inbox
        self.outbox = outbox
        self.failed = failed
        self.times_ms: list[float] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with torch.inference_mode():
                while not self.failed.is_set():
                    item = _get(self.inbox, self.failed)
                    if item is _STOP or item is None:
                        break
                    t0 = time.perf_counter()
                    out = self.module(item)
                    self.times_ms.append((time.perf_counter() - t0) * 1e3)
                    _put(self.outbox, out, self.failed)
        except BaseException as e:  # noqa: BLE001 - surfaced by run_pipeline
            self.error = e
            self.failed.set()
        finally:
            _put(self.outbox, _STOP, self.failed)


def _get(q: queue.Queue, failed: threading.Event) -> Any:
    while not failed.is_set():
        try:
            return q.get(timeout=POLL_S)
        except queue.Empty:
            continue
    return None


def _put(q: queue.Queue, item: Any, failed: threading.Event) -> None:
    while not failed.is_set():
        try:
            q.put(item, timeout=POLL_S)
            return
        except queue.Full:
            continue


def run_pipeline(
    trunk: MobileNetV3Trunk,
    plan: StagePlan,
    frames: Sequence[Tensor] | int = 32,
    size: int = 224,
    warmup: int = 4,
    intra_op_threads: int | None = 1,
) -> PipelineResult:
    """Run the trunk split by ``plan``, each stage in its own thread.

    Args:
        trunk: the trunk (put in eval mode for the run, restored afterwards).
        plan: the stage plan (e.g. from :func:`balanced_stages`).
        frames: ``(N, 3, H, W)`` input tensors, or how many random
            ``(1, 3, size, size)`` frames to make.
        size: frame size when ``frames`` is a count.
        warmup: leading frames excluded from timing (they are still output).
        intra_op_threads: process-wide torch intra-op threads for the run
            (None: leave as is).

    Returns:
        A :class:`PipelineResult`; ``outputs[i]`` equals ``trunk.forward_stages(frames[i])``.
    """
    if not isinstance(plan, StagePlan):
        raise TypeError(f"plan must be a StagePlan, got {type(plan).__name__}")
    if isinstance(frames, int):
        if frames < 1:
            raise ValueError(f"need at least one frame, got {frames}")
        gen = torch.Generator().manual_seed(0)
        frames = [torch.randn(1, 3, size, size, generator=gen) for _ in range(frames + warmup)]
    frames = list(frames)
    if not isinstance(warmup, int) or not 0 <= warmup < len(frames):
        raise ValueError(
            f"warmup must be an int in [0, {len(frames) - 1}] for {len(frames)} frames, got {warmup!r}"
        )
    modules = stage_modules(trunk, plan)

    was_training = trunk.training
    trunk.eval()
    try:
        with num_threads(intra_op_threads):
            outputs, stage_ms, wall_s = _run(modules, frames, warmup)
    finally:
        trunk.train(was_training)
    timed = len(frames) - warmup
    measured = dataclasses.replace(plan, measured_ms=stage_ms)
    return PipelineResult(outputs, stage_ms, timed / wall_s, wall_s, timed, warmup, measured)


def _run(
    modules: Sequence[nn.Module], frames: Sequence[Tensor], warmup: int
) -> tuple[list[Tensor], tuple[float, ...], float]:
    failed = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=QUEUE_DEPTH) for _ in range(len(modules) + 1)]
    stages = [_Stage(i, m, queues[i], queues[i + 1], failed) for i, m in enumerate(modules)]
    t_launch = time.perf_counter()
    for s in stages:
        s.start()

    def feed() -> None:
        for f in frames:
            _put(queues[0], f, failed)
        _put(queues[0], _STOP, failed)

    feeder = threading.Thread(target=feed, name="pipeline-feeder", daemon=True)
    feeder.start()
    outputs: list[Tensor] = []
    t_start = t_launch  # replaced by the warm-up frames' end, if any
    while True:
        item = _get(queues[-1], failed)
        if item is _STOP or item is None:
            break
        outputs.append(item)
        if len(outputs) == warmup:
            t_start = time.perf_counter()
    t_end = time.perf_counter()
    feeder.join()
    for s in stages:
        s.join()
    errors = [s.error for s in stages if s.error is not None]
    if errors:
        raise RuntimeError(f"a pipeline stage failed: {errors[0]!r}") from errors[0]
    if len(outputs) != len(frames):
        raise RuntimeError(f"pipeline returned {len(outputs)} of {len(frames)} frames")
    stage_ms = tuple(statistics.median(s.times_ms[warmup:]) for s in stages)
    return outputs, stage_ms, t_end - t_start
