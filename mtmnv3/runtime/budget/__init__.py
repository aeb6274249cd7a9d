"""Per-frame compute-budget policies, registered in BUDGET_POLICIES.

The run-time half of the scheduler: a :class:`CostEstimator` learns what each
unit of work costs (trunk stages per input size, heads, association, Kalman
prediction), a policy turns the estimates and the staleness of each task into
a :class:`FramePlan` per frame, and :class:`BudgetScheduler` runs the loop and
records deadline misses and staleness in a :class:`BudgetLog`. Plans name head
roles (``cls``, ``det``, ``emb``); :class:`ModelLayout` maps them to the model's
head names by task. Nothing here runs the model; the caller runs the plan and
reports timings.

Policies (one file each): :class:`FixedIntervalPolicy`,
:class:`GreedyUtilityPolicy`, :class:`AdaptiveDeadlinePolicy`.
"""

from mtmnv3.runtime.budget.adaptive_deadline import AdaptiveDeadlinePolicy, Rung
from mtmnv3.runtime.budget.base import DEFAULT_PRIORITIES, BudgetPolicy
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.fixed_interval import FixedIntervalPolicy
from mtmnv3.runtime.budget.greedy_utility import GreedyUtilityPolicy
from mtmnv3.runtime.budget.plan import (
    CLS,
    DET,
    EMB,
    MODES,
    MOTION_UNIT,
    OVERHEAD_UNIT,
    ROLE_TASKS,
    TASKS,
    TRACK_UNIT,
    BudgetLog,
    FramePlan,
    FrameRecord,
    ModelLayout,
    SchedulerState,
    head_unit,
    split_unit,
    stage_unit,
)
from mtmnv3.runtime.budget.runner import BudgetScheduler, SyntheticCostModel, simulate

__all__ = [
    "AdaptiveDeadlinePolicy",
    "BudgetLog",
    "BudgetPolicy",
    "BudgetScheduler",
    "CLS",
    "DET",
    "EMB",
    "CostEstimator",
    "DEFAULT_PRIORITIES",
    "FixedIntervalPolicy",
    "FramePlan",
    "FrameRecord",
    "GreedyUtilityPolicy",
    "MODES",
    "MOTION_UNIT",
    "ModelLayout",
    "OVERHEAD_UNIT",
    "ROLE_TASKS",
    "Rung",
    "SchedulerState",
    "SyntheticCostModel",
    "TASKS",
    "TRACK_UNIT",
    "head_unit",
    "simulate",
    "split_unit",
    "stage_unit",
]
