"""Several sources in one process: one model, one shared budget, a tracker per stream.

:class:`MultiStreamRunner` serves its streams round-robin: in each round every
stream with a frame ready (the next frame of a file, the newest frame of a
camera or network stream) gets one step of its own :class:`PerceptionLoop`
(its own tracker, counters and budget scheduler); when no stream has a frame
ready it sleeps until one of the live readers signals a new frame. The frame
budget is one round's: ``budget_ms`` is split evenly across the streams still
running (each stream's scheduler plans to its share), so when a stream ends
or fails the others get its time.

Per stream it counts the frames processed, the frames dropped (arrived while
the model was busy; only live sources drop), the *late* frames (the result
came more than one source frame period after capture: the stream could not
keep up in real time), and the reader's reconnects and outage time. A stream
whose reader fails (a stream that does not come back, a corrupt image) ends
with its error and the others go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mtmnv3.runtime.loop import PerceptionLoop, StepResult, summarize
from mtmnv3.runtime.video import Frame, VideoSourceError

__all__ = ["Stream", "MultiStreamRunner"]

#: Longest sleep (s) between checks when no stream has a frame ready.
_IDLE_WAIT_S = 0.05


@dataclass
class Stream:
    """One source and its loop, with what happened to it.

    ``status`` is ``running``, then ``ended`` (source finished or ``max_frames``
    reached), ``failed`` (``error`` says why) or ``stopped`` (the consumer quit).
    """

    name: str
    reader: Any  # a reader of mtmnv3.runtime.video: poll(), ended, error, dropped, fps
    loop: PerceptionLoop
    frames: int = 0
    late: int = 0
    status: str = "running"
    error: str | None = None

    @property
    def fps(self) -> float:
        return float(getattr(self.reader, "fps", 30.0) or 30.0)

    def finish(self, status: str, error: str | None = None) -> None:
        if self.status == "running":
            self.status, self.error = status, error
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()

    def summary(self, wall_s: float, extra: dict | None = None) -> dict[str, Any]:
        """:func:`~mtmnv3.runtime.loop.summarize` of this stream plus its source counts."""
        out = summarize(
            self.loop.log,
            wall_s,
            self.frames,
            dropped=int(getattr(self.reader, "dropped", 0)),
            extra=dict(
                stream=self.name,
                status=self.status,
                error=self.error,
                late_frames=self.late,
                reconnects=int(getattr(self.reader, "reconnects", 0)),
                outage_s=round(float(getattr(self.reader, "outage_s", 0.0)), 3),
                source_fps=round(self.fps, 3),
            ),
        )
        if extra:
            out.update(extra)
        return out


class MultiStreamRunner:
    """Round-robin over several :class:`Stream` objects with one shared frame budget.

    Args:
        streams: the streams (at least one).
        budget_ms: one round's budget, split evenly over the running streams'
            schedulers; ``None`` leaves the loops unbudgeted.
        notify: the event the live readers set on every new frame (the runner
            waits on it when nothing is ready); ``None``: poll every
            :data:`_IDLE_WAIT_S` seconds.
    """

    def __init__(
        self,
        streams: Sequence[Stream],
        budget_ms: float | None = None,
        notify: threading.Event | None = None,
    ) -> None:
        if not streams:
            raise ValueError("MultiStreamRunner needs at least one stream")
        names = [s.name for s in streams]
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique, got {names}")
        self.streams = list(streams)
        self.budget_ms = budget_ms
        self.notify = notify if notify is not None else threading.Event()
        self.wall_s = 0.0

    def _share_budget(self, running: Sequence[Stream]) -> None:
        if self.budget_ms is None or not running:
            return
        share = self.budget_ms / len(running)
        for s in running:
            if s.loop.scheduler is not None:
                s.loop.scheduler.policy.budget_ms = share
            else:
                s.loop.budget_ms = share

    def run(self, on_result: Callable[[Stream, Frame, StepResult], bool | None] | None = None) -> float:
        """Serve every stream until all have ended or failed, or ``on_result`` returns True.

        ``on_result(stream, frame, result)`` sees each processed frame (write
        it, show it); returning True stops every stream. Returns the wall time (s).
        """
        running = [s for s in self.streams if s.status == "running"]
        self._share_budget(running)
        for s in running:  # live sources: what arrived while the caller set up is not "dropped"
            reset = getattr(s.reader, "reset_counts", None)
            if reset is not None:
                reset()
        t0 = time.perf_counter()
        try:
            while running:
                self.notify.clear()
                progressed = False
                for stream in list(running):
                    try:
                        frame = stream.reader.poll()
                    except VideoSourceError as err:
                        frame = None
                        stream.finish("failed", str(err))
                    if frame is None:
                        if stream.status != "running" or stream.reader.ended:
                            error = getattr(stream.reader, "error", None)
                            stream.finish("failed" if error else "ended", error)
                            running.remove(stream)
                            self._share_budget(running)
                        continue
                    result = stream.loop.step(frame)
                    stream.frames += 1
                    # late: the result came more than one source frame period after capture
                    stream.late += time.perf_counter() - frame.timestamp > 1.0 / stream.fps
                    progressed = True
                    if on_result is not None and on_result(stream, frame, result):
                        for s in running:
                            s.finish("stopped")
                        running = []
                        break
                if running and not progressed:
                    self.notify.wait(_IDLE_WAIT_S)
        finally:
            for s in running:
                s.finish("stopped")
            self.wall_s = time.perf_counter() - t0
        return self.wall_s
