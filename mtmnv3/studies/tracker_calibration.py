"""Score thresholds of the tracker, tuned to one detector on cached detections.

A tracker's ``high_thr`` (which detections take part in the first association)
and ``new_track_thr`` (which start tracks) are tied to its detector's score
scale. A model trained differently (robust training, fine-tuning) moves its
scores, and thresholds tuned for another model then let in false positives or
drop true objects. :func:`calibrate_thresholds` tracks the same cached
detections (:func:`~mtmnv3.apis.inference.detect_mot_sequences`) with every
``(high_thr, new_track_thr = high_thr + margin)`` of a grid and ranks the
settings by one metric; ``mtmnv3 calibrate-tracker`` is its command line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CALIBRATION_OBJECTIVES", "calibrate_thresholds"]

#: Metrics a calibration may maximise.
CALIBRATION_OBJECTIVES = ("MOTA", "IDF1", "HOTA")


def _score(row: Mapping[str, float], objective: str) -> float:
    value = row[objective]
    return -math.inf if math.isnan(value) else value


def calibrate_thresholds(
    detections: Mapping[str, Any],
    work_dir: str | os.PathLike,
    tracker_cfg: Mapping[str, Any] | None = None,
    high_thrs: Sequence[float] = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
    margins: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
    objective: str = "MOTA",
) -> tuple[dict[str, float], list[dict[str, float]], list[float]]:
    """Track ``detections`` with ``tracker_cfg`` and with every threshold pair of a grid.

    Args:
        detections: ``{sequence: SequenceDetections}`` from
            :func:`~mtmnv3.apis.inference.detect_mot_sequences`.
        work_dir: folder for the result files (one sub-folder per setting).
        tracker_cfg: the tracker settings to start from; only ``high_thr`` and
            ``new_track_thr`` change.
        high_thrs: ``high_thr`` values; those below the config's ``low_thr``
            are skipped (the tracker rejects them).
        margins: ``new_track_thr - high_thr`` values (``new_track_thr`` is capped at 1).
        objective: ``'MOTA'``, ``'IDF1'`` or ``'HOTA'`` (HOTA is the slowest to score).

    Returns:
        ``(config_row, grid, skipped)``: the metrics of ``tracker_cfg``'s own
        setting, every grid setting's ``{'high_thr', 'new_track_thr', metric:
        value}`` sorted best first (ties: higher IDF1, then fewer ID
        switches), and the skipped ``high_thrs``.

    Raises:
        ValueError: an unknown objective, or no ``high_thr`` at or above ``low_thr``.
    """
    from pathlib import Path

    from mtmnv3.apis.inference import track_detections

    if objective not in CALIBRATION_OBJECTIVES:
        raise ValueError(f"objective must be one of {CALIBRATION_OBJECTIVES}, got {objective!r}")
    base = {k: v for k, v in dict(tracker_cfg or {}).items() if k != "type"}
    low = float(base.get("low_thr", 0.1))
    work_dir = Path(work_dir)

    def run(cfg: dict[str, Any], tag: str) -> dict[str, float]:
        metrics = track_detections(detections, work_dir / tag, cfg, hota=objective == "HOTA")
        return dict(
            high_thr=float(cfg.get("high_thr", 0.5)),
            new_track_thr=float(cfg.get("new_track_thr", 0.6)),
            **{k: float(v) for k, v in metrics.items()},
        )

    config_row = run(base, "config")
    skipped = [float(h) for h in high_thrs if h < low]
    pairs = sorted(
        {(float(h), min(1.0, round(float(h) + float(m), 6))) for h in high_thrs if h >= low for m in margins}
    )
    if not pairs:
        raise ValueError(f"no high_thr value is >= the tracker's low_thr ({low:g}), got {list(high_thrs)}")
    grid = [run({**base, "high_thr": h, "new_track_thr": n}, f"h{h:g}_n{n:g}") for h, n in pairs]
    grid.sort(key=lambda r: (-_score(r, objective), -r["IDF1"], r["IDSW"]))
    return config_row, grid, skipped
