"""How well object embeddings tell apart the objects a tracker must tell apart.

Tracking metrics (IDF1, ID switches) mix the embeddings' quality with the
detector, the motion model and the association rules. :func:`within_video_reid`
measures the embeddings alone, on ground-truth objects, against the
distractors association actually faces: the *other objects of the same
video*.

* ``auc``: the probability that a same-identity pair (two frames of one
  video) is more similar than a different-identity pair of the same video
  (ROC AUC of the cosine similarity; ties count one half). 0.5 is chance.
* ``rank1@g``: for every object seen in frame ``t`` and again in frame
  ``t + g`` of its video, whether its most similar object among those of
  frame ``t`` is itself: re-identification after ``g`` frames among the
  objects that were there (``g = 1``: frame to frame; larger gaps: recovering
  a lost track). Queries whose earlier frame holds only one object are
  skipped (nothing to confuse).
* ``same_cos`` / ``diff_cos``: mean cosine similarity of the two kinds of pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = ["within_video_reid"]


def _as_array(value: Any, name: str, dtype: type, ndim: int) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return arr


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """ROC AUC of scores ``pos`` (positives) against ``neg`` (Mann-Whitney U, ties one half)."""
    ranks = rankdata(np.concatenate([pos, neg]))  # average ranks over ties, 1-based
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def within_video_reid(
    embeddings: Any, ids: Any, videos: Any, frames: Any, gaps: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """Re-identification quality of object embeddings within videos.

    Args:
        embeddings: ``(M, D)`` embeddings of ground-truth objects (any scale;
            L2-normalised here).
        ids: ``(M,)`` identity of each object (compared within a video only).
        videos: ``(M,)`` video of each object.
        frames: ``(M,)`` frame index of each object.
        gaps: frame gaps for ``rank1@g`` (positive integers).

    Returns:
        ``{'auc', 'same_cos', 'diff_cos', 'rank1@g' (one per gap), 'pairs_same',
        'pairs_diff', 'queries@g'}``; a value is NaN where no pair or query exists.

    Raises:
        ValueError: on mismatched lengths, non-finite embeddings, a non-positive
            gap, or one identity twice in one frame of a video.
    """
    emb = _as_array(embeddings, "embeddings", np.float64, 2)
    ids_a = _as_array(ids, "ids", np.int64, 1)
    vids = _as_array(videos, "videos", np.int64, 1)
    frms = _as_array(frames, "frames", np.int64, 1)
    m = len(emb)
    if not (len(ids_a) == len(vids) == len(frms) == m):
        raise ValueError(
            f"embeddings, ids, videos and frames must have one row per object, got "
            f"{m}, {len(ids_a)}, {len(vids)}, {len(frms)}"
        )
    if not np.all(np.isfinite(emb)):
        raise ValueError("embeddings must be finite, got NaN or inf")
    gaps = tuple(int(g) for g in gaps)
    if any(g < 1 for g in gaps):
        raise ValueError(f"gaps must be positive integers, got {gaps}")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    pos_sims, neg_sims = [], []
    hits = {g: 0 for g in gaps}
    queries = {g: 0 for g in gaps}
    for v in np.unique(vids):
        idx = np.flatnonzero(vids == v)
        e, i, f = emb[idx], ids_a[idx], frms[idx]
        keys = set()
        for obj, fr in zip(i.tolist(), f.tolist()):
            if (obj, fr) in keys:
                raise ValueError(f"identity {obj} appears twice in frame {fr} of video {v}")
            keys.add((obj, fr))
        sim = e @ e.T
        upper = np.triu(np.ones_like(sim, dtype=bool), k=1)
        same = (i[:, None] == i[None, :]) & upper
        diff = (i[:, None] != i[None, :]) & upper
        pos_sims.append(sim[same])
        neg_sims.append(sim[diff])
        by_frame = {fr: np.flatnonzero(f == fr) for fr in np.unique(f).tolist()}
        for g in gaps:
            for fr, later in by_frame.items():
                earlier = by_frame.get(fr - g)
                if earlier is None or len(earlier) < 2:
                    continue
                for q in later:
                    match = earlier[i[earlier] == i[q]]
                    if len(match) == 0:
                        continue
                    queries[g] += 1
                    hits[g] += int(earlier[np.argmax(sim[q, earlier])] == match[0])
    pos = np.concatenate(pos_sims) if pos_sims else np.zeros(0)
    neg = np.concatenate(neg_sims) if neg_sims else np.zeros(0)
    out = {
        "auc": _auc(pos, neg) if len(pos) and len(neg) else float("nan"),
        "same_cos": float(pos.mean()) if len(pos) else float("nan"),
        "diff_cos": float(neg.mean()) if len(neg) else float("nan"),
        "pairs_same": float(len(pos)),
        "pairs_diff": float(len(neg)),
    }
    for g in gaps:
        out[f"rank1@{g}"] = hits[g] / queries[g] if queries[g] else float("nan")
        out[f"queries@{g}"] = float(queries[g])
    return out
