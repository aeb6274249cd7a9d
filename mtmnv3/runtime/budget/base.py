"""The common base of budget policies: validated arguments and plan helpers.

A policy turns the scheduler's state and the cost estimates into a
:class:`~.plan.FramePlan` per frame (:meth:`BudgetPolicy.decide`) and may
learn from what happened (:meth:`BudgetPolicy.observe`). Each policy is one
small file, registered by class name in ``BUDGET_POLICIES``, with all its
state created in ``__init__``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence

from mtmnv3.runtime.budget._stats import check_positive
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.plan import (
    CLS,
    DET,
    EMB,
    TASKS,
    FramePlan,
    FrameRecord,
    ModelLayout,
    SchedulerState,
)

__all__ = ["BudgetPolicy", "DEFAULT_PRIORITIES"]

#: Default task priorities: tracking needs detections most, embeddings keep
#: identities through occlusion, the scene label changes slowly.
DEFAULT_PRIORITIES: dict[str, float] = {DET: 1.0, EMB: 0.6, CLS: 0.3}


class BudgetPolicy(ABC):
    """Base of per-frame budget policies.

    Args:
        budget_ms: the per-frame deadline in ms (> 0).
        priorities: task -> weight >= 0 for ``cls``/``det``/``emb``; tasks left
            out keep :data:`DEFAULT_PRIORITIES`; weight 0 never runs the task.
        resolutions: allowed input sizes in pixels (non-empty), each the long
            side of the input: the frame runner letterboxes a frame into the
            smallest rectangle that keeps its aspect at that long side, both
            sides multiples of 32 (so a smaller size scales both sides of a
            rectangular input); kept sorted from largest to smallest.
        cls_period: run classification at most every ``cls_period`` frames (>= 1).
        safety_margin: plan to ``budget_ms * (1 - safety_margin)``, in [0, 1).
    """

    def __init__(
        self,
        budget_ms: float,
        priorities: Mapping[str, float] | None = None,
        resolutions: Sequence[int] = (320,),
        cls_period: int = 10,
        safety_margin: float = 0.1,
    ) -> None:
        self.budget_ms = check_positive("budget_ms", budget_ms, "a positive number of milliseconds")
        self.priorities = self._check_priorities(priorities)
        self.resolutions = self._check_resolutions(resolutions)
        if isinstance(cls_period, bool) or not isinstance(cls_period, int) or cls_period < 1:
            raise ValueError(
                f"cls_period must be an int >= 1 (frames between classifications), got {cls_period!r}"
            )
        self.cls_period = cls_period
        if (
            isinstance(safety_margin, bool)
            or not isinstance(safety_margin, (int, float))
            or not 0.0 <= safety_margin < 1.0
        ):
            raise ValueError(f"safety_margin must be a number in [0, 1), got {safety_margin!r}")
        self.safety_margin = float(safety_margin)

    # ---- argument checks ---------------------------------------------------------------
    @staticmethod
    def _check_priorities(priorities: Mapping[str, float] | None) -> dict[str, float]:
        if priorities is None:
            priorities = {}
        if not isinstance(priorities, Mapping):
            raise ValueError(f"priorities must be a dict task -> weight, got {priorities!r}")
        unknown = [t for t in priorities if t not in TASKS]
        if unknown:
            raise ValueError(f"priorities names unknown head(s) {unknown}; expected names from {TASKS}")
        out = dict(DEFAULT_PRIORITIES)
        for task, weight in priorities.items():
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(f"priorities[{task!r}] must be a finite number >= 0, got {weight!r}")
            out[task] = float(weight)
        return out

    @staticmethod
    def _check_resolutions(resolutions: Sequence[int]) -> tuple[int, ...]:
        if isinstance(resolutions, (str, bytes)) or not isinstance(resolutions, Iterable):
            raise ValueError(
                f"resolutions must be a non-empty list of positive ints (pixels), got {resolutions!r}"
            )
        sizes = list(resolutions)
        if not sizes:
            raise ValueError(
                f"resolutions must be a non-empty list of positive ints (pixels), got {resolutions!r}"
            )
        for r in sizes:
            if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
                raise ValueError(f"resolutions must hold positive ints (pixels), got {r!r} in {sizes}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"resolutions lists a size twice: {sizes}")
        return tuple(sorted(sizes, reverse=True))

    # ---- helpers for subclasses ------------------------------------------------------------
    @property
    def limit_ms(self) -> float:
        """The planning limit: ``budget_ms * (1 - safety_margin)``."""
        return self.budget_ms * (1.0 - self.safety_margin)

    def period(self, task: str) -> int:
        """Frames between runs a task needs at most (``cls_period`` for ``cls``, else 1)."""
        return self.cls_period if task == CLS else 1

    def wanted_tasks(self, layout: ModelLayout) -> tuple[str, ...]:
        """Tasks the model has and whose priority is above 0, canonical order."""
        return tuple(t for t in layout.heads if self.priorities[t] > 0)

    def due(self, task: str, state: SchedulerState) -> bool:
        """Whether ``task`` may run this frame: its staleness reached its period."""
        return state.staleness.get(task, 0) >= self.period(task)

    # ---- the interface -------------------------------------------------------------------------
    @abstractmethod
    def decide(self, frame_index: int, estimator: CostEstimator, state: SchedulerState) -> FramePlan:
        """The plan for frame ``frame_index``.

        Args:
            frame_index: the frame being decided.
            estimator: cost estimates to price candidate plans with.
            state: staleness per task, the model layout, the last record.

        Returns:
            A plan that the layout accepts.
        """

    def observe(self, record: FrameRecord) -> None:  # noqa: B027 - optional hook, no-op by default
        """Learn from a finished frame (default: nothing)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(budget_ms={self.budget_ms}, priorities={self.priorities}, "
            f"resolutions={list(self.resolutions)}, cls_period={self.cls_period}, "
            f"safety_margin={self.safety_margin})"
        )
