"""Latency measurement: warm-up, repeats, medians; per-stage trunk timings.

Absolute times drift on shared machines, so comparisons should be ratios
measured interleaved in one run (see :func:`interleaved_ratio` and
:func:`interleaved_timings`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "Timing",
    "time_fn",
    "interleaved_ratio",
    "interleaved_timings",
    "BackendComparison",
    "compare_backends",
    "num_threads",
    "stage_latency",
    "format_table",
]


@dataclass(frozen=True)
class Timing:
    """Summary of repeated timings, in milliseconds."""

    median_ms: float
    p90_ms: float
    min_ms: float
    repeats: int

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> Timing:
        if not samples_ms:
            raise ValueError("need at least one timing sample")
        ordered = sorted(samples_ms)
        p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
        return cls(statistics.median(ordered), p90, ordered[0], len(ordered))


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_fn(fn: Callable[[], object], warmup: int = 3, repeats: int = 20) -> Timing:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return Timing.from_samples(samples)


def interleaved_timings(
    fns: Mapping[Hashable, Callable[[], object]], rounds: int = 15, inner: int = 1, warmup: int = 1
) -> dict[Hashable, Timing]:
    """Time several callables in the same rounds (so drift hits all of them alike).

    Each callable is called ``warmup`` times first. Each round times ``inner``
    calls of each, in an order that rotates by one from round to round.

    Returns:
        Per key, the per-call :class:`Timing` (ms).
    """
    if rounds < 1 or inner < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, inner >= 1 and warmup >= 0, got {rounds}, {inner}, {warmup}")
    keys = list(fns)
    for _ in range(warmup):
        for key in keys:
            fns[key]()
    samples: dict[Hashable, list[float]] = {key: [] for key in keys}
    for r in range(rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[key]()
            samples[key].append((time.perf_counter() - t0) * 1e3 / inner)
    return {key: Timing.from_samples(samples[key]) for key in keys}


@dataclass
class BackendComparison:
    """Outputs and interleaved timings of several implementations of one computation.

    Attributes:
        timings: per name, the per-call :class:`Timing` (ms).
        outputs: per name, the metrics dict its last call returned.
        max_diff: largest ``|output - reference output|`` over the keys of every
            other implementation (the reference is the first; NaN equals NaN).
    """

    timings: dict[str, Timing]
    outputs: dict[str, Mapping[str, float]]
    max_diff: float

    def rows(self) -> list[list[str]]:
        """``[name, seconds, speed-up against the reference]`` per implementation."""
        ref = next(iter(self.timings.values())).median_ms
        return [[n, f"{t.median_ms / 1e3:.3f}", f"{ref / t.median_ms:.2f}"] for n, t in self.timings.items()]


def compare_backends(
    calls: Mapping[str, Callable[[], Mapping[str, float]]], rounds: int = 3
) -> BackendComparison:
    """Time implementations of one metric computation interleaved and check they agree.

    Args:
        calls: name -> a call returning ``{metric: value}``; the first is the reference.
        rounds: interleaved rounds (no warm-up: each call is a whole evaluation).
    """
    outputs: dict[str, Mapping[str, float]] = {}

    def run(name: str) -> None:
        outputs[name] = calls[name]()

    timings = interleaved_timings({n: (lambda n=n: run(n)) for n in calls}, rounds=rounds, warmup=0)
    ref_name, *others = list(calls)
    ref = outputs[ref_name]
    max_diff = 0.0
    for name in others:
        for key, value in outputs[name].items():
            if not (math.isnan(value) and math.isnan(ref[key])):
                max_diff = max(max_diff, abs(float(value) - float(ref[key])))
    return BackendComparison(timings, outputs, max_diff)


def interleaved_ratio(
    fn: Callable[[], object],
    ref: Callable[[], object],
    rounds: int = 15,
    inner: int = 5,
    warmup: int = 3,
) -> tuple[float, Timing, Timing]:
    """Time ``fn`` against ``ref`` in alternating rounds (:func:`interleaved_timings`).

    Returns:
        ``(median(fn) / median(ref), fn timing, ref timing)``; per-call ms.
    """
    t = interleaved_timings({"fn": fn, "ref": ref}, rounds=rounds, inner=inner, warmup=warmup)
    return t["fn"].median_ms / t["ref"].median_ms, t["fn"], t["ref"]


@torch.no_grad()
def stage_latency(
    trunk: nn.Module,
    size: int | tuple[int, int] = 224,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 20,
) -> list[Timing]:
    """Median latency of each trunk stage on its real input, eager mode.

    ``trunk`` is any module with the trunk contract (``num_stages`` and
    ``forward_stages(x, start, end)``).

    Returns:
        One :class:`Timing` per stage (in ``trunk.feature_info`` order).
    """
    h, w = (size, size) if isinstance(size, int) else size
    was_training = trunk.training
    trunk.eval()
    try:
        x = torch.randn(batch, 3, h, w)
        inputs = []
        for i in range(trunk.num_stages):
            inputs.append(x)
            x = trunk.forward_stages(x, i, i + 1)
        return [
            time_fn(lambda i=i: trunk.forward_stages(inputs[i], i, i + 1), warmup, repeats)
            for i in range(trunk.num_stages)
        ]
    finally:
        trunk.train(was_training)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table (floats with 3 significant decimals)."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
