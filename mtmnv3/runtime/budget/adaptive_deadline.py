"""A feedback controller that holds the per-frame deadline.

Quality is a ladder of rungs, best first: every wanted task at each allowed
resolution from largest to smallest, then, at the smallest resolution, tasks
dropped one at a time from the lowest priority up (embeddings before the
detections they need; dropping classification lets the trunk stop earlier),
down to Kalman-only ``motion`` frames. The controller keeps a current rung
and moves it with the feedback-control scheduling recipe of Lu, Stankovic,
Son and Tao ("Feedback Control Real-Time Scheduling", Real-Time Systems
2002), here with a quality ladder in the spirit of adaptive-resolution
detectors (Chin, Ding and Marculescu, "AdaScale", MLSys 2019):

* down one rung on a deadline miss, or when the smoothed utilisation
  (measured / budget) rises above ``high_water`` (a growing slack deficit);
* down as far as needed when the cost estimates say the rung no longer fits;
* up one rung only after ``raise_after`` frames of utilisation below
  ``low_water``, once a hold time after the last miss has passed, and only if
  the estimates say the rung above fits with utilisation below ``high_water``;
* under the same slack condition, a plan with units the estimator has never
  seen (a cold start without a latency table) is run once as a probe, so the
  controller can climb from pessimistic guesses; a probe that misses the
  deadline doubles the hold instead of lowering the rung.

The gap between the two water marks and the hold are the hysteresis. A miss
soon after a raise (a failed probe) doubles the hold, up to
``max_hold_frames``; a probe that holds halves it again, so the controller
does not oscillate around a rung that is just too expensive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtmnv3.core.registry import BUDGET_POLICIES
from mtmnv3.runtime.budget.base import BudgetPolicy
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.plan import (
    CLS,
    TASK_REQUIRES,
    TASKS,
    FramePlan,
    FrameRecord,
    ModelLayout,
    SchedulerState,
)

__all__ = ["AdaptiveDeadlinePolicy", "Rung"]


@dataclass(frozen=True)
class Rung:
    """One quality level: tracking heads, input size, whether classification may run."""

    track_heads: tuple[str, ...]
    resolution: int
    allow_cls: bool


@BUDGET_POLICIES.register_module()
class AdaptiveDeadlinePolicy(BudgetPolicy):
    """Hold ``budget_ms`` per frame by moving along a quality ladder (module docstring).

    Args:
        budget_ms, priorities, resolutions, cls_period, safety_margin: see
            :class:`BudgetPolicy`.
        high_water: smoothed utilisation above which the controller lowers, in (low_water, 1].
        low_water: smoothed utilisation below which slack counts, in (0, high_water).
        smoothing: EWMA weight of a frame's utilisation, in (0, 1].
        raise_after: consecutive slack frames needed before raising (>= 1).
        hold_frames: frames without raising after a miss (>= 0).
        max_hold_frames: the longest hold after repeated failed probes (>= hold_frames).
        probe_frames: a miss this many frames after a raise is a failed probe (>= 1).
        lower_cooldown: frames between two lowerings by utilisation (>= 1; misses lower at once).
    """

    def __init__(
        self,
        budget_ms: float,
        priorities: Mapping[str, float] | None = None,
        resolutions: Sequence[int] = (320,),
        cls_period: int = 10,
        safety_margin: float = 0.1,
        high_water: float = 0.9,
        low_water: float = 0.7,
        smoothing: float = 0.3,
        raise_after: int = 10,
        hold_frames: int = 20,
        max_hold_frames: int = 640,
        probe_frames: int = 10,
        lower_cooldown: int = 5,
    ) -> None:
        super().__init__(budget_ms, priorities, resolutions, cls_period, safety_margin)
        if not (isinstance(low_water, (int, float)) and isinstance(high_water, (int, float))) or not (
            0.0 < low_water < high_water <= 1.0
        ):
            raise ValueError(
                f"water marks must satisfy 0 < low_water < high_water <= 1, got low_water={low_water!r}, "
                f"high_water={high_water!r}"
            )
        if not (isinstance(smoothing, (int, float)) and 0.0 < smoothing <= 1.0):
            raise ValueError(f"smoothing must be a number in (0, 1], got {smoothing!r}")
        for name, value, low in (
            ("raise_after", raise_after, 1),
            ("hold_frames", hold_frames, 0),
            ("probe_frames", probe_frames, 1),
            ("lower_cooldown", lower_cooldown, 1),
            ("max_hold_frames", max_hold_frames, hold_frames),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.high_water = float(high_water)
        self.low_water = float(low_water)
        self.smoothing = float(smoothing)
        self.raise_after = raise_after
        self.hold_frames = hold_frames
        self.max_hold_frames = max_hold_frames
        self.probe_frames = probe_frames
        self.lower_cooldown = lower_cooldown
        # Controller state.
        self.level = 0
        self.utilization: float | None = None
        self._ladder: tuple[Rung, ...] = ()
        self._ladder_layout: ModelLayout | None = None
        self._hold = hold_frames
        self._hold_until = -(2**62)
        self._slack_frames = 0
        self._last_change = -(2**62)
        self._last_raise: int | None = None
        self._probing = False
        self._probe_frame: int | None = None

    # ---- the ladder -----------------------------------------------------------------------
    def ladder(self, layout: ModelLayout) -> tuple[Rung, ...]:
        """The quality ladder for ``layout``, best rung first."""
        if self._ladder_layout != layout:
            self._ladder = self._build_ladder(layout)
            self._ladder_layout = layout
            self.level = min(self.level, len(self._ladder) - 1)
        return self._ladder

    def _build_ladder(self, layout: ModelLayout) -> tuple[Rung, ...]:
        wanted = self.wanted_tasks(layout)
        kept = [t for t in wanted if t != CLS]
        has_cls = CLS in wanted
        rungs = [Rung(tuple(kept), res, has_cls) for res in self.resolutions]
        smallest = self.resolutions[-1]
        remaining = set(wanted)
        while remaining:
            # Drop the lowest-priority task that no remaining task needs.
            droppable = [t for t in remaining if not any(t in TASK_REQUIRES[o] for o in remaining if o != t)]
            drop = min(droppable, key=lambda t: (self.priorities[t], -TASKS.index(t)))
            remaining.discard(drop)
            track = tuple(t for t in TASKS if t in remaining and t != CLS)
            rungs.append(Rung(track, smallest, CLS in remaining))
        return tuple(rungs)

    def _plan(self, rung: Rung, state: SchedulerState, with_cls: bool) -> FramePlan:
        heads = list(rung.track_heads)
        if with_cls and rung.allow_cls and self.due(CLS, state):
            heads.append(CLS)
        return FramePlan.for_heads(heads, rung.resolution, state.layout)

    # ---- decide -------------------------------------------------------------------------------
    def decide(self, frame_index: int, estimator: CostEstimator, state: SchedulerState) -> FramePlan:
        """The current rung's plan, after the controller's raise / estimate checks."""
        ladder = self.ladder(state.layout)
        last = len(ladder) - 1
        # Step 1: raise one rung after steady slack, past the hold, if the rung above fits.
        if self.level > 0 and self._slack_frames >= self.raise_after and frame_index >= self._hold_until:
            up = self._plan(ladder[self.level - 1], state, with_cls=False)
            if (
                estimator.predict_high(up) <= self.limit_ms
                and estimator.predict(up) <= self.high_water * self.budget_ms
            ):
                self.level -= 1
                self._last_raise = self._last_change = frame_index
                self._slack_frames = 0
                self._probing = True
        # Step 2: lower for good while the estimates say the rung itself no longer fits.
        while (
            self.level < last
            and estimator.predict_high(self._plan(ladder[self.level], state, False)) > self.limit_ms
        ):
            self.level += 1
            self._last_change = frame_index
        # Step 3: explore. After steady slack, run once a wanted plan whose units were never
        # measured (cold start without a latency table), so the estimates can learn them.
        if self._slack_frames >= self.raise_after and frame_index >= self._hold_until:
            wanted = [self._plan(ladder[self.level], state, with_cls=True)]
            if self.level > 0:
                wanted.insert(0, self._plan(ladder[self.level - 1], state, with_cls=True))
            for plan in wanted:
                if not all(estimator.is_known(u) for u in plan.units()):
                    self._probe_frame = frame_index
                    return plan
        # Step 4: this frame: the rung with classification when due, else the first cheaper rung that fits.
        for rung in ladder[self.level :]:
            plan = self._plan(rung, state, with_cls=True)
            if estimator.predict_high(plan) <= self.limit_ms:
                return plan
        return FramePlan.skip(ladder[last].resolution)

    # ---- observe ----------------------------------------------------------------------------
    def observe(self, record: FrameRecord) -> None:
        """Update the smoothed utilisation and move the rung on misses, deficit or slack."""
        i = record.frame_index
        u = record.measured_ms / self.budget_ms
        self.utilization = (
            u if self.utilization is None else self.utilization + self.smoothing * (u - self.utilization)
        )
        since_raise = None if self._last_raise is None else i - self._last_raise
        if i == self._probe_frame:
            if not record.met:  # the explored plan is too expensive: do not try again soon
                self._hold = min(max(2 * self._hold, 1), self.max_hold_frames)
                self._hold_until = i + self._hold
            return
        if not record.met:
            if self._probing and since_raise is not None and since_raise <= self.probe_frames:
                self._hold = min(
                    max(2 * self._hold, 1), self.max_hold_frames
                )  # failed probe: back off longer
                self._probing = False
            self._lower(i)
            self._hold_until = i + self._hold
        elif self.utilization > self.high_water:
            if i - self._last_change >= self.lower_cooldown:
                self._lower(i)
            self._slack_frames = 0
        elif self.utilization < self.low_water:
            self._slack_frames += 1
        else:
            self._slack_frames = 0
        if self._probing and since_raise is not None and since_raise > self.probe_frames:
            self._hold = max(self.hold_frames, self._hold // 2)  # the probe held
            self._probing = False

    def _lower(self, frame_index: int) -> None:
        self.level = min(self.level + 1, max(len(self._ladder) - 1, 0))
        self._last_change = frame_index
        self._slack_frames = 0

    def controller_state(self) -> dict[str, object]:
        """The controller's state, for logs."""
        rung = self._ladder[self.level] if self._ladder else None
        return dict(
            level=self.level,
            rung=None
            if rung is None
            else dict(heads=list(rung.track_heads), resolution=rung.resolution, cls=rung.allow_cls),
            utilization=self.utilization,
            hold_frames=self._hold,
            slack_frames=self._slack_frames,
        )
