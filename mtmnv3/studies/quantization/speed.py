"""fp32 vs int8 latency, measured interleaved at each thread count."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mtmnv3.core.profiling import interleaved_ratio, num_threads
from mtmnv3.studies.quantization.evaluate import OrtRawFn

__all__ = ["LatencyRow", "compare_latency", "ort_timer"]


@dataclass(frozen=True)
class LatencyRow:
    """fp32 vs int8 latency at one thread count, measured interleaved in one run.

    Attributes:
        name: what was measured (e.g. the variant and the backend).
        threads: intra-op threads.
        fp32_ms: median fp32 latency per call.
        int8_ms: median int8 latency per call.
        speedup: ``fp32_ms / int8_ms`` (from the interleaved ratio).
        repeats: how many interleaved ratio measurements were taken.
        speedup_spread: ``(min, max)`` of the repeated speed-ups.
        speedup_of_min: ratio of the fastest calls (``min fp32 / min int8``):
            the least disturbed estimate when other jobs share the cores.
    """

    name: str
    threads: int
    fp32_ms: float
    int8_ms: float
    speedup: float
    repeats: int
    speedup_spread: tuple[float, float]
    speedup_of_min: float


def compare_latency(
    fp32_fn: Callable[[int], Callable[[], object]],
    int8_fn: Callable[[int], Callable[[], object]],
    threads: Sequence[int] = (1, 2),
    name: str = "",
    repeats: int = 3,
    rounds: int = 10,
    inner: int = 5,
) -> list[LatencyRow]:
    """Interleaved fp32 vs int8 latency at each thread count, repeated.

    Args:
        fp32_fn: ``threads -> zero-argument callable`` running one fp32 inference.
        int8_fn: the same for int8.
        threads: thread counts to measure.
        name: label of the rows.
        repeats: independent interleaved measurements per thread count; the
            reported speed-up is their median (shared machines drift).
        rounds, inner: :func:`~mtmnv3.core.profiling.interleaved_ratio` arguments.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rows = []
    for t in threads:
        f32, i8 = fp32_fn(t), int8_fn(t)
        ratios, f_times, q_times, f_min, q_min = [], [], [], [], []
        with num_threads(t):
            for _ in range(repeats):
                ratio, tq, tf = interleaved_ratio(i8, f32, rounds=rounds, inner=inner)
                ratios.append(1.0 / ratio)
                q_times.append(tq.median_ms)
                f_times.append(tf.median_ms)
                q_min.append(tq.min_ms)
                f_min.append(tf.min_ms)
        rows.append(
            LatencyRow(
                name=name,
                threads=int(t),
                fp32_ms=float(np.median(f_times)),
                int8_ms=float(np.median(q_times)),
                speedup=float(np.median(ratios)),
                repeats=repeats,
                speedup_spread=(float(min(ratios)), float(max(ratios))),
                speedup_of_min=float(min(f_min) / min(q_min)),
            )
        )
    return rows


def ort_timer(path: str | os.PathLike, example: np.ndarray) -> Callable[[int], Callable[[], object]]:
    """``threads -> callable`` running one ORT inference of ``path`` on ``example``."""

    def make(threads: int) -> Callable[[], object]:
        fn = OrtRawFn(path, threads)
        return lambda: fn.run_numpy(example)

    return make
