"""Stage plans: which trunk blocks form which stage, stored as versioned JSON.

A :class:`StagePlan` groups the trunk's flat list of blocks (stem, bnecks,
last conv) into contiguous stages. The default plan cuts wherever the stride
changes; a custom plan (other cut points, e.g. from a latency-driven search)
rebuilds the trunk's stages and its ``feature_info`` follows. Plans carry
optional provenance: the device profile they were made for and the
predicted and measured per-stage latency.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from mtmnv3.core.fileio import atomic_write_json

__all__ = ["StagePlan", "PLAN_FORMAT", "PLAN_VERSION"]

PLAN_FORMAT = "mtmnv3.StagePlan"
PLAN_VERSION = 1


@dataclass(frozen=True)
class StagePlan:
    """A partition of ``num_blocks`` trunk blocks into contiguous stages.

    Attributes:
        stages: per stage, the half-open block range ``(start, end)``.
        num_blocks: how many blocks the trunk has (the plan covers all).
        name: how the plan was made, e.g. ``'stride'`` or ``'balanced-3'``.
        arch: the trunk arch the plan was made for, if any.
        device_profile: the profile of a latency table the plan came from.
        predicted_ms: predicted latency per stage, if the plan came from a table.
        measured_ms: measured latency per stage, once the plan has been run.
        placement: per stage, where it runs (e.g. ``'device'``/``'server'``).
        meta: free-form extra information (JSON-serialisable).
    """

    stages: tuple[tuple[int, int], ...]
    num_blocks: int
    name: str = "custom"
    arch: str | None = None
    device_profile: dict[str, Any] | None = None
    predicted_ms: tuple[float, ...] | None = None
    measured_ms: tuple[float, ...] | None = None
    placement: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stages = tuple((int(a), int(b)) for a, b in self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise ValueError("a stage plan needs at least one stage, got none")
        expected_start = 0
        for i, (start, end) in enumerate(stages):
            if start != expected_start or end <= start:
                raise ValueError(
                    f"stage {i} covers blocks [{start}, {end}); stages must be non-empty, "
                    f"contiguous and start at block {expected_start}: {list(stages)}"
                )
            expected_start = end
        if expected_start != self.num_blocks:
            raise ValueError(
                f"stages cover {expected_start} blocks but the trunk has {self.num_blocks}: {list(stages)}"
            )
        for attr in ("predicted_ms", "measured_ms", "placement"):
            value = getattr(self, attr)
            if value is not None:
                value = tuple(value)
                object.__setattr__(self, attr, value)
                if len(value) != len(stages):
                    raise ValueError(f"{attr} has {len(value)} entries for {len(stages)} stages: {value}")

    # ---- construction -------------------------------------------------
    @classmethod
    def from_cuts(cls, num_blocks: int, cuts: Sequence[int], **kwargs: Any) -> StagePlan:
        """Build a plan from the block indices where a new stage starts.

        ``cuts=[2, 4]`` with 6 blocks gives stages ``[0,2) [2,4) [4,6)``.
        """
        cuts = sorted(set(int(c) for c in cuts))
        if any(c <= 0 or c >= num_blocks for c in cuts):
            raise ValueError(f"cut points must lie in 1..{num_blocks - 1}, got {cuts}")
        bounds = [0, *cuts, num_blocks]
        return cls(tuple(zip(bounds[:-1], bounds[1:])), num_blocks, **kwargs)

    @classmethod
    def from_strides(cls, block_strides: Sequence[int], **kwargs: Any) -> StagePlan:
        """The default plan: a new stage starts at every block with stride > 1
        (the first block, the stem, always starts stage 0)."""
        cuts = [i for i, s in enumerate(block_strides) if i > 0 and s > 1]
        kwargs.setdefault("name", "stride")
        return cls.from_cuts(len(block_strides), cuts, **kwargs)

    @property
    def cuts(self) -> list[int]:
        """Block indices where stages 1.. start."""
        return [start for start, _ in self.stages[1:]]

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    # ---- serialisation --------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [list(s) for s in self.stages]
        for attr in ("predicted_ms", "measured_ms", "placement"):
            if d[attr] is not None:
                d[attr] = list(d[attr])
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StagePlan:
        if not isinstance(d, dict):
            raise TypeError(f"a stage plan must be a dict, got {type(d).__name__}")
        d = dict(d)
        fmt = d.pop("format", PLAN_FORMAT)
        version = d.pop("version", None)
        if fmt != PLAN_FORMAT:
            raise ValueError(f"not a stage plan: format is {fmt!r}, expected {PLAN_FORMAT!r}")
        if version != PLAN_VERSION:
            raise ValueError(
                f"unsupported stage plan version {version!r}; this mtmnv3 reads version {PLAN_VERSION}"
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown stage plan fields {unknown}; expected a subset of {sorted(known)}")
        d["stages"] = tuple(tuple(s) for s in d["stages"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StagePlan:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> StagePlan:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"stage plan file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                return cls.from_dict(json.load(f))
            except json.JSONDecodeError as e:
                raise ValueError(f"stage plan {path} is not valid JSON: {e}") from e
