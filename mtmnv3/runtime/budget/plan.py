"""Frame plans, frame records and the budget log.

A :class:`FramePlan` says what one frame computes: which heads run, how many
trunk stages run, at which input resolution (the long side of the input;
the frame runner keeps the frame's aspect), and the tracking mode. It
expands into named cost *units* (see :func:`stage_unit`, :func:`head_unit`)
that the :class:`~.costs.CostEstimator` prices. A :class:`ModelLayout` knows
how deep into the trunk each head reaches, so plans can be built and checked
without importing the model. After the frame ran, a :class:`FrameRecord`
keeps what was planned, predicted and measured, and a :class:`BudgetLog`
summarises many of them (miss rate, latency quantiles, staleness, modes).

The scheduler plans *roles* (``cls``, ``det``, ``emb``: the classification,
detection and embedding heads, :data:`ROLE_TASKS`); the layout maps each role
to the model's head of that task, whatever its name (:meth:`ModelLayout.model_heads`).

Unit names:
    ``stage{i}@{res}``  trunk stage ``i`` at input size ``res``;
    ``{role}@{res}``    head role ``cls``/``det``/``emb`` at input size ``res``;
    ``track``           association of detections to tracks (modes ``full``, ``det``);
    ``motion``          Kalman prediction only (mode ``motion``);
    ``overhead``        whatever a frame costs beyond its units (capture, pre/post-processing).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.heads.base import CLASSIFICATION, DETECTION, EMBEDDING, heads_by_task
from mtmnv3.runtime.budget._stats import quantile

__all__ = [
    "CLS",
    "DET",
    "EMB",
    "ROLE_TASKS",
    "TASKS",
    "MODES",
    "TRACK_UNIT",
    "MOTION_UNIT",
    "OVERHEAD_UNIT",
    "stage_unit",
    "head_unit",
    "split_unit",
    "ModelLayout",
    "FramePlan",
    "FrameRecord",
    "SchedulerState",
    "BudgetLog",
]

#: The schedulable head roles: the classification, detection and embedding heads.
CLS, DET, EMB = "cls", "det", "emb"
#: The schedulable roles, one per head, in canonical order.
TASKS: tuple[str, ...] = (CLS, DET, EMB)
#: The head task (``mtmnv3.heads.HEAD_TASKS``) of each role.
ROLE_TASKS: dict[str, str] = {CLS: CLASSIFICATION, DET: DETECTION, EMB: EMBEDDING}
#: Frame modes: ``full`` keyframe (det + emb, association by embedding and IoU),
#: ``det`` detection only (IoU association), ``motion`` Kalman prediction only,
#: ``skip`` nothing at all (the frame is dropped).
MODES: tuple[str, ...] = ("full", "det", "motion", "skip")
TRACK_UNIT = "track"
MOTION_UNIT = "motion"
OVERHEAD_UNIT = "overhead"
#: Tasks a task needs in the same frame (embeddings are read at detections).
TASK_REQUIRES: dict[str, tuple[str, ...]] = {CLS: (), DET: (), EMB: (DET,)}


def stage_unit(stage: int, resolution: int) -> str:
    """Cost-unit name of trunk stage ``stage`` at input size ``resolution``."""
    return f"stage{stage}@{resolution}"


def head_unit(head: str, resolution: int) -> str:
    """Cost-unit name of head ``head`` at input size ``resolution``."""
    return f"{head}@{resolution}"


def split_unit(unit: str) -> tuple[str, int | None]:
    """``'stage2@320'`` -> ``('stage2', 320)``; ``'track'`` -> ``('track', None)``."""
    name, sep, res = unit.partition("@")
    if not sep:
        return unit, None
    if not res.isdigit() or int(res) <= 0:
        raise ValueError(f"unit {unit!r} must look like 'name@<positive int resolution>'")
    return name, int(res)


def _canonical_heads(heads: Iterable[str], arg: str = "heads") -> tuple[str, ...]:
    if isinstance(heads, str):
        raise ValueError(f"{arg} must be a sequence of head names, got the string {heads!r}")
    heads = tuple(heads)
    unknown = [h for h in heads if h not in TASKS]
    if unknown:
        raise ValueError(f"{arg} names unknown head(s) {unknown}; expected names from {TASKS}")
    if len(set(heads)) != len(heads):
        raise ValueError(f"{arg} lists a head twice: {list(heads)}")
    return tuple(t for t in TASKS if t in heads)


def _mode_for(heads: Sequence[str]) -> str:
    if EMB in heads:
        return "full"
    if DET in heads:
        return "det"
    return "motion"


@dataclass(frozen=True)
class ModelLayout:
    """How deep into the trunk each head reaches: enough to build and check plans.

    Attributes:
        num_stages: number of trunk stages (``len(trunk.feature_info)``).
        head_depth: per available head, how many stages must run for it
            (its deepest tap + 1, the neck's taps for heads that read the neck).
            Heads missing here are not available and are never planned.
        head_names: per role in ``head_depth``, the model's name of that head
            (default: the role itself); frame runners get these names.
    """

    num_stages: int
    head_depth: Mapping[str, int]
    head_names: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_stages, bool) or not isinstance(self.num_stages, int) or self.num_stages < 1:
            raise ValueError(f"num_stages must be an int >= 1, got {self.num_stages!r}")
        if not isinstance(self.head_depth, Mapping) or not self.head_depth:
            raise ValueError(
                f"head_depth must be a non-empty dict head -> stages needed, got {self.head_depth!r}"
            )
        _canonical_heads(self.head_depth, "head_depth")
        for head, depth in self.head_depth.items():
            if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= self.num_stages:
                raise ValueError(
                    f"head_depth[{head!r}] must be an int in 1..{self.num_stages} (stages needed), got {depth!r}"
                )
        if EMB in self.head_depth and DET not in self.head_depth:
            raise ValueError("head_depth has 'emb' without 'det'; embeddings are read at detections")
        object.__setattr__(self, "head_depth", {t: self.head_depth[t] for t in TASKS if t in self.head_depth})
        names = {t: t for t in self.head_depth} if self.head_names is None else dict(self.head_names)
        if set(names) != set(self.head_depth) or len(set(names.values())) != len(names):
            raise ValueError(
                f"head_names must map each role of head_depth {list(self.head_depth)} to a distinct "
                f"model head name, got {self.head_names!r}"
            )
        object.__setattr__(self, "head_names", {t: names[t] for t in self.head_depth})

    @classmethod
    def single_stage(cls, heads: Sequence[str] = TASKS) -> ModelLayout:
        """A layout that treats the whole trunk as one stage (no stage plan measured)."""
        return cls(1, {h: 1 for h in _canonical_heads(heads)})

    @classmethod
    def from_model(cls, model: Any, task_heads: Mapping[str, str] | None = None) -> ModelLayout:
        """Read the layout off a ``MultiTaskPerceptor`` (duck-typed).

        Args:
            model: has ``trunk.num_stages``, ``heads`` (name -> head declaring a
                ``task``) and ``required_taps(names)``.
            task_heads: role -> model head name; default: each role's head found
                by the task it declares (:func:`mtmnv3.heads.heads_by_task`).

        Raises:
            ValueError: two heads declare the same task, or ``task_heads`` names
                an unknown role or head.
        """
        if task_heads is None:
            by_task = heads_by_task(model.heads)
            task_heads = {role: by_task[task] for role, task in ROLE_TASKS.items() if task in by_task}
        unknown = [f"{role}->{name}" for role, name in task_heads.items() if name not in model.heads]
        if unknown:
            raise ValueError(
                f"task_heads names heads {unknown} the model lacks; heads are {list(model.heads)}"
            )
        depth = {role: max(model.required_taps([name])) + 1 for role, name in task_heads.items()}
        return cls(int(model.trunk.num_stages), depth, dict(task_heads))

    @property
    def heads(self) -> tuple[str, ...]:
        """Available head roles in canonical order."""
        return tuple(self.head_depth)

    def model_heads(self, roles: Iterable[str]) -> tuple[str, ...]:
        """The model's head names of ``roles`` (what a frame runner is asked to run).

        Raises:
            ValueError: a role the model has no head for.
        """
        roles = tuple(roles)
        missing = [r for r in roles if r not in self.head_names]
        if missing:
            raise ValueError(f"roles {missing} have no head in this model; its heads are {self.head_names}")
        return tuple(self.head_names[r] for r in roles)

    def depth_for(self, heads: Iterable[str]) -> int:
        """Trunk stages needed to run ``heads`` (0 for none)."""
        return max((self.head_depth[h] for h in heads), default=0)

    def check(self, plan: FramePlan) -> None:
        """Raise ``ValueError`` if ``plan`` cannot run on this model."""
        missing = [h for h in plan.heads if h not in self.head_depth]
        if missing:
            raise ValueError(f"plan runs head(s) {missing} the model lacks; available heads are {self.heads}")
        if plan.depth > self.num_stages:
            raise ValueError(f"plan depth {plan.depth} exceeds the trunk's {self.num_stages} stages")
        for h in plan.heads:
            if self.head_depth[h] > plan.depth:
                raise ValueError(
                    f"head {h!r} needs {self.head_depth[h]} trunk stages but the plan runs only {plan.depth}"
                )


@dataclass(frozen=True)
class FramePlan:
    """What one frame computes.

    Attributes:
        mode: one of :data:`MODES`; must agree with ``heads`` (``full`` runs det
            and emb, ``det`` runs det without emb, ``motion`` and ``skip`` run
            neither; ``skip`` runs nothing at all).
        heads: heads that run, a subset of :data:`TASKS` (stored in canonical order).
        depth: trunk stages that run (0..num_stages); a head needing more cannot run.
        resolution: input size in pixels: the long side of the input (the
            frame runner keeps the frame's aspect, e.g. 320 -> 320x192 for 16:9).
    """

    mode: str
    heads: tuple[str, ...]
    depth: int
    resolution: int

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        heads = _canonical_heads(self.heads)
        object.__setattr__(self, "heads", heads)
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 0:
            raise ValueError(f"depth must be an int >= 0 (trunk stages to run), got {self.depth!r}")
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution <= 0:
            raise ValueError(
                f"resolution must be a positive int (input size in pixels), got {self.resolution!r}"
            )
        if heads and self.depth == 0:
            raise ValueError(f"plan runs heads {list(heads)} with depth 0; heads need trunk stages")
        if self.mode == "skip":
            if heads or self.depth:
                raise ValueError(f"mode 'skip' runs nothing, got heads {list(heads)} and depth {self.depth}")
        elif _mode_for(heads) != self.mode:
            raise ValueError(
                f"mode {self.mode!r} does not match heads {list(heads)}: 'full' runs det and emb, "
                "'det' runs det without emb, 'motion' runs neither"
            )

    @classmethod
    def for_heads(cls, heads: Iterable[str], resolution: int, layout: ModelLayout) -> FramePlan:
        """The plan that runs ``heads`` as shallow as possible; mode follows from the heads."""
        heads = _canonical_heads(heads)
        missing = [h for h in heads if h not in layout.head_depth]
        if missing:
            raise ValueError(f"heads {missing} are not available; the model has {layout.heads}")
        return cls(_mode_for(heads), heads, layout.depth_for(heads), resolution)

    @classmethod
    def skip(cls, resolution: int) -> FramePlan:
        """A dropped frame: no trunk, no heads, no tracking update."""
        return cls("skip", (), 0, resolution)

    def runs(self, task: str) -> bool:
        """Whether head ``task`` runs in this frame."""
        return task in self.heads

    def units(self) -> tuple[str, ...]:
        """The cost units this frame spends (see the module docstring)."""
        units = [stage_unit(i, self.resolution) for i in range(self.depth)]
        units += [head_unit(h, self.resolution) for h in self.heads]
        if self.mode in ("full", "det"):
            units.append(TRACK_UNIT)
        elif self.mode == "motion":
            units.append(MOTION_UNIT)
        units.append(OVERHEAD_UNIT)
        return tuple(units)

    def to_dict(self) -> dict[str, Any]:
        return dict(mode=self.mode, heads=list(self.heads), depth=self.depth, resolution=self.resolution)


@dataclass(frozen=True)
class FrameRecord:
    """One frame as planned and as it ran.

    Attributes:
        frame_index: the caller's frame index.
        plan: the plan that ran.
        budget_ms: the frame's deadline.
        predicted_ms: expected cost of the plan before it ran (estimator mean).
        predicted_high_ms: the estimator's high-quantile cost of the plan.
        measured_ms: measured wall time of the frame.
        met: ``measured_ms <= budget_ms``.
        staleness: per available task, frames since it last ran, counted at
            this frame (0 if it ran in this frame; a task that never ran counts
            from the scheduler's first frame, as if it ran just before it).
    """

    frame_index: int
    plan: FramePlan
    budget_ms: float
    predicted_ms: float
    predicted_high_ms: float
    measured_ms: float
    met: bool
    staleness: Mapping[str, int]

    @property
    def missed(self) -> bool:
        return not self.met

    def to_dict(self) -> dict[str, Any]:
        return dict(
            frame_index=self.frame_index,
            plan=self.plan.to_dict(),
            budget_ms=self.budget_ms,
            predicted_ms=round(self.predicted_ms, 4),
            predicted_high_ms=round(self.predicted_high_ms, 4),
            measured_ms=round(self.measured_ms, 4),
            met=self.met,
            staleness=dict(self.staleness),
        )


@dataclass(frozen=True)
class SchedulerState:
    """What a policy sees when it decides a frame.

    Attributes:
        frame_index: the frame being decided.
        staleness: per available task, frames since it last ran, counted at
            decision time (>= 1: a task that ran in the previous frame has 1).
        layout: the model's layout (available heads, their trunk depths).
        last_record: the previous frame's record, if any.
    """

    frame_index: int
    staleness: Mapping[str, int]
    layout: ModelLayout
    last_record: FrameRecord | None = None


@dataclass
class BudgetLog:
    """Accumulates :class:`FrameRecord` s and summarises them.

    Args:
        max_records: keep only the most recent records (for long live runs);
            ``None`` keeps all. Summaries cover the kept records.
    """

    max_records: int | None = None
    records: deque[FrameRecord] = field(init=False)

    def __post_init__(self) -> None:
        if self.max_records is not None and (
            isinstance(self.max_records, bool)
            or not isinstance(self.max_records, int)
            or self.max_records < 1
        ):
            raise ValueError(f"max_records must be None or an int >= 1, got {self.max_records!r}")
        self.records = deque(maxlen=self.max_records)

    def append(self, record: FrameRecord) -> None:
        if not isinstance(record, FrameRecord):
            raise TypeError(f"BudgetLog holds FrameRecord objects, got {type(record).__name__}")
        self.records.append(record)

    def __len__(self) -> int:
        return len(self.records)

    def summary(self, start: int = 0, stop: int | None = None) -> dict[str, Any]:
        """Summary of the kept records ``[start:stop]`` (Python slice positions).

        Returns:
            ``frames``; ``misses`` and ``miss_rate``; ``latency_ms`` with
            ``mean``, ``p50``, ``p95``, ``max`` of the measured times (linear
            interpolation between order statistics); ``mean_abs_error_ms`` of
            the prediction; ``staleness_mean`` per task (mean of the records'
            staleness); ``mode_share`` per mode (fraction of frames). Empty
            selections give ``frames=0`` and ``None`` for the statistics.
        """
        recs = list(self.records)[start:stop]
        n = len(recs)
        share = {m: (sum(r.plan.mode == m for r in recs) / n if n else None) for m in MODES}
        if not n:
            return dict(
                frames=0,
                misses=0,
                miss_rate=None,
                latency_ms=None,
                mean_abs_error_ms=None,
                staleness_mean={},
                mode_share=share,
            )
        measured = [r.measured_ms for r in recs]
        misses = sum(not r.met for r in recs)
        tasks = [t for t in TASKS if any(t in r.staleness for r in recs)]
        staleness = {}
        for t in tasks:
            values = [r.staleness[t] for r in recs if t in r.staleness]
            staleness[t] = sum(values) / len(values)
        return dict(
            frames=n,
            misses=misses,
            miss_rate=misses / n,
            latency_ms=dict(
                mean=sum(measured) / n,
                p50=quantile(measured, 0.5),
                p95=quantile(measured, 0.95),
                max=max(measured),
            ),
            mean_abs_error_ms=sum(abs(r.measured_ms - r.predicted_ms) for r in recs) / n,
            staleness_mean=staleness,
            mode_share=share,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(summary=self.summary(), records=[r.to_dict() for r in self.records])

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the summary and all kept records as JSON, atomically."""
        atomic_write_json(path, self.to_dict())
