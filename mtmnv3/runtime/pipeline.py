"""Run a StagePlan for real: one thread per stage, connected by queues.

Each stage is the plan's contiguous range of trunk blocks, run in its own
Python thread; stage ``i`` takes frames from queue ``i`` and puts its output
on queue ``i + 1`` (bounded, so a slow stage back-pressures the ones before
it). Frames leave the pipeline in order. Two backends run the stages:

* ``eager`` (default): each stage is an ``nn.Sequential`` of the blocks, run
  by eager PyTorch. PyTorch releases the GIL inside its kernels, but a stage
  is many small ops and every op goes back through Python, so stage threads
  contend for the GIL between ops: measured stage times come out well above
  what a per-block latency table predicts.
* ``onnxruntime``: each stage is exported on its own to ONNX (TorchScript
  exporter, fixed input shape from running the earlier stages on the first
  frame) and run by its own ``InferenceSession``. ``session.run`` releases the
  GIL for the whole stage, so stages really overlap on separate cores. Frames
  travel between ORT stages as float32 numpy arrays; the outputs are turned
  back into tensors, so :class:`PipelineResult` does not depend on the
  backend. Every frame must have the first frame's shape.

Threads: ``torch.set_num_threads`` sets one process-wide intra-op thread
count; it cannot be set per stage thread. :func:`run_pipeline` sets it once
(``intra_op_threads``, default 1, so that ``k`` stages use about ``k`` cores)
before the stage threads start and restores it afterwards. ORT sessions get
``intra_op_threads`` intra-op threads each and one inter-op thread.
``torch.inference_mode`` is thread-local, so every stage thread enters it.
Per-stage times cover only the stage's computation (queue waits excluded).
"""

from __future__ import annotations

import dataclasses
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.profiling import format_table, num_threads
from mtmnv3.runtime.onnx_export import BLOCK_EXPORTER, BLOCK_OPSET, export_module
from mtmnv3.runtime.ort_runtime import ORT_LOG_ERRORS_ONLY, make_session

__all__ = ["PIPELINE_BACKENDS", "PipelineResult", "run_pipeline", "stage_modules"]

#: Backends :func:`run_pipeline` can run the stages on.
PIPELINE_BACKENDS = ("eager", "onnxruntime")

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
    """One ``nn.Sequential`` of the trunk's blocks per plan stage (shares weights; the trunk's
    input normalisation, when it has one, first in stage 0)."""
    return trunk.plan_stage_modules(plan)


StageFn = Callable[[Any], Any]


class _Stage(threading.Thread):
    """One pipeline stage: take from ``inbox``, run ``fn``, put on ``outbox``."""

    def __init__(
        self, index: int, fn: StageFn, inbox: queue.Queue, outbox: queue.Queue, failed: threading.Event
    ) -> None:
        super().__init__(name=f"pipeline-stage{index}", daemon=True)
        self.fn = fn
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
                    out = self.fn(item)
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
    backend: str = "eager",
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
            (None: leave as is); with ``onnxruntime`` also each session's
            intra-op threads (None: ORT's default).
        backend: ``'eager'`` or ``'onnxruntime'`` (see the module docstring).

    Returns:
        A :class:`PipelineResult`; ``outputs[i]`` equals ``trunk.forward_stages(frames[i])``.
    """
    if not isinstance(plan, StagePlan):
        raise TypeError(f"plan must be a StagePlan, got {type(plan).__name__}")
    if backend not in PIPELINE_BACKENDS:
        raise ValueError(
            f"unknown pipeline backend {backend!r}; expected one of {', '.join(map(repr, PIPELINE_BACKENDS))}"
        )
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
            if backend == "eager":
                outputs, stage_ms, wall_s = _run(modules, frames, warmup)
            else:
                outputs, stage_ms, wall_s = _run_onnxruntime(modules, frames, warmup, intra_op_threads)
    finally:
        trunk.train(was_training)
    timed = len(frames) - warmup
    measured = dataclasses.replace(plan, measured_ms=stage_ms)
    return PipelineResult(outputs, stage_ms, timed / wall_s, wall_s, timed, warmup, measured)


def _run_onnxruntime(
    modules: Sequence[nn.Module], frames: Sequence[Tensor], warmup: int, threads: int | None
) -> tuple[list[Tensor], tuple[float, ...], float]:
    """:func:`_run` with one ORT session per stage; numpy float32 between stages."""
    shape = tuple(frames[0].shape)
    bad = [i for i, f in enumerate(frames) if tuple(f.shape) != shape]
    if bad:
        raise ValueError(
            f"backend 'onnxruntime' runs a fixed input shape {shape} (the first frame's); "
            f"frame {bad[0]} has shape {tuple(frames[bad[0]].shape)}"
        )
    fns = _ort_stage_fns(modules, frames[0], threads)
    arrays = [np.ascontiguousarray(f.detach().cpu().numpy(), dtype=np.float32) for f in frames]
    outputs, stage_ms, wall_s = _run(fns, arrays, warmup)
    return [torch.from_numpy(o) for o in outputs], stage_ms, wall_s


def _ort_stage_fns(modules: Sequence[nn.Module], frame: Tensor, threads: int | None) -> list[StageFn]:
    """Export each stage to ONNX at the shape it sees for ``frame``; one session each.

    The stages are exported as the latency table exports its blocks
    (``BLOCK_EXPORTER``, ``BLOCK_OPSET``). Sessions keep ONNX Runtime's
    default spinning, as the table's timing does; ``threads`` None is ONNX
    Runtime's default thread count.

    Each stage wrapper is put in eval mode first: the exporter restores the
    wrapper's own mode onto its children afterwards, and a fresh
    ``nn.Sequential`` is in training mode (BatchNorm would then update its
    running statistics on the next call).
    """
    fns: list[StageFn] = []
    x = frame.detach().float()
    with tempfile.TemporaryDirectory(prefix="mtmnv3-pipeline-") as tmp:
        for i, module in enumerate(modules):
            module.eval()
            path = export_module(
                module, (x,), Path(tmp) / f"stage{i}.onnx", ["x"], exporter=BLOCK_EXPORTER, opset=BLOCK_OPSET
            )
            session = make_session(path, threads, allow_spinning=True, log_severity=ORT_LOG_ERRORS_ONLY)
            fns.append(_ort_fn(session))
            with torch.no_grad():
                x = module(x)
    return fns


def _ort_fn(session: Any) -> StageFn:
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def _run(
    fns: Sequence[StageFn], frames: Sequence[Any], warmup: int
) -> tuple[list[Any], tuple[float, ...], float]:
    failed = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=QUEUE_DEPTH) for _ in range(len(fns) + 1)]
    stages = [_Stage(i, fn, queues[i], queues[i + 1], failed) for i, fn in enumerate(fns)]
    t_launch = time.perf_counter()
    for s in stages:
        s.start()

    def feed() -> None:
        for f in frames:
            _put(queues[0], f, failed)
        _put(queues[0], _STOP, failed)

    feeder = threading.Thread(target=feed, name="pipeline-feeder", daemon=True)
    feeder.start()
    outputs: list[Any] = []
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
