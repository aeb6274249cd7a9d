"""Association costs and thresholded linear assignment for tracking-by-detection.

Costs are distances (lower is better): ``1 - IoU`` between boxes, cosine
distance between appearance embeddings (FairMOT, Zhang et al., IJCV 2021),
their convex combination, and a Kalman motion gate that forbids (sets to
``inf``) pairs whose squared Mahalanobis distance exceeds a chi-square
quantile (DeepSORT, ByteTrack). :func:`linear_assignment` solves the
thresholded assignment problem that ByteTrack (Zhang et al., ECCV 2022)
solves with ``lap.lapjv(..., cost_limit=thresh)``, using SciPy.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from mtmnv3.tracking.kalman import CHI2INV95, GATE_DOF, KalmanFilterXYAH

__all__ = [
    "embedding_distance",
    "fuse_embedding_iou",
    "gate_cost",
    "iou_distance",
    "iou_matrix",
    "linear_assignment",
]

#: Norm below which an embedding counts as zero (it then has cosine distance 1 to everything).
EMBEDDING_EPS = 1e-12
#: Range of the cosine distance ``1 - cos``.
MAX_COSINE_DISTANCE = 2.0


def _boxes(boxes: np.ndarray, name: str) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (x1, y1, x2, y2), got {boxes.shape}")
    return boxes


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union of corner boxes.

    Args:
        boxes_a: (N, 4) ``x1, y1, x2, y2``.
        boxes_b: (M, 4) ``x1, y1, x2, y2``.

    Returns:
        (N, M) float64 IoU in [0, 1]; 0 where both boxes have zero area.
    """
    a, b = _boxes(boxes_a, "boxes_a"), _boxes(boxes_b, "boxes_b")
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_distance(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """``1 - IoU`` between every box of ``boxes_a`` (N, 4) and of ``boxes_b`` (M, 4); shape (N, M)."""
    return 1.0 - iou_matrix(boxes_a, boxes_b)


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norm, EMBEDDING_EPS)


def embedding_distance(embeddings_a: np.ndarray, embeddings_b: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos`` between appearance embeddings (FairMOT's re-ID cost).

    Inputs are L2-normalised here, so raw head outputs work.

    Args:
        embeddings_a: (N, D) track embeddings.
        embeddings_b: (M, D) detection embeddings.

    Returns:
        (N, M) float64 distances in [0, 2].

    Raises:
        ValueError: If an input is not 2-D or the widths differ.
    """
    a = np.asarray(embeddings_a, np.float64)
    b = np.asarray(embeddings_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings must have shapes (N, D) and (M, D) with the same D, got {a.shape} and {b.shape}"
        )
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.clip(1.0 - _normalise(a) @ _normalise(b).T, 0.0, MAX_COSINE_DISTANCE)


def fuse_embedding_iou(emb_cost: np.ndarray, iou_cost: np.ndarray, emb_weight: float) -> np.ndarray:
    """Convex combination ``emb_weight * emb_cost + (1 - emb_weight) * iou_cost``.

    Args:
        emb_cost: (N, M) embedding distances.
        iou_cost: (N, M) IoU distances.
        emb_weight: Weight of the embedding cost in [0, 1]; 0 gives the IoU cost.

    Returns:
        (N, M) fused cost; ``inf`` entries of either input stay ``inf``.

    Raises:
        ValueError: If the shapes differ or ``emb_weight`` is outside [0, 1].
    """
    emb_cost, iou_cost = np.asarray(emb_cost, np.float64), np.asarray(iou_cost, np.float64)
    if emb_cost.shape != iou_cost.shape:
        raise ValueError(
            f"emb_cost and iou_cost must have the same shape, got {emb_cost.shape} and {iou_cost.shape}"
        )
    if not 0.0 <= emb_weight <= 1.0:
        raise ValueError(f"emb_weight must be in [0, 1], got {emb_weight!r}")
    if emb_weight == 0.0:
        return iou_cost.copy()
    if emb_weight == 1.0:
        return emb_cost.copy()
    return emb_weight * emb_cost + (1.0 - emb_weight) * iou_cost


def fuse_min_gated(
    emb_cost: np.ndarray, iou_cost: np.ndarray, proximity_thr: float = 0.5, appearance_thr: float = 0.25
) -> np.ndarray:
    """BoT-SORT's fusion (Aharon et al. 2022): ``min(1 - IoU, (1 - cos) / 2)``.

    The halved embedding distance only counts for pairs that are near
    (``1 - IoU <= proximity_thr``) and look alike (halved distance <=
    ``appearance_thr``); elsewhere it is 1. Appearance can so rescue a match
    that IoU alone is unsure about, but never pull a track to a far box.

    Returns:
        (N, M) fused cost; ``inf`` entries of ``iou_cost`` stay ``inf``.
    """
    emb_cost, iou_cost = np.asarray(emb_cost, np.float64), np.asarray(iou_cost, np.float64)
    if emb_cost.shape != iou_cost.shape:
        raise ValueError(
            f"emb_cost and iou_cost must have the same shape, got {emb_cost.shape} and {iou_cost.shape}"
        )
    half = emb_cost / 2.0
    half[(half > appearance_thr) | (iou_cost > proximity_thr)] = 1.0
    return np.minimum(iou_cost, half)


def gate_cost(
    cost: np.ndarray,
    kf: KalmanFilterXYAH,
    mean: np.ndarray,
    covariance: np.ndarray,
    measurements: np.ndarray,
    gate_thr: float = CHI2INV95[GATE_DOF],
    only_position: bool = False,
) -> np.ndarray:
    """Set ``cost[i, j] = inf`` where track i cannot have produced measurement j.

    The test is the squared Mahalanobis distance of
    :meth:`KalmanFilterXYAH.gating_distance` against ``gate_thr`` (the 0.95
    chi-square quantile for 4 degrees of freedom by default), as in DeepSORT's
    ``gate_cost_matrix`` and FairMOT's ``fuse_motion``.

    Args:
        cost: (N, M) cost matrix.
        kf: The filter that owns the states.
        mean: (N, 8) track states.
        covariance: (N, 8, 8) track covariances.
        measurements: (M, 4) detections as ``cx, cy, a, h``.
        gate_thr: Largest admissible squared distance.
        only_position: Gate on the box centre only (use ``CHI2INV95[2]`` then).

    Returns:
        A gated copy of ``cost``.
    """
    cost = np.array(cost, np.float64)
    if cost.shape != (len(mean), len(measurements)):
        raise ValueError(
            f"cost must have shape (N, M) = ({len(mean)}, {len(measurements)}) (tracks, measurements), "
            f"got {cost.shape}"
        )
    if cost.size:
        cost[kf.gating_distance(mean, covariance, measurements, only_position) > gate_thr] = np.inf
    return cost


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment in which no pair may cost more than ``thresh``.

    Solves ``min sum over matched (cost_ij - thresh)``: a pair is matched only
    when that lowers the total, which is the problem ByteTrack solves with
    ``lapjv(cost, extend_cost=True, cost_limit=thresh)``. Entries above
    ``thresh`` (including ``inf``) are never matched.

    Args:
        cost: (N, M) cost matrix; ``inf`` marks forbidden pairs. N or M may be 0.
        thresh: Largest cost of a matched pair.

    Returns:
        ``matches`` (K, 2) int64 rows ``(row, col)`` sorted by row,
        ``unmatched_rows`` (N - K,) and ``unmatched_cols`` (M - K,), int64, ascending.

    Raises:
        ValueError: If ``cost`` is not 2-D or holds NaN, or ``thresh`` is not finite.
    """
    cost = np.asarray(cost, np.float64)
    if cost.ndim != 2:
        raise ValueError(f"cost must be a 2-D (N, M) matrix, got shape {cost.shape}")
    if not np.isfinite(thresh):
        raise ValueError(f"thresh must be a finite number, got {thresh!r}")
    if np.isnan(cost).any():
        raise ValueError("cost must not contain NaN (use inf for forbidden pairs)")
    n_rows, n_cols = cost.shape
    if cost.size == 0:
        return (
            np.zeros((0, 2), np.int64),
            np.arange(n_rows, dtype=np.int64),
            np.arange(n_cols, dtype=np.int64),
        )
    valid = cost <= thresh
    # Pairs above the threshold get gain 0: assigning them changes nothing and they are dropped below.
    gain = np.where(valid, cost - thresh, 0.0)
    rows, cols = linear_sum_assignment(gain)
    keep = valid[rows, cols]
    matches = np.stack([rows[keep], cols[keep]], axis=1).astype(np.int64)
    row_free = np.ones(n_rows, bool)
    row_free[matches[:, 0]] = False
    col_free = np.ones(n_cols, bool)
    col_free[matches[:, 1]] = False
    return matches, np.flatnonzero(row_free).astype(np.int64), np.flatnonzero(col_free).astype(np.int64)
