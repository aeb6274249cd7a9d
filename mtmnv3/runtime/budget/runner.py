"""The run-time scheduler loop, and a synthetic cost model to simulate it.

:class:`BudgetScheduler` glues a cost estimator, a policy and a log::

    plan = sched.begin_frame(i)          # policy decides from estimates + staleness
    ...run plan.depth stages at plan.resolution, plan.heads, the tracker in plan.mode...
    sched.end_frame(total_ms, unit_timings={"det@320": 2.1, ...})

:func:`simulate` drives the same loop with a :class:`SyntheticCostModel`
(true per-unit costs, multiplicative jitter, a background-load curve), for
tests and benchmarks, without a model or a clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence

from mtmnv3.runtime.budget._stats import check_positive
from mtmnv3.runtime.budget.base import BudgetPolicy
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.plan import (
    MOTION_UNIT,
    OVERHEAD_UNIT,
    TRACK_UNIT,
    BudgetLog,
    FramePlan,
    FrameRecord,
    ModelLayout,
    SchedulerState,
    head_unit,
    stage_unit,
)

__all__ = ["BudgetScheduler", "SyntheticCostModel", "simulate"]


class BudgetScheduler:
    """Per-frame budget control: estimator + policy + log.

    Args:
        policy: the policy that plans frames (its ``budget_ms`` is the deadline).
        estimator: cost estimates; must be able to price the policy's plans
            (seed a prior or give it ``unknown_ms``).
        layout: the model's layout; default :meth:`ModelLayout.single_stage`.
        log: where records go; default a new unbounded :class:`BudgetLog`.
    """

    def __init__(
        self,
        policy: BudgetPolicy,
        estimator: CostEstimator,
        layout: ModelLayout | None = None,
        log: BudgetLog | None = None,
    ) -> None:
        if not isinstance(policy, BudgetPolicy):
            raise TypeError(f"policy must be a BudgetPolicy, got {type(policy).__name__}")
        if not isinstance(estimator, CostEstimator):
            raise TypeError(f"estimator must be a CostEstimator, got {type(estimator).__name__}")
        self.policy = policy
        self.estimator = estimator
        self.layout = layout if layout is not None else ModelLayout.single_stage()
        self.log = log if log is not None else BudgetLog()
        self._first_frame: int | None = None
        self._last_frame: int | None = None
        self._last_run: dict[str, int] = {}
        self._pending: tuple[int, FramePlan, float, float] | None = None
        self._last_record: FrameRecord | None = None

    @property
    def budget_ms(self) -> float:
        return self.policy.budget_ms

    def staleness(self, frame_index: int) -> dict[str, int]:
        """Frames since each available task last ran, counted at ``frame_index``.

        A task that never ran counts as if it ran just before the first frame.
        """
        first = frame_index if self._first_frame is None else self._first_frame
        return {t: frame_index - self._last_run.get(t, first - 1) for t in self.layout.heads}

    def begin_frame(self, frame_index: int | None = None) -> FramePlan:
        """Decide the plan of the next frame.

        Args:
            frame_index: the frame's index, larger than the previous one (gaps
                are dropped frames and count towards staleness); default the
                previous index + 1 (0 first).

        Returns:
            The plan, already checked against the layout.
        """
        if self._pending is not None:
            raise RuntimeError(f"frame {self._pending[0]} was begun but not ended; call end_frame first")
        if frame_index is None:
            frame_index = 0 if self._last_frame is None else self._last_frame + 1
        if isinstance(frame_index, bool) or not isinstance(frame_index, int) or frame_index < 0:
            raise ValueError(f"frame_index must be an int >= 0, got {frame_index!r}")
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase; got {frame_index} after {self._last_frame}")
        if self._first_frame is None:
            self._first_frame = frame_index
        state = SchedulerState(frame_index, self.staleness(frame_index), self.layout, self._last_record)
        plan = self.policy.decide(frame_index, self.estimator, state)
        if not isinstance(plan, FramePlan):
            raise TypeError(
                f"{type(self.policy).__name__}.decide returned {type(plan).__name__}, not a FramePlan"
            )
        self.layout.check(plan)
        self._pending = (frame_index, plan, self.estimator.predict(plan), self.estimator.predict_high(plan))
        return plan

    def end_frame(self, measured_ms: float, unit_timings: Mapping[str, float] | None = None) -> FrameRecord:
        """Report the frame begun last: learn costs, update staleness, log, tell the policy.

        Args:
            measured_ms: the frame's measured wall time in ms.
            unit_timings: measured ms of some of the plan's units (see
                :meth:`CostEstimator.observe_frame`); the rest is attributed.

        Returns:
            The frame's record (also appended to the log).
        """
        if self._pending is None:
            raise RuntimeError("end_frame called without begin_frame")
        frame_index, plan, predicted, predicted_high = self._pending
        self.estimator.observe_frame(plan, measured_ms, unit_timings)  # validates the timings
        self._pending = None
        self._last_frame = frame_index
        for task in plan.heads:
            self._last_run[task] = frame_index
        record = FrameRecord(
            frame_index=frame_index,
            plan=plan,
            budget_ms=self.budget_ms,
            predicted_ms=predicted,
            predicted_high_ms=predicted_high,
            measured_ms=float(measured_ms),
            met=float(measured_ms) <= self.budget_ms,
            staleness=self.staleness(frame_index),
        )
        self.log.append(record)
        self._last_record = record
        self.policy.observe(record)
        return record


class SyntheticCostModel:
    """True unit costs with jitter, to simulate a scheduler without a model.

    A unit's sampled time is ``cost(unit) * load * exp(N(0, jitter))``; with
    probability ``spike_prob`` a whole frame is also ``spike_scale`` times
    slower (a preempted frame).

    Args:
        unit_ms: true cost in ms of every unit a plan may use.
        jitter: standard deviation of the log-normal per-unit noise (>= 0).
        spike_prob: chance of a slow frame, in [0, 1).
        spike_scale: slow-down of such a frame (>= 1).
        seed: random seed (sampling is deterministic given the seed).
    """

    def __init__(
        self,
        unit_ms: Mapping[str, float],
        jitter: float = 0.05,
        spike_prob: float = 0.0,
        spike_scale: float = 2.0,
        seed: int = 0,
    ) -> None:
        if not isinstance(unit_ms, Mapping) or not unit_ms:
            raise ValueError(f"unit_ms must be a non-empty dict unit -> ms, got {unit_ms!r}")
        for unit, ms in unit_ms.items():
            if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
                raise ValueError(f"unit_ms[{unit!r}] must be a number of ms >= 0, got {ms!r}")
        if not (isinstance(jitter, (int, float)) and jitter >= 0):
            raise ValueError(f"jitter must be a number >= 0, got {jitter!r}")
        if not (isinstance(spike_prob, (int, float)) and 0 <= spike_prob < 1):
            raise ValueError(f"spike_prob must be a number in [0, 1), got {spike_prob!r}")
        if not (isinstance(spike_scale, (int, float)) and spike_scale >= 1):
            raise ValueError(f"spike_scale must be a number >= 1, got {spike_scale!r}")
        self.unit_ms = {u: float(ms) for u, ms in unit_ms.items()}
        self.jitter = float(jitter)
        self.spike_prob = float(spike_prob)
        self.spike_scale = float(spike_scale)
        self._rng = random.Random(seed)

    @classmethod
    def scaled(
        cls,
        layout: ModelLayout,
        resolutions: Sequence[int],
        stage_ms: Sequence[float],
        head_ms: Mapping[str, float],
        ref_resolution: int,
        track_ms: float = 1.0,
        motion_ms: float = 0.2,
        overhead_ms: float = 0.5,
        exponent: float = 2.0,
        **kwargs: float,
    ) -> SyntheticCostModel:
        """Costs given at ``ref_resolution``, scaled by ``(res / ref) ** exponent`` to each size.

        Args:
            layout: the model layout (``len(stage_ms)`` must equal its stage count).
            resolutions: sizes to generate units for.
            stage_ms: ms per trunk stage at ``ref_resolution``.
            head_ms: ms per head at ``ref_resolution``.
            ref_resolution: the size the costs are given at.
            track_ms, motion_ms, overhead_ms: resolution-independent units.
            exponent: cost scaling with the input size.
            **kwargs: ``jitter``, ``spike_prob``, ``spike_scale``, ``seed``.
        """
        if len(stage_ms) != layout.num_stages:
            raise ValueError(
                f"stage_ms has {len(stage_ms)} entries for a trunk of {layout.num_stages} stages"
            )
        check_positive("ref_resolution", ref_resolution, "a positive int (pixels)")
        units = {TRACK_UNIT: track_ms, MOTION_UNIT: motion_ms, OVERHEAD_UNIT: overhead_ms}
        for res in resolutions:
            scale = (res / ref_resolution) ** exponent
            units.update({stage_unit(i, res): ms * scale for i, ms in enumerate(stage_ms)})
            units.update({head_unit(h, res): ms * scale for h, ms in head_ms.items()})
        return cls(units, **kwargs)  # type: ignore[arg-type]

    def cost(self, unit: str) -> float:
        """The true (noise-free, unloaded) cost of ``unit``."""
        if unit not in self.unit_ms:
            raise KeyError(f"the cost model has no unit {unit!r}")
        return self.unit_ms[unit]

    def expected(self, plan: FramePlan, load: float = 1.0) -> float:
        """Noise-free cost of ``plan`` under ``load``."""
        return sum(self.cost(u) for u in plan.units()) * load

    def sample(self, plan: FramePlan, load: float = 1.0) -> tuple[float, dict[str, float]]:
        """One run of ``plan``: (total ms, per-unit ms of every unit but ``overhead``).

        The overhead is in the total but not reported per unit, as in a real
        loop that times the model and the tracker but not the rest.
        """
        spike = self.spike_scale if self._rng.random() < self.spike_prob else 1.0
        times = {
            u: self.cost(u) * load * spike * math.exp(self._rng.gauss(0.0, self.jitter)) for u in plan.units()
        }
        total = sum(times.values())
        times.pop(OVERHEAD_UNIT, None)
        return total, times


def simulate(
    policy: BudgetPolicy,
    cost_model: SyntheticCostModel,
    n_frames: int,
    load_fn: Callable[[int], float] | None = None,
    *,
    layout: ModelLayout | None = None,
    estimator: CostEstimator | None = None,
    report_units: bool = True,
) -> BudgetLog:
    """Run ``policy`` for ``n_frames`` frames against ``cost_model``.

    Args:
        policy: the policy under test.
        cost_model: true costs and jitter.
        n_frames: frames to simulate (>= 1).
        load_fn: frame index -> background load factor (default 1 throughout).
        layout: the model layout (default :meth:`ModelLayout.single_stage`).
        estimator: the estimator to use (default: seeded with the cost model's
            true unloaded costs, as a latency table measured on an idle device).
        report_units: report per-unit timings to the scheduler; otherwise only
            frame totals.

    Returns:
        The log of all frames.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be an int >= 1, got {n_frames!r}")
    if estimator is None:
        estimator = CostEstimator(cost_model.unit_ms)
    sched = BudgetScheduler(policy, estimator, layout)
    for i in range(n_frames):
        load = 1.0 if load_fn is None else float(load_fn(i))
        check_positive("load_fn(frame)", load, "a positive load factor")
        plan = sched.begin_frame(i)
        total, units = cost_model.sample(plan, load)
        sched.end_frame(total, units if report_units else None)
    return sched.log
