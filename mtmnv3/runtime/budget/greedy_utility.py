"""Greedy utility per millisecond under the frame budget.

Each frame is a small knapsack: the tasks are items, their value grows with
how stale their last output is (the age-of-information view of Kaul, Yates
and Gruteser, "Real-time status: How often should one update?", INFOCOM
2012), their weight is the extra milliseconds they add to the frame. The
greedy order by value per weight (Dantzig, "Discrete-variable extremum
problems", Operations Research 1957) fills the budget; a task that needs
another (embeddings need detections) is offered together with it, so the
shared trunk stages are paid once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mtmnv3.core.registry import BUDGET_POLICIES
from mtmnv3.runtime.budget.base import BudgetPolicy
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.plan import TASK_REQUIRES, FramePlan, SchedulerState

__all__ = ["GreedyUtilityPolicy"]

#: Marginal costs below this (ms) count as this much, so free units do not divide by zero.
MIN_MARGINAL_MS = 1e-3
#: Utilities closer than this count as equal (ties go to the larger resolution).
UTILITY_TIE = 1e-9


@BUDGET_POLICIES.register_module()
class GreedyUtilityPolicy(BudgetPolicy):
    """Pick tasks by utility per ms within ``budget_ms * (1 - safety_margin)``.

    The utility of task ``t`` at a frame is
    ``priority[t] * staleness[t] / period[t] * (res / max_res) ** resolution_exponent``
    (``period`` is ``cls_period`` for classification, 1 otherwise; a task runs
    only once its staleness reached its period). For every allowed resolution
    the policy starts from a ``motion`` frame and adds, while the plan's
    high-quantile cost (:meth:`CostEstimator.predict_high`) stays within the
    limit, the task (with its prerequisites) of highest utility per marginal
    ms. The resolution whose plan has the highest total utility wins (ties:
    the larger). If not even a ``motion`` frame fits, the frame is skipped.
    The policy trusts the estimates and does not explore: seed the estimator
    with a latency table, or units priced at ``unknown_ms`` that do not fit
    are never tried.

    Args:
        budget_ms, priorities, resolutions, cls_period, safety_margin: see
            :class:`BudgetPolicy`.
        resolution_exponent: how much a smaller input lowers a task's value (>= 0).
    """

    def __init__(
        self,
        budget_ms: float,
        priorities: Mapping[str, float] | None = None,
        resolutions: Sequence[int] = (320,),
        cls_period: int = 10,
        safety_margin: float = 0.1,
        resolution_exponent: float = 1.0,
    ) -> None:
        super().__init__(budget_ms, priorities, resolutions, cls_period, safety_margin)
        if (
            isinstance(resolution_exponent, bool)
            or not isinstance(resolution_exponent, (int, float))
            or resolution_exponent < 0
        ):
            raise ValueError(f"resolution_exponent must be a number >= 0, got {resolution_exponent!r}")
        self.resolution_exponent = float(resolution_exponent)

    def utility(self, task: str, resolution: int, state: SchedulerState) -> float:
        """Value of running ``task`` at ``resolution`` in the frame ``state`` describes."""
        scale = (resolution / self.resolutions[0]) ** self.resolution_exponent
        return self.priorities[task] * state.staleness.get(task, 1) / self.period(task) * scale

    def decide(self, frame_index: int, estimator: CostEstimator, state: SchedulerState) -> FramePlan:
        """The highest-utility plan that fits the limit (see the class docstring)."""
        best: tuple[float, FramePlan] | None = None
        for res in self.resolutions:
            plan, value = self._fill(res, estimator, state)
            if best is None or value > best[0] + UTILITY_TIE:
                best = (value, plan)
        assert best is not None  # resolutions is non-empty
        return best[1]

    def _fill(
        self, resolution: int, estimator: CostEstimator, state: SchedulerState
    ) -> tuple[FramePlan, float]:
        """Greedy fill at one resolution -> (plan, total utility)."""
        layout = state.layout
        # Step 1: the base frame (Kalman only); skip the frame if even that does not fit.
        chosen: list[str] = []
        plan = FramePlan.for_heads(chosen, resolution, layout)
        cost = estimator.predict_high(plan)
        if cost > self.limit_ms:
            return FramePlan.skip(resolution), 0.0
        candidates = [t for t in self.wanted_tasks(layout) if self.due(t, state)]
        total = 0.0
        # Step 2: add the best value-per-ms bundle while one fits.
        while True:
            best: tuple[float, float, list[str], FramePlan, float] | None = None
            for task in candidates:
                if task in chosen:
                    continue
                bundle = [r for r in TASK_REQUIRES[task] if r not in chosen] + [task]
                if any(r not in candidates for r in bundle):
                    continue  # a prerequisite is not due or not wanted
                trial = FramePlan.for_heads(chosen + bundle, resolution, layout)
                trial_cost = estimator.predict_high(trial)
                if trial_cost > self.limit_ms:
                    continue
                value = sum(self.utility(t, resolution, state) for t in bundle)
                ratio = value / max(trial_cost - cost, MIN_MARGINAL_MS)
                if best is None or (ratio, value) > (best[0], best[1]):
                    best = (ratio, value, bundle, trial, trial_cost)
            if best is None:
                return plan, total
            _, value, bundle, plan, cost = best
            chosen += bundle
            total += value
