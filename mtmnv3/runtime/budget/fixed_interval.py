"""Fixed-interval keyframes: the baseline every adaptive policy is compared with.

Detection and embedding run on every ``det_interval``-th frame (a ``full``
keyframe), the tracker's Kalman filter carries the tracks in between
(``motion`` frames), classification runs every ``cls_period``-th frame. The
budget is not consulted: this is the open-loop schedule of keyframe-based
video recognition (Zhu et al., "Deep Feature Flow for Video Recognition",
CVPR 2017), and it misses deadlines whenever a keyframe costs more than the
budget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mtmnv3.core.registry import BUDGET_POLICIES
from mtmnv3.runtime.budget.base import BudgetPolicy
from mtmnv3.runtime.budget.costs import CostEstimator
from mtmnv3.runtime.budget.plan import CLS, DET, EMB, FramePlan, SchedulerState

__all__ = ["FixedIntervalPolicy"]


@BUDGET_POLICIES.register_module()
class FixedIntervalPolicy(BudgetPolicy):
    """Keyframe (det + emb) every ``det_interval`` frames, classification every ``cls_period``.

    Frame ``i`` is a keyframe when ``i % det_interval == 0`` and classifies
    when ``i % cls_period == 0``; other frames are ``motion`` frames.

    Args:
        budget_ms: per-frame deadline in ms (recorded, not used to plan).
        priorities: task weights; a task with weight 0 never runs.
        resolutions: allowed input sizes.
        cls_period: frames between classifications.
        safety_margin: unused by this policy, kept for a uniform interface.
        det_interval: frames between keyframes (>= 1).
        resolution: the input size to use; default the largest allowed.
    """

    def __init__(
        self,
        budget_ms: float,
        priorities: Mapping[str, float] | None = None,
        resolutions: Sequence[int] = (320,),
        cls_period: int = 10,
        safety_margin: float = 0.1,
        det_interval: int = 3,
        resolution: int | None = None,
    ) -> None:
        super().__init__(budget_ms, priorities, resolutions, cls_period, safety_margin)
        if isinstance(det_interval, bool) or not isinstance(det_interval, int) or det_interval < 1:
            raise ValueError(
                f"det_interval must be an int >= 1 (frames between keyframes), got {det_interval!r}"
            )
        if resolution is None:
            resolution = self.resolutions[0]
        if resolution not in self.resolutions:
            raise ValueError(
                f"resolution must be one of the allowed resolutions {self.resolutions}, got {resolution!r}"
            )
        self.det_interval = det_interval
        self.resolution = resolution

    def decide(self, frame_index: int, estimator: CostEstimator, state: SchedulerState) -> FramePlan:
        """The fixed pattern for ``frame_index`` (``estimator`` is not consulted)."""
        wanted = self.wanted_tasks(state.layout)
        heads = []
        if frame_index % self.det_interval == 0:
            heads += [t for t in (DET, EMB) if t in wanted]
        if frame_index % self.cls_period == 0 and CLS in wanted:
            heads.append(CLS)
        if EMB in heads and DET not in heads:
            heads.remove(EMB)  # embeddings are read at detections
        return FramePlan.for_heads(heads, self.resolution, state.layout)
