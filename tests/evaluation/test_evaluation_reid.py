"""Within-video re-identification scores of embeddings."""

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from mtmnv3.evaluation import within_video_reid


def _objects(num_videos=3, num_ids=4, num_frames=12):
    """Every identity in every frame; ids repeat across videos (compared within a video only)."""
    rows = [(v, i, f) for v in range(num_videos) for f in range(num_frames) for i in range(num_ids)]
    videos, ids, frames = (np.array(c) for c in zip(*rows))
    return ids, videos, frames


def test_perfect_embeddings_score_one():
    ids, videos, frames = _objects()
    # one direction per (video, identity): the same id in another video is another object
    emb = np.eye(12)[videos * 4 + ids]
    r = within_video_reid(emb, ids, videos, frames)
    assert r["auc"] == 1.0 and r["rank1@1"] == 1.0 and r["rank1@10"] == 1.0
    assert r["same_cos"] == pytest.approx(1.0) and r["diff_cos"] == pytest.approx(0.0)
    # 3 videos x 4 ids x C(12, 2) same-identity pairs; queries: 11 later frames x 4 objects x 3 videos
    assert r["pairs_same"] == 3 * 4 * 66 and r["queries@1"] == 3 * 4 * 11 and r["queries@10"] == 3 * 4 * 2


def test_random_embeddings_score_chance():
    ids, videos, frames = _objects(num_videos=8, num_ids=5, num_frames=20)
    emb = np.random.default_rng(0).normal(size=(len(ids), 32))
    r = within_video_reid(emb, ids, videos, frames)
    assert abs(r["auc"] - 0.5) < 0.03
    assert abs(r["rank1@1"] - 1 / 5) < 0.05  # one of five objects at random


def test_auc_matches_mann_whitney_and_rank1_counts_confusions():
    rng = np.random.default_rng(1)
    ids, videos, frames = _objects(num_videos=2, num_ids=3, num_frames=6)
    emb = np.eye(6)[videos * 3 + ids] + 0.6 * rng.normal(size=(len(ids), 6))
    r = within_video_reid(emb, ids, videos, frames)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    pos, neg = [], []
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            if videos[a] == videos[b]:
                (pos if ids[a] == ids[b] else neg).append(unit[a] @ unit[b])
    u = mannwhitneyu(pos, neg).statistic
    assert r["auc"] == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)
    assert r["same_cos"] == pytest.approx(np.mean(pos)) and r["diff_cos"] == pytest.approx(np.mean(neg))
    # rank-1 at gap 1 by brute force
    hits = queries = 0
    for q in range(len(ids)):
        earlier = np.flatnonzero((videos == videos[q]) & (frames == frames[q] - 1))
        if len(earlier) < 2:
            continue
        queries += 1
        hits += ids[earlier[np.argmax(unit[earlier] @ unit[q])]] == ids[q]
    assert r["queries@1"] == queries and r["rank1@1"] == pytest.approx(hits / queries)


def test_single_object_frames_are_not_queries_and_empty_cases_are_nan():
    # one object per frame: nothing to confuse, no different-identity pair
    r = within_video_reid(np.ones((3, 4)), [1, 1, 1], [0, 0, 0], [0, 1, 2])
    assert r["queries@1"] == 0 and math.isnan(r["rank1@1"]) and math.isnan(r["auc"])
    assert r["same_cos"] == pytest.approx(1.0)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="one row per object"):
        within_video_reid(np.ones((3, 4)), [1, 2], [0, 0, 0], [0, 1, 2])
    with pytest.raises(ValueError, match="finite"):
        within_video_reid(np.full((2, 4), np.nan), [1, 2], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="gaps must be positive"):
        within_video_reid(np.ones((2, 4)), [1, 2], [0, 0], [0, 0], gaps=(0,))
    with pytest.raises(ValueError, match="identity 1 appears twice in frame 0 of video 0"):
        within_video_reid(np.ones((2, 4)), [1, 1], [0, 0], [0, 0])
    with pytest.raises(ValueError, match="embeddings must be 2-D"):
        within_video_reid(np.ones(4), [1], [0], [0])
