"""Run a tracker over a sequence of per-frame detections; write MOTChallenge results.

Result rows are ``frame, id, bb_left, bb_top, bb_width, bb_height, score,
-1, -1, -1`` with MOTChallenge's 1-based box corner (a 0-based ``x1`` is
written as ``x1 + 1``, as :func:`mtmnv3.data.mot.xyxy_to_mot` does for
``gt.txt``), so the files compare directly with MOTChallenge ground truth.
Files are written atomically by :func:`mtmnv3.evaluation.write_mot_txt`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from mtmnv3.data.mot import xyxy_to_mot
from mtmnv3.data.mot_io import MOT_RESULT_COLUMNS, MOT_UNUSED, write_mot_txt
from mtmnv3.tracking.tracker import EmbeddingTracker, TrackResult

__all__ = ["FRAME_KEYS", "run_tracker", "tracks_to_mot_rows"]

#: Keys of one frame's detections for :func:`run_tracker`.
FRAME_KEYS = ("frame_id", "bboxes", "scores", "labels", "embeddings")


def tracks_to_mot_rows(frame_id: int, tracks: TrackResult) -> np.ndarray:
    """MOTChallenge result rows of one frame's tracks.

    Args:
        frame_id: 1-based frame number.
        tracks: The tracker's output for that frame (boxes 0-based ``x1, y1, x2, y2``).

    Returns:
        (K, 10) float64 rows ``frame, id, left, top, width, height, score, -1, -1, -1``.
    """
    k = len(tracks.ids)
    rows = np.full((k, MOT_RESULT_COLUMNS), float(MOT_UNUSED))
    rows[:, 0] = frame_id
    rows[:, 1] = tracks.ids
    rows[:, 2:6] = xyxy_to_mot(tracks.bboxes)
    rows[:, 6] = tracks.scores
    return rows


def _frame_id(frame: Mapping[str, Any], index: int) -> int:
    if "frame_id" not in frame:
        raise ValueError(f"frames[{index}] needs a 'frame_id', got keys {sorted(frame)}")
    fid = frame["frame_id"]
    if not isinstance(fid, numbers.Integral) or isinstance(fid, bool) or fid < 1:
        raise ValueError(
            f"frames[{index}]['frame_id'] must be an integer >= 1 (MOTChallenge frames), got {fid!r}"
        )
    return int(fid)


def run_tracker(
    tracker: EmbeddingTracker,
    frames: Iterable[Mapping[str, Any]],
    out_file: str | os.PathLike | None = None,
    reset: bool = True,
) -> np.ndarray:
    """Track one video and collect (and optionally write) MOTChallenge result rows.

    Args:
        tracker: The tracker; reset first unless ``reset=False``.
        frames: Per frame, in order, a mapping with ``frame_id`` (int >= 1,
            increasing) and ``bboxes`` (N, 4) xyxy, ``scores`` (N,),
            optional ``labels`` (N,) and ``embeddings`` (N, D). A frame
            without ``bboxes`` (or with ``bboxes=None``) is one where the
            detector did not run: the tracker only predicts, and the
            predicted boxes are reported.
        out_file: When given, the rows are written there atomically.
        reset: Call ``tracker.reset()`` before the first frame.

    Returns:
        (R, 10) float64 result rows, in frame order.

    Raises:
        TypeError: If a frame is not a mapping.
        ValueError: On an unknown key, a missing ``frame_id`` or ``scores``,
            or bad detections (see :meth:`EmbeddingTracker.update`).
    """
    if reset:
        tracker.reset()
    rows = [np.zeros((0, MOT_RESULT_COLUMNS))]
    for index, frame in enumerate(frames):
        if not isinstance(frame, Mapping):
            raise TypeError(
                f"frames[{index}] must be a mapping with keys {FRAME_KEYS}, got {type(frame).__name__}"
            )
        unknown = sorted(set(frame) - set(FRAME_KEYS))
        if unknown:
            raise ValueError(f"frames[{index}] has unknown key(s) {unknown}; expected keys {FRAME_KEYS}")
        fid = _frame_id(frame, index)
        if frame.get("bboxes") is None:
            extra = [k for k in ("scores", "labels", "embeddings") if frame.get(k) is not None]
            if extra:
                raise ValueError(f"frames[{index}] has {extra} but no 'bboxes'")
            result = tracker.predict_only(fid)
        else:
            if frame.get("scores") is None:
                raise ValueError(f"frames[{index}] has 'bboxes' but no 'scores'")
            result = tracker.update(
                frame["bboxes"], frame["scores"], frame.get("labels"), frame.get("embeddings"), fid
            )
        rows.append(tracks_to_mot_rows(fid, result))
    out = np.concatenate(rows)
    if out_file is not None:
        write_mot_txt(out_file, out)
    return out
