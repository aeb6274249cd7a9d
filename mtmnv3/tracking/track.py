"""Tracks and the checked detections the tracker associates: state, box, smoothed embedding, results."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np

from mtmnv3.tracking.kalman import xyah_to_xyxy, xywh_to_xyxy
from mtmnv3.tracking.matching import EMBEDDING_EPS

__all__ = [
    "Detections",
    "Track",
    "TrackResult",
    "TrackState",
    "check_int",
    "check_number",
    "smooth_embedding",
    "to_numpy",
]


class TrackState(IntEnum):
    """Life cycle of a track."""

    #: Born from a detection, not yet confirmed (not reported; removed on its first miss).
    TENTATIVE = 0
    #: Confirmed and matched in the latest frame with detections (reported).
    TRACKED = 1
    #: Confirmed but unmatched; kept for ``max_time_lost`` frames so it can be recovered.
    LOST = 2
    #: Finished; never reported again, its id is never reused.
    REMOVED = 3


@dataclass(eq=False)
class Track:
    """One tracked object.

    Attributes:
        track_id: Identity, >= 1, unique within a video.
        mean: (8,) Kalman state ``cx, cy, a, h`` and their velocities.
        covariance: (8, 8) Kalman state covariance.
        score: Score of the latest matched detection.
        label: Class of the latest matched detection.
        embedding: (D,) L2-normalised exponential moving average of the
            matched detections' embeddings, or ``None`` before the first one.
        state: Life-cycle state.
        start_frame: Frame of birth.
        end_frame: Latest frame with a matched detection.
        hits: Number of matched detections, birth included.
    """

    track_id: int
    mean: np.ndarray
    covariance: np.ndarray
    score: float
    label: int
    embedding: np.ndarray | None
    state: TrackState
    start_frame: int
    end_frame: int
    hits: int = 1
    box_space: str = "xyah"  # the state's box space: "xyah" or "xywh" (the tracker's Kalman filter)

    @property
    def bbox(self) -> np.ndarray:
        """(4,) current box estimate ``x1, y1, x2, y2`` from the Kalman mean."""
        to_xyxy = xywh_to_xyxy if self.box_space == "xywh" else xyah_to_xyxy
        return to_xyxy(self.mean[None])[0]


class TrackResult(NamedTuple):
    """The reported tracks of one frame, sorted by id.

    Attributes:
        ids: (K,) int64 track ids.
        bboxes: (K, 4) float64 ``x1, y1, x2, y2`` Kalman estimates.
        scores: (K,) float64 scores of the latest matched detections.
        labels: (K,) int64 classes.
    """

    ids: np.ndarray
    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Detections:
    """Validated detections of one frame (embeddings L2-normalised, or ``None``)."""

    bboxes: np.ndarray
    measurements: np.ndarray  # the Kalman filter's measurements of ``bboxes`` (cx, cy, a, h or cx, cy, w, h)
    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray) -> Detections:
        """The detections at ``index`` (an index array or a boolean mask)."""
        return Detections(
            self.bboxes[index],
            self.measurements[index],
            self.scores[index],
            self.labels[index],
            None if self.embeddings is None else self.embeddings[index],
        )


def to_numpy(value: Any, name: str, dtype: type) -> np.ndarray:
    """``value`` (array-like or a torch tensor on any device) as a numpy array of ``dtype``."""
    if hasattr(value, "detach"):  # torch.Tensor, on any device
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value, dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from None


def check_number(name: str, value: Any, low: float, high: float, low_open: bool = False) -> float:
    """``value`` as a float when it is a finite number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int when it is an integer >= ``low``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def smooth_embedding(old: np.ndarray | None, new: np.ndarray, momentum: float) -> np.ndarray:
    """FairMOT's ``smooth_feat``: ``momentum * old + (1 - momentum) * new``, L2-normalised."""
    if old is None:
        return new.copy()
    mixed = momentum * old + (1.0 - momentum) * new
    return mixed / max(float(np.linalg.norm(mixed)), EMBEDDING_EPS)
