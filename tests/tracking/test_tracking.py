"""Kalman filter, association and the ByteTrack-style embedding tracker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtmnv3.data.mot import xyxy_to_mot
from mtmnv3.data.mot_io import load_mot_txt
from mtmnv3.evaluation import evaluate_mot
from mtmnv3.tracking import (
    CHI2INV95,
    TRACKER_TYPES,
    EmbeddingTracker,
    KalmanFilterXYAH,
    TrackState,
    build_tracker,
    embedding_distance,
    fuse_embedding_iou,
    fuse_min_gated,
    gate_cost,
    iou_distance,
    iou_matrix,
    linear_assignment,
    run_tracker,
    xyah_to_xyxy,
    xyxy_to_xyah,
)

W, H = 30.0, 60.0  # box size of the hand-made objects


def box(cx: float, cy: float = 100.0, w: float = W, h: float = H) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def dets(*centres: float, score: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([box(c) for c in centres]).reshape(-1, 4)
    return boxes, np.full(len(boxes), score)


# --------------------------------------------------------------------------- Kalman filter


def test_box_conversions_round_trip():
    boxes = np.array([[0.0, 0.0, 10.0, 20.0], [5.0, 6.0, 9.0, 8.0]])
    xyah = xyxy_to_xyah(boxes)
    np.testing.assert_allclose(xyah, [[5, 10, 0.5, 20], [7, 7, 2, 2]])
    np.testing.assert_allclose(xyah_to_xyxy(xyah), boxes)
    np.testing.assert_allclose(xyah_to_xyxy(np.zeros((0, 8))), np.zeros((0, 4)))


def test_kalman_initiate_hand_worked():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    np.testing.assert_allclose(mean, [[10, 20, 0.5, 100, 0, 0, 0, 0]])
    # std: 2 * h / 20 = 10 for cx, cy, h; 10 * h / 160 = 6.25 for their velocities.
    expected = np.diag([100, 100, 1e-4, 100, 39.0625, 39.0625, 1e-10, 39.0625])
    np.testing.assert_allclose(cov[0], expected)


def test_kalman_predict_hand_worked():
    kf = KalmanFilterXYAH()
    mean = np.array([[10.0, 20.0, 0.5, 100.0, 2.0, -1.0, 0.0, 0.5]])
    _, cov = kf.initiate(mean[:, :4])
    new_mean, new_cov = kf.predict(mean, cov)
    np.testing.assert_allclose(new_mean, [[12, 19, 0.5, 100.5, 2, -1, 0, 0.5]])
    # P'_xx = P_xx + P_vv + (h / 20)^2 = 100 + 39.0625 + 25; P'_xv = P_vv; P'_vv = P_vv + (h / 160)^2.
    assert new_cov[0, 0, 0] == pytest.approx(164.0625)
    assert new_cov[0, 0, 4] == pytest.approx(39.0625)
    assert new_cov[0, 4, 0] == pytest.approx(39.0625)
    assert new_cov[0, 4, 4] == pytest.approx(39.453125)
    assert new_cov[0, 2, 2] == pytest.approx(2e-4 + 1e-10)
    assert new_cov[0, 0, 1] == 0.0  # x and y stay independent


def test_kalman_update_hand_worked():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    z = np.array([[15.0, 20.0, 0.5, 100.0]])
    # Without a prediction: S_xx = 100 + 25, K = 100 / 125 = 0.8, velocity untouched.
    upd_mean, upd_cov = kf.update(mean, cov, z)
    assert upd_mean[0, 0] == pytest.approx(14.0)
    assert upd_mean[0, 4] == pytest.approx(0.0)
    assert upd_cov[0, 0, 0] == pytest.approx(20.0)
    # After a prediction: S_xx = 164.0625 + 25 = 189.0625, K_x = 105/121, K_vx = 25/121.
    pred_mean, pred_cov = kf.predict(mean, cov)
    upd_mean, upd_cov = kf.update(pred_mean, pred_cov, z)
    assert upd_mean[0, 0] == pytest.approx(10 + 5 * 105 / 121)
    assert upd_mean[0, 4] == pytest.approx(5 * 25 / 121)
    assert upd_mean[0, 1] == pytest.approx(20.0)
    np.testing.assert_allclose(upd_cov[0], upd_cov[0].T)


def test_kalman_gating_distance_hand_worked():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    z = np.array([[35.0, 20.0, 0.5, 100.0], [35.0, 45.0, 0.5, 100.0], [10.0, 20.0, 0.5, 100.0]])
    # S = diag(125, 125, 1e-4 + 1e-2, 125): a 25 px offset costs 625 / 125 = 5.
    np.testing.assert_allclose(kf.gating_distance(mean, cov, z), [[5.0, 10.0, 0.0]])
    z_aspect = np.array([[10.0, 20.0, 0.9, 100.0]])  # aspect matters only with the full measurement
    assert kf.gating_distance(mean, cov, z_aspect, only_position=True)[0, 0] == pytest.approx(0.0)
    assert kf.gating_distance(mean, cov, z_aspect)[0, 0] == pytest.approx(0.4**2 / 0.0101)
    assert kf.gating_distance(mean, cov, z_aspect)[0, 0] > CHI2INV95[4]
    assert kf.gating_distance(mean, cov, np.zeros((0, 4))).shape == (1, 0)


def test_kalman_vectorised_matches_per_track():
    rng = np.random.default_rng(0)
    kf = KalmanFilterXYAH()
    z0 = np.column_stack(
        [rng.uniform(0, 500, 5), rng.uniform(0, 500, 5), rng.uniform(0.3, 1, 5), rng.uniform(20, 200, 5)]
    )
    mean, cov = kf.initiate(z0)
    mean, cov = kf.predict(mean, cov)
    z1 = z0 + rng.normal(0, 2, z0.shape)
    batch_mean, batch_cov = kf.update(mean, cov, z1)
    batch_gate = kf.gating_distance(mean, cov, z1)
    for i in range(5):
        m, c = kf.update(mean[i : i + 1], cov[i : i + 1], z1[i : i + 1])
        np.testing.assert_allclose(batch_mean[i], m[0])
        np.testing.assert_allclose(batch_cov[i], c[0])
        np.testing.assert_allclose(batch_gate[i], kf.gating_distance(mean[i : i + 1], cov[i : i + 1], z1)[0])


def test_kalman_bad_shapes():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    with pytest.raises(ValueError, match=r"mean must have shape \(N, 8\), got \(8,\)"):
        kf.predict(mean[0], cov)
    with pytest.raises(ValueError, match=r"covariance must have shape \(N, 8, 8\)"):
        kf.predict(mean, cov[0])
    with pytest.raises(ValueError, match=r"measurements must have shape \(N, 4\) with N = 1"):
        kf.update(mean, cov, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="dt must be a positive number"):
        KalmanFilterXYAH(dt=0)


# --------------------------------------------------------------------------- matching


def test_iou_matrix_and_distance():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array(
        [[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0], [3.0, 3.0, 3.0, 3.0]]
    )
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 3, 0.0, 1.0, 0.0]])
    np.testing.assert_allclose(iou_distance(a, b), [[2 / 3, 1.0, 0.0, 1.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)
    assert iou_matrix(a, []).shape == (1, 0)
    with pytest.raises(ValueError, match=r"boxes_b must have shape \(N, 4\)"):
        iou_matrix(a, np.zeros((2, 3)))


def test_embedding_distance_and_fusion():
    d = embedding_distance(
        np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, 0.0]])
    )
    np.testing.assert_allclose(d, [[0.0, 1.0, 2.0, 1.0]])
    assert embedding_distance(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    with pytest.raises(ValueError, match="same D"):
        embedding_distance(np.ones((1, 3)), np.ones((1, 4)))
    emb, iou = np.array([[0.2, np.inf]]), np.array([[0.6, 0.0]])
    np.testing.assert_allclose(fuse_embedding_iou(emb, iou, 0.25), [[0.5, np.inf]])
    np.testing.assert_allclose(fuse_embedding_iou(emb, iou, 0.0), iou)
    with pytest.raises(ValueError, match=r"emb_weight must be in \[0, 1\], got 1.5"):
        fuse_embedding_iou(emb, iou, 1.5)


def test_gate_cost_forbids_far_pairs():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 100.0]]))
    z = np.array([[15.0, 20.0, 0.5, 100.0], [60.0, 20.0, 0.5, 100.0]])  # distances 0.2 and 20
    gated = gate_cost(np.array([[0.3, 0.1]]), kf, mean, cov, z)
    np.testing.assert_allclose(gated, [[0.3, np.inf]])


@pytest.mark.parametrize(
    ("cost", "thresh", "matches", "rows", "cols"),
    [
        ([[0.1, 0.9], [0.2, 0.3]], 0.5, [[0, 0], [1, 1]], [], []),
        # Optimal, not greedy: taking 0.1 first would leave 0.9 (rejected) for row 1.
        ([[0.1, 0.2], [0.15, 0.9]], 0.5, [[0, 1], [1, 0]], [], []),
        ([[0.6]], 0.5, [], [0], [0]),
        ([[0.5]], 0.5, [[0, 0]], [], []),
        ([[np.inf, 0.2], [np.inf, 0.1]], 0.5, [[1, 1]], [0], [0]),
        ([[0.9, 0.1, 0.8]], 0.5, [[0, 1]], [], [0, 2]),
        (np.zeros((0, 3)), 0.5, [], [], [0, 1, 2]),
        (np.zeros((2, 0)), 0.5, [], [0, 1], []),
    ],
)
def test_linear_assignment(cost, thresh, matches, rows, cols):
    m, r, c = linear_assignment(np.array(cost, float), thresh)
    np.testing.assert_array_equal(m, np.array(matches, np.int64).reshape(-1, 2))
    np.testing.assert_array_equal(r, rows)
    np.testing.assert_array_equal(c, cols)
    assert m.dtype == r.dtype == c.dtype == np.int64


def test_linear_assignment_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        linear_assignment(np.array([[np.nan]]), 0.5)
    with pytest.raises(ValueError, match=r"2-D \(N, M\) matrix, got shape \(3,\)"):
        linear_assignment(np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="thresh must be a finite number"):
        linear_assignment(np.zeros((1, 1)), np.inf)


# --------------------------------------------------------------------------- tracker scenarios


def meet_and_turn_back(n: int = 30, meet: int = 15, speed: float = 3.0, seed: int = 0):
    """Two objects approach, coincide at frame ``meet`` and each turns back.

    Constant-velocity motion predicts them passing through each other, so
    IoU-only association swaps the identities; their embeddings differ.
    """
    rng = np.random.default_rng(seed)
    identity = np.eye(16)[:2]
    frames, gt = [], []
    for f in range(1, n + 1):
        offset = speed * abs(f - meet)
        boxes = np.array([box(100 - offset), box(100 + offset)])
        emb = identity + 0.1 * rng.standard_normal((2, 16))
        frames.append(dict(frame_id=f, bboxes=boxes, scores=np.array([0.9, 0.9]), embeddings=emb))
        gt += [[f, i + 1, *xyxy_to_mot(boxes[i : i + 1])[0], 1, 1, 1] for i in range(2)]
    return frames, np.array(gt)


def test_embeddings_prevent_identity_switches():
    frames, gt = meet_and_turn_back()
    iou_only = evaluate_mot({"s": gt}, {"s": run_tracker(EmbeddingTracker(use_embeddings=False), frames)})
    with_emb = evaluate_mot({"s": gt}, {"s": run_tracker(EmbeddingTracker(fusion="weighted"), frames)})
    zero_weight = evaluate_mot(
        {"s": gt}, {"s": run_tracker(EmbeddingTracker(fusion="weighted", emb_weight=0.0), frames)}
    )
    assert iou_only["IDSW"] >= 1
    assert zero_weight["IDSW"] == iou_only["IDSW"]  # emb_weight=0 is IoU-only ByteTrack
    assert with_emb["IDSW"] == 0 < iou_only["IDSW"]
    assert with_emb["IDF1"] > iou_only["IDF1"]
    assert with_emb["FN"] == with_emb["FP"] == 0


def test_min_fusion_only_uses_appearance_for_near_alike_pairs():
    iou = np.array([[0.1, 0.6, 0.3]])
    emb = np.array([[0.8, 0.0, 0.2]])
    fused = fuse_min_gated(emb, iou, proximity_thr=0.5, appearance_thr=0.25)
    # near but unlike -> IoU; far -> IoU even if alike; near and alike -> halved embedding distance
    np.testing.assert_allclose(fused, [[0.1, 0.6, 0.1]])
    with pytest.raises(ValueError, match="same shape"):
        fuse_min_gated(np.zeros((1, 2)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="fusion must be one of"):
        EmbeddingTracker(fusion="max")


def track_with_gap(tracker: EmbeddingTracker, gap: int, before: int = 10, after: int = 5) -> list[np.ndarray]:
    """One object moving 2 px/frame, undetected for ``gap`` frames; the ids reported per frame."""
    ids = []
    for f in range(1, before + gap + after + 1):
        visible = f <= before or f > before + gap
        boxes, scores = dets(50 + 2 * f) if visible else dets()
        ids.append(tracker.update(boxes, scores, frame_id=f).ids)
    return ids


@pytest.mark.parametrize("use_embeddings", [False, True])
def test_short_disappearance_keeps_id(use_embeddings):
    tracker = EmbeddingTracker(track_buffer=10, use_embeddings=use_embeddings)
    ids = track_with_gap(tracker, gap=10)  # max_time_lost = 10: still recoverable
    assert [i.tolist() for i in ids[:10]] == [[1]] * 10
    assert all(len(i) == 0 for i in ids[10:20])  # lost tracks are not reported
    assert [i.tolist() for i in ids[20:]] == [[1]] * 5


def test_long_disappearance_gets_new_id():
    tracker = EmbeddingTracker(track_buffer=10)
    ids = track_with_gap(tracker, gap=11)
    assert ids[9].tolist() == [1]
    assert ids[-1].tolist() == [2]
    assert ids[21].tolist() == []  # the reborn track is tentative for one frame


def test_track_buffer_scales_with_frame_rate():
    tracker = EmbeddingTracker(track_buffer=10, frame_rate=60)
    assert tracker.max_time_lost == 20
    assert track_with_gap(tracker, gap=15)[-1].tolist() == [1]


def test_skipped_frames_count_towards_track_buffer():
    tracker = EmbeddingTracker(track_buffer=10)
    for f in range(1, 6):
        tracker.update(*dets(50 + 2 * f), frame_id=f)
    assert tracker.update(*dets(50 + 2 * 16), frame_id=16).ids.tolist() == [1]  # 10 frames skipped
    assert tracker.update(*dets(50 + 2 * 28), frame_id=28).ids.tolist() == []  # 11 skipped: removed
    assert [t.track_id for t in tracker.tracks] == [2]


@pytest.mark.parametrize(
    ("kwargs", "shift", "appearance", "expected_id"),
    [
        (dict(use_embeddings=False), 30.0, 0, 2),  # no overlap with the prediction: IoU cannot re-find it
        (dict(), 30.0, 0, 1),  # same appearance, inside the motion gate: re-identified
        (dict(), 30.0, 1, 2),  # another appearance at that place: a new object
        (dict(), 200.0, 0, 2),  # same appearance, far outside the motion gate: a new object
        (dict(gate_thr=None), 200.0, 0, 1),  # without the gate, appearance alone re-identifies it
    ],
)
def test_lost_track_recovered_by_embedding(kwargs, shift, appearance, expected_id):
    """A still object, unseen for 8 frames, comes back ``shift`` px away (IoU 0 with its prediction)."""
    tracker = EmbeddingTracker(**kwargs)
    looks = np.eye(8)
    for f in range(1, 11):
        tracker.update(*dets(100), embeddings=looks[:1], frame_id=f)
    for f in range(11, 19):
        tracker.update(*dets(), embeddings=np.zeros((0, 8)), frame_id=f)
    tracker.update(*dets(100 + shift), embeddings=looks[appearance : appearance + 1], frame_id=19)
    result = tracker.update(*dets(100 + shift), embeddings=looks[appearance : appearance + 1], frame_id=20)
    assert result.ids.tolist() == [expected_id]


@pytest.mark.parametrize(("position_only", "expected_ids"), [(False, [2]), (True, [1])])
def test_position_only_gate_ignores_aspect_and_height_jitter(position_only, expected_ids):
    """The same object, same centre, re-detected with a box twice as wide (aspect 0.5 -> 1):
    the full gate reads the aspect jump as another object, the centre-only gate does not."""
    tracker = EmbeddingTracker(gate_position_only=position_only, min_hits=1)
    look = np.eye(4)[:1]
    for f in range(1, 6):
        tracker.update(np.array([[40.0, 30.0, 60.0, 70.0]]), [0.9], embeddings=look, frame_id=f)
    wide = np.array([[30.0, 30.0, 70.0, 70.0]])  # IoU 0.5 with the track's box, centre unchanged
    assert tracker.update(wide, [0.9], embeddings=look, frame_id=6).ids.tolist() == expected_ids


@pytest.mark.parametrize(("low_thr", "kept"), [(0.1, True), (0.4, False)])
def test_low_score_detections_keep_track_alive(low_thr, kept):
    tracker = EmbeddingTracker(track_buffer=10, low_thr=low_thr)
    reported = []
    for f in range(1, 41):
        boxes, scores = dets(50 + 2 * f, score=0.9 if f <= 5 or f > 35 else 0.3)
        reported.append(tracker.update(boxes, scores, frame_id=f))
    if kept:  # second association: the low-score boxes keep track 1 going for 30 frames
        assert all(r.ids.tolist() == [1] for r in reported)
        np.testing.assert_allclose(reported[20].scores, [0.3])
    else:  # discarded: the track is lost, removed after 10 frames, and the object comes back as 2
        assert all(r.ids.tolist() == [] for r in reported[5:36])
        assert reported[-1].ids.tolist() == [2]


def test_low_score_detection_does_not_start_a_track():
    tracker = EmbeddingTracker(new_track_thr=0.6)
    for f in range(1, 5):
        assert tracker.update(*dets(100, score=0.55), frame_id=f).ids.tolist() == []
    assert tracker.tracks == ()


def test_confirmation_and_ids_never_reused():
    tracker = EmbeddingTracker(track_buffer=3, min_hits=2)
    seen = []
    # Frame 1: births are confirmed at once (ByteTrack's first frame).
    assert tracker.update(*dets(100), frame_id=1).ids.tolist() == [1]
    # A flicker: a tentative track that misses its second frame is removed; its id is spent.
    assert tracker.update(*dets(100, 300), frame_id=2).ids.tolist() == [1]
    assert [t.state for t in tracker.tracks] == [TrackState.TRACKED, TrackState.TENTATIVE]
    assert tracker.update(*dets(100), frame_id=3).ids.tolist() == [1]
    # Object 1 leaves; a new object appears at the same place after 1 is removed.
    for f in range(4, 9):
        seen.append(tracker.update(*dets(), frame_id=f).ids)
    assert tracker.tracks == ()
    assert tracker.update(*dets(100), frame_id=9).ids.tolist() == []  # tentative
    assert tracker.update(*dets(100), frame_id=10).ids.tolist() == [3]  # confirmed by its second hit
    other = EmbeddingTracker()
    assert other.update(*dets(100), frame_id=1).ids.tolist() == [1]  # counters are per instance


def test_min_hits_three():
    tracker = EmbeddingTracker(min_hits=3)
    tracker.update(*dets(), frame_id=1)
    reported = [tracker.update(*dets(100), frame_id=f).ids.tolist() for f in range(2, 6)]
    assert reported == [[], [], [1], [1]]


def test_reset_restarts_ids_and_frames():
    tracker = EmbeddingTracker()
    for f in range(1, 4):
        tracker.update(*dets(100, 200), frame_id=f)
    assert tracker.frame_id == 3
    tracker.reset()
    assert tracker.tracks == () and tracker.frame_id is None
    assert tracker.update(*dets(400), frame_id=1).ids.tolist() == [1]


def test_predict_only_advances_the_filter():
    tracker = EmbeddingTracker()
    for f in range(1, 21):
        result = tracker.update(*dets(50 + 4 * f), frame_id=f)
    x_centre = result.bboxes[0, [0, 2]].mean()
    predicted = tracker.predict_only(21)
    assert predicted.ids.tolist() == [1]
    assert predicted.bboxes[0, [0, 2]].mean() == pytest.approx(x_centre + 4, abs=0.5)
    assert tracker.tracks[0].state == TrackState.TRACKED  # no detections is not a miss
    assert tracker.predict_only().ids.tolist() == [1]  # frame 22
    assert tracker.update(*dets(50 + 4 * 23), frame_id=23).ids.tolist() == [1]


def test_class_aware_association():
    for class_aware, expected in ((False, [1]), (True, [])):
        tracker = EmbeddingTracker(class_aware=class_aware)
        tracker.update(*dets(100), labels=[0], frame_id=1)
        result = tracker.update(*dets(100), labels=[1], frame_id=2)
        assert result.ids.tolist() == expected
        if not class_aware:
            assert result.labels.tolist() == [1]


def test_embedding_moving_average_and_iou_only_frames():
    tracker = EmbeddingTracker(emb_momentum=0.9)
    e1, e2 = np.array([[3.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]])
    tracker.update(*dets(100), embeddings=e1, frame_id=1)
    tracker.update(*dets(101), embeddings=None, frame_id=2)  # IoU-only frame: embedding unchanged
    np.testing.assert_allclose(tracker.tracks[0].embedding, [1.0, 0.0, 0.0])
    tracker.update(*dets(102), embeddings=e2, frame_id=3)
    expected = np.array([0.9, 0.1, 0.0]) / np.hypot(0.9, 0.1)
    np.testing.assert_allclose(tracker.tracks[0].embedding, expected)
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, D\) with D = 3"):
        tracker.update(*dets(103), embeddings=np.ones((1, 4)), frame_id=4)
    assert EmbeddingTracker(use_embeddings=False).update(*dets(1), embeddings=e1).ids.tolist() == [1]


def test_accepts_tensors_and_empty_frames():
    tracker = EmbeddingTracker()
    r = tracker.update(torch.tensor([box(100)]), torch.tensor([0.9]), torch.tensor([2]), torch.ones(1, 8))
    assert r.ids.tolist() == [1] and r.labels.tolist() == [2]
    for empty in (np.zeros((0, 4)), [], np.zeros(0)):
        r = tracker.update(empty, [])
        assert r.ids.shape == (0,) and r.bboxes.shape == (0, 4) and r.scores.shape == (0,)
    assert tracker.frame_id == 4
    # zero-area boxes are ignored
    assert tracker.update([[5.0, 5.0, 5.0, 9.0]], [0.9]).ids.shape == (0,)


def test_bad_input_names_argument_and_shape():
    tracker = EmbeddingTracker()
    boxes, scores = dets(100, 200, 300)
    with pytest.raises(ValueError, match=r"bboxes must have shape \(N, 4\) .*got \(3, 5\)"):
        tracker.update(np.zeros((3, 5)), scores)
    with pytest.raises(ValueError, match=r"scores must have shape \(N,\) with N = 3 .*got \(2,\)"):
        tracker.update(boxes, scores[:2])
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\) with N = 3 .*got \(3, 1\)"):
        tracker.update(boxes, scores, labels=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="labels must be integers"):
        tracker.update(boxes, scores, labels=[0, 1.5, 2])
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, D\) with N = 3 .*got \(3,\)"):
        tracker.update(boxes, scores, embeddings=np.ones(3))
    with pytest.raises(ValueError, match="bboxes must be finite"):
        tracker.update(np.full((1, 4), np.nan), [0.9])
    with pytest.raises(ValueError, match=r"x2 >= x1 and y2 >= y1, row 1"):
        tracker.update([box(100), [10.0, 0.0, 5.0, 5.0]], [0.9, 0.9])
    with pytest.raises(ValueError, match="frame_id must be an integer"):
        tracker.update(boxes, scores, frame_id=1.5)
    assert tracker.frame_id is None  # rejected input changes nothing
    tracker.update(boxes, scores, frame_id=5)
    with pytest.raises(ValueError, match="frame_id must increase: got 5 after frame 5"):
        tracker.update(boxes, scores, frame_id=5)
    with pytest.raises(ValueError, match="frame_id must increase"):
        tracker.predict_only(3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(low_thr=0.6), "low_thr must be <= high_thr"),
        (dict(new_track_thr=0.4), "new_track_thr must be >= high_thr"),
        (dict(emb_weight=1.5), r"emb_weight must be a number in \[0.0, 1.0\], got 1.5"),
        (dict(emb_momentum=1.0), "emb_momentum must be < 1"),
        (dict(track_buffer=-1), "track_buffer must be an integer >= 0, got -1"),
        (dict(min_hits=0), "min_hits must be an integer >= 1"),
        (dict(frame_rate=0), "frame_rate must be a number in"),
        (dict(gate_thr=float("nan")), "gate_thr must be a number"),
        (dict(match_thr="0.8"), "match_thr must be a number"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingTracker(**kwargs)


# --------------------------------------------------------------------------- builder and MOT output


def test_build_tracker():
    cfg = dict(type="EmbeddingTracker", high_thr=0.6, new_track_thr=0.7)
    tracker = build_tracker(cfg)
    assert isinstance(tracker, EmbeddingTracker) and tracker.high_thr == 0.6
    assert cfg["type"] == "EmbeddingTracker"  # not modified
    assert isinstance(build_tracker(dict(type=EmbeddingTracker)), EmbeddingTracker)
    assert "EmbeddingTracker" in TRACKER_TYPES
    with pytest.raises(ValueError, match=r"unknown tracker type 'Nope'; known types: \['EmbeddingTracker'\]"):
        build_tracker(dict(type="Nope"))
    with pytest.raises(ValueError, match="needs a 'type' key"):
        build_tracker(dict(high_thr=0.5))
    with pytest.raises(TypeError, match="bad arguments for tracker EmbeddingTracker"):
        build_tracker(dict(type="EmbeddingTracker", hihg_thr=0.5))
    with pytest.raises(TypeError, match="must be a dict"):
        build_tracker("EmbeddingTracker")


def test_run_tracker_writes_mot_file(tmp_path):
    frames = [dict(frame_id=f, bboxes=[box(50 + 2 * f)], scores=[0.9]) for f in range(1, 6)]
    frames.append(dict(frame_id=6))  # the detector skipped this frame: predicted boxes are reported
    out = tmp_path / "results" / "seq.txt"
    rows = run_tracker(EmbeddingTracker(), frames, out_file=out)
    loaded = load_mot_txt(out)
    assert loaded.shape == (6, 10)
    np.testing.assert_allclose(loaded, rows, atol=1e-3)
    np.testing.assert_array_equal(loaded[:, 0], np.arange(1, 7))
    assert set(loaded[:, 1]) == {1}
    np.testing.assert_allclose(loaded[0, 2:6], [52 - W / 2 + 1, 100 - H / 2 + 1, W, H])  # 1-based corner
    np.testing.assert_array_equal(loaded[:, 7:], -1)
    assert not list(out.parent.glob(".*.tmp"))  # written atomically, no leftovers


def test_run_tracker_bad_frames():
    tracker = EmbeddingTracker()
    with pytest.raises(ValueError, match=r"frames\[0\] has unknown key\(s\) \['bbox'\]"):
        run_tracker(tracker, [dict(frame_id=1, bbox=[box(1)], scores=[0.9])])
    with pytest.raises(ValueError, match=r"frames\[0\]\['frame_id'\] must be an integer >= 1"):
        run_tracker(tracker, [dict(frame_id=0, bboxes=[box(1)], scores=[0.9])])
    with pytest.raises(ValueError, match="has 'bboxes' but no 'scores'"):
        run_tracker(tracker, [dict(frame_id=1, bboxes=[box(1)])])
    with pytest.raises(TypeError, match=r"frames\[0\] must be a mapping"):
        run_tracker(tracker, [[box(1)]])


# ---- the (cx, cy, w, h) state (BoT-SORT's) --------------------------------------------------------
def test_kalman_xywh_matches_boxmot_step_by_step():
    """Our vectorised XYWH filter against BoxMOT's KalmanFilterXYWH, one track at a time."""
    boxmot_kf = pytest.importorskip("boxmot.motion.kalman_filters.xywh")
    from mtmnv3.tracking import KalmanFilterXYWH

    ref = boxmot_kf.KalmanFilterXYWH()
    ours = KalmanFilterXYWH()
    rng = np.random.default_rng(0)
    z0 = np.array([[50.0, 40.0, 20.0, 60.0], [200.0, 120.0, 80.0, 30.0]])
    mean, cov = ours.initiate(z0)
    refs = [ref.initiate(z) for z in z0]
    for step in range(6):
        mean, cov = ours.predict(mean, cov)
        refs = [ref.predict(m, c) for m, c in refs]
        z = z0 + rng.normal(0, 2.0, z0.shape) + step * np.array([3.0, -1.0, 0.5, 0.2])
        mean, cov = ours.update(mean, cov, z)
        refs = [ref.update(m, c, zi) for (m, c), zi in zip(refs, z)]
        for k, (m, c) in enumerate(refs):
            np.testing.assert_allclose(mean[k], m, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(cov[k], c, rtol=1e-9, atol=1e-9)
    d = ours.gating_distance(mean, cov, z)
    for k, (m, c) in enumerate(refs):
        np.testing.assert_allclose(d[k], ref.gating_distance(m, c, z), rtol=1e-7)


def test_kalman_xywh_boxes_round_trip_and_zoom_scales_width_and_height():
    from mtmnv3.tracking import KalmanFilterXYWH

    kf = KalmanFilterXYWH()
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 8.0, 4.0]])
    z = kf.to_measurement(boxes)
    np.testing.assert_allclose(z, [[30.0, 60.0, 40.0, 80.0], [4.0, 2.0, 8.0, 4.0]])
    np.testing.assert_allclose(kf.to_xyxy(z), boxes)
    mean, cov = kf.initiate(z)
    np.testing.assert_allclose(kf.to_xyxy(mean), boxes)  # an (N, 8) state reads its first four entries
    warped, _ = kf.warp(mean, cov, np.array([[2.0, 0.0, 1.0], [0.0, 2.0, -3.0]]))  # zoom x2 and shift
    np.testing.assert_allclose(warped[:, :4], [[61.0, 117.0, 80.0, 160.0], [9.0, 1.0, 16.0, 8.0]])


def test_tracker_with_the_xywh_state_follows_a_box_that_changes_shape():
    """A box that widens while it shrinks in height keeps one id, and the estimate follows its shape."""
    tracker = EmbeddingTracker(kalman="xywh", use_embeddings=False, min_hits=1)
    for f in range(1, 31):
        w, h = 40.0 + 2 * f, 80.0 - f
        box = np.array([[100.0 + 2 * f, 50.0, 100.0 + 2 * f + w, 50.0 + h]])
        out = tracker.update(box, np.array([0.9]), np.array([0]), None, frame_id=f)
        assert out.ids.tolist() == [1]
    assert iou_matrix(out.bboxes, box)[0, 0] > 0.95
    assert tracker.tracks[0].box_space == "xywh"
    np.testing.assert_allclose(tracker.tracks[0].bbox, out.bboxes[0])
    with pytest.raises(ValueError, match=r"kalman must be one of \['xyah', 'xywh'\]"):
        EmbeddingTracker(kalman="xyz")
