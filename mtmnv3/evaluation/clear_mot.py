"""CLEAR MOT and identity metrics in NumPy: motmetrics' numbers without its event tables.

motmetrics records every pairing, match and miss of every frame as a row of a
pandas DataFrame and derives the counts from those tables afterwards, a cost
the shift suite pays again for every condition (``benchmarks/mot_metrics_speed.py``
times both backends). This module counts the same
things while it walks the frames, with the same rules, in the same order:

* per frame, a ground-truth object and a result may pair when their distance
  ``1 - IoU`` is finite (the caller puts NaN where IoU is below the match
  threshold);
* an object keeps the result it was last matched to (in any earlier frame)
  when that result is present and still pairs with it; objects are visited in
  the frame's order and a result serves one object;
* the remaining objects and results are assigned by minimum total distance
  (``scipy.optimize.linear_sum_assignment``, with non-pairs replaced by
  motmetrics' large constant, so the most pairs are made first); a match to a
  result other than the object's previous one is an ID switch;
* unmatched objects are misses (FN), unmatched results false positives (FP);
  MOTA = 1 - (FN + FP + IDSW) / objects, MOTP = mean distance of the matches;
* identity metrics: the one-to-one map of object ids to result ids that
  maximises the number of frames in which the two pair (IDTP), over the whole
  sequence; IDF1 = 2 IDTP / (objects + results).

``tests/test_evaluation_mot.py`` checks every count against motmetrics on
random tracking results with switches, fragments, false positives and misses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["MOTCounts", "clear_mot_counts", "solve_with_missing_edges"]


@dataclass
class MOTCounts:
    """Counts of one or more sequences (they add up over sequences)."""

    num_objects: int = 0
    num_predictions: int = 0
    num_matches: int = 0
    num_switches: int = 0
    num_false_positives: int = 0
    num_misses: int = 0
    total_distance: float = 0.0
    idtp: int = 0

    def __add__(self, other: MOTCounts) -> MOTCounts:
        return MOTCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def num_detections(self) -> int:
        """Matched pairs, switches included (motmetrics' ``num_detections``)."""
        return self.num_matches + self.num_switches

    def summary(self) -> dict[str, float | int]:
        """``MOTA``, ``IDF1``, ``MOTP`` (mean distance, as motmetrics), ``IDSW``, ``FP``, ``FN``."""
        nan = float("nan")
        errors = self.num_misses + self.num_false_positives + self.num_switches
        id_total = self.num_objects + self.num_predictions
        return {
            "MOTA": 1.0 - errors / self.num_objects if self.num_objects else nan,
            "IDF1": 2.0 * self.idtp / id_total if id_total else nan,
            "MOTP": float(self.total_distance) / self.num_detections if self.num_detections else nan,
            "IDSW": self.num_switches,
            "FP": self.num_false_positives,
            "FN": self.num_misses,
        }


def solve_with_missing_edges(costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment where NaN or inf marks pairs that may not be made.

    As motmetrics' scipy solver: a non-pair costs more than any set of real
    pairs can, so the solution has the most real pairs, then the least cost;
    the pairs returned are the real ones.
    """
    if costs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    valid = np.isfinite(costs)
    if not valid.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if valid.all():
        filled = costs
    else:
        c = np.abs(costs[valid]).max() + 1
        filled = np.where(valid, costs, 2 * min(costs.shape) * c + 1)
    rows, cols = linear_sum_assignment(filled)
    keep = valid[rows, cols]
    return rows[keep], cols[keep]


def clear_mot_counts(frames: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> MOTCounts:
    """Count one sequence's CLEAR MOT events and its identity true positives.

    Args:
        frames: In frame order, ``(object_ids (N,), result_ids (M,),
            distances (N, M))`` with NaN where a pair may not be made; ids
            unique within a frame.

    Returns:
        The sequence's :class:`MOTCounts`.
    """
    counts = MOTCounts()
    last_match: dict[int, int] = {}  # object id -> result id it was last matched to
    pair_o: list[np.ndarray] = []  # every pairable (object, result) of every frame
    pair_h: list[np.ndarray] = []
    for oids, hids, dists in frames:
        oids = np.asarray(oids, np.int64)
        hids = np.asarray(hids, np.int64)
        no, nh = len(oids), len(hids)
        counts.num_objects += no
        counts.num_predictions += nh
        if no == 0 or nh == 0:
            counts.num_misses += no
            counts.num_false_positives += nh
            continue
        dists = np.array(dists, np.float64).reshape(no, nh)
        finite = np.isfinite(dists)
        rows, cols = np.nonzero(finite)
        pair_o.append(oids[rows])
        pair_h.append(hids[cols])
        o_done = np.zeros(no, bool)
        h_done = np.zeros(nh, bool)
        # 1. Keep the previous correspondences that still pair.
        if last_match:
            column = {int(h): j for j, h in enumerate(hids)}
            for i, o in enumerate(oids.tolist()):
                j = column.get(last_match[o]) if o in last_match else None
                if j is None or h_done[j] or not finite[i, j]:
                    continue
                o_done[i] = h_done[j] = True
                counts.num_matches += 1
                counts.total_distance += dists[i, j]
        # 2. Assign the rest by minimum total distance.
        rest = dists.copy()
        rest[o_done, :] = np.nan
        rest[:, h_done] = np.nan
        for i, j in zip(*solve_with_missing_edges(rest)):
            o, h = int(oids[i]), int(hids[j])
            if o in last_match and last_match[o] != h:
                counts.num_switches += 1
            else:
                counts.num_matches += 1
            counts.total_distance += dists[i, j]
            o_done[i] = h_done[j] = True
            last_match[o] = h
        # 3. / 4. What is left is missed or false.
        counts.num_misses += int((~o_done).sum())
        counts.num_false_positives += int((~h_done).sum())
    counts.idtp = _max_id_overlap(pair_o, pair_h)
    return counts


def _max_id_overlap(pair_o: list[np.ndarray], pair_h: list[np.ndarray]) -> int:
    """The largest number of pairable frames a one-to-one object-result id map can collect."""
    if not pair_o:
        return 0
    o = np.concatenate(pair_o)
    h = np.concatenate(pair_h)
    if len(o) == 0:
        return 0
    o_unique, o_index = np.unique(o, return_inverse=True)
    h_unique, h_index = np.unique(h, return_inverse=True)
    overlap = np.zeros((len(o_unique), len(h_unique)), np.int64)
    np.add.at(overlap, (o_index, h_index), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    return int(overlap[rows, cols].sum())
