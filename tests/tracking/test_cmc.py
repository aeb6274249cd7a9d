"""Camera-motion compensation: the Kalman warp, the global motion estimate, and the tracker with it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mtmnv3.data.mot import xyxy_to_mot
from mtmnv3.data.synth import SceneConfig, generate_sequence, noisy_detections
from mtmnv3.evaluation import evaluate_mot
from mtmnv3.tracking import CameraMotion, EmbeddingTracker, KalmanFilterXYAH, build_cmc, tracks_to_mot_rows
from mtmnv3.tracking.cmc import is_identity

# --------------------------------------------------------------------------- Kalman warp


def test_kalman_warp_translation_moves_position_only():
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 40.0]]))
    mean[0, 4:] = [1.0, -2.0, 0.0, 0.5]
    warp = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -4.0]])
    new_mean, new_cov = kf.warp(mean, cov, warp)
    np.testing.assert_allclose(new_mean[0], [13.0, 16.0, 0.5, 40.0, 1.0, -2.0, 0.0, 0.5])
    np.testing.assert_allclose(new_cov, cov)  # a shift leaves the uncertainty alone
    assert new_mean is not mean


def test_kalman_warp_rotation_and_zoom_hand_worked():
    kf = KalmanFilterXYAH()
    mean = np.array([[10.0, 0.0, 0.5, 40.0, 2.0, 0.0, 0.0, 1.0]])
    cov = np.diag([4.0, 1.0, 1e-4, 9.0, 1.0, 0.25, 1e-10, 0.5])[None]
    c, s = 0.0, 2.0  # a quarter turn and a zoom of 2
    warp = np.array([[c, -s, 1.0], [s, c, 0.0]])
    m, p = kf.warp(mean, cov, warp)
    # centre (10, 0) -> (0 - 0 + 1, 20 + 0) = (1, 20); velocity (2, 0) -> (0, 4); h, vh x2; aspect kept
    np.testing.assert_allclose(m[0], [1.0, 20.0, 0.5, 80.0, 0.0, 4.0, 0.0, 2.0])
    # var(cx) = 4 * var(cy) ... the quarter turn swaps the variances of x and y, each times 4
    np.testing.assert_allclose(np.diag(p[0])[[0, 1, 3, 4, 5, 7]], [4.0, 16.0, 36.0, 1.0, 4.0, 2.0])
    np.testing.assert_allclose(p[0], p[0].T)


@pytest.mark.parametrize(
    "warp, match",
    [
        (np.eye(3), "shape"),
        (np.array([[1.0, 0.0, np.nan], [0.0, 1.0, 0.0]]), "finite"),
        (np.zeros((2, 3)), "invertible"),
    ],
)
def test_kalman_warp_rejects_bad_affines(warp, match):
    kf = KalmanFilterXYAH()
    mean, cov = kf.initiate(np.array([[10.0, 20.0, 0.5, 40.0]]))
    with pytest.raises(ValueError, match=match):
        kf.warp(mean, cov, warp)


# --------------------------------------------------------------------------- the estimate


def _texture(h: int = 160, w: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), (3, 3), 0)


def _moved(image: np.ndarray, warp: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.warpAffine(image, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


@pytest.mark.parametrize("method", ["sparse_flow", "ecc"])
@pytest.mark.parametrize("downscale", [1, 2])
def test_estimate_recovers_a_known_shift(method, downscale):
    image = _texture()
    true = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]])
    cmc = CameraMotion(method=method, downscale=downscale)
    first = cmc.estimate(image)
    assert is_identity(first) and not cmc.last_ok  # nothing to compare the first frame with
    warp = cmc.estimate(_moved(image, true))
    assert cmc.last_ok
    np.testing.assert_allclose(warp, true, atol=0.3 if downscale == 1 else 0.5)


def test_estimate_recovers_a_small_rotation_and_zoom():
    image = _texture(200, 200)
    true = cv2.getRotationMatrix2D((100.0, 100.0), 2.0, 1.02)
    cmc = CameraMotion(downscale=2)
    cmc.estimate(image)
    warp = cmc.estimate(_moved(image, true))
    np.testing.assert_allclose(warp[:, :2], true[:, :2], atol=0.01)
    np.testing.assert_allclose(warp[:, 2], true[:, 2], atol=1.0)


def test_estimate_ignores_what_moves_inside_the_boxes():
    """Corners are taken outside the detections, so objects moving on their own do not pull the estimate."""
    background = _texture(seed=1)
    obj = _texture(40, 40, seed=2)
    a = background.copy()
    a[60:100, 80:120] = obj
    b = _moved(background, np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]]))
    b[60:100, 95:135] = obj  # the object moved 15 px right while the camera moved (2, 1)
    cmc = CameraMotion()
    cmc.estimate(a, np.array([[80.0, 60.0, 120.0, 100.0]]))
    warp = cmc.estimate(b, np.array([[95.0, 60.0, 135.0, 100.0]]))
    np.testing.assert_allclose(warp[:, 2], [2.0, 1.0], atol=0.5)


def test_flat_frames_give_the_identity():
    cmc = CameraMotion()
    flat = np.full((120, 160, 3), 90, np.uint8)
    cmc.estimate(flat)
    assert is_identity(cmc.estimate(flat)) and not cmc.last_ok


def test_a_failed_estimate_falls_back_to_the_recent_motion():
    image, flat = _texture(), np.full((160, 200, 3), 90, np.uint8)
    shift = np.array([[1.0, 0.0, 4.0], [0.0, 1.0, 0.0]])
    recent, identity = CameraMotion(), CameraMotion(fallback="identity")
    for cmc in (recent, identity):
        cmc.estimate(image)
        cmc.estimate(_moved(image, shift))
        assert cmc.last_ok
    np.testing.assert_allclose(recent.estimate(flat)[:, 2], [4.0, 0.0], atol=0.3)  # the camera keeps panning
    assert not recent.last_ok
    assert is_identity(identity.estimate(flat))
    with pytest.raises(ValueError, match="fallback"):
        CameraMotion(fallback="hold")


def test_grey_frames_and_reset():
    grey = cv2.cvtColor(_texture(), cv2.COLOR_RGB2GRAY)
    cmc = CameraMotion()
    cmc.estimate(grey)
    np.testing.assert_allclose(cmc.estimate(np.roll(grey, 2, axis=1))[:, 2], [2.0, 0.0], atol=0.3)
    cmc.reset()
    assert is_identity(cmc.estimate(grey[:100, :100]))  # a new video may have another size


def test_bad_frames_and_arguments():
    cmc = CameraMotion()
    cmc.estimate(_texture())
    with pytest.raises(ValueError, match="size changed"):
        cmc.estimate(_texture(100, 100))
    with pytest.raises(ValueError, match="uint8"):
        cmc.estimate(_texture().astype(np.float32))
    with pytest.raises(ValueError, match="method"):
        CameraMotion(method="orb")
    with pytest.raises(ValueError, match="downscale"):
        CameraMotion(downscale=0.5)
    with pytest.raises(TypeError, match="bad cmc arguments"):
        build_cmc(dict(methd="ecc"))
    with pytest.raises(TypeError, match="cmc must be"):
        build_cmc("sparse_flow")
    assert build_cmc(None) is None
    assert build_cmc(cmc) is cmc
    assert CameraMotion(**cmc.config()).config() == cmc.config()


# --------------------------------------------------------------------------- in the tracker


def _box(cx: float, cy: float, w: float = 20.0, h: float = 40.0) -> np.ndarray:
    return np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])


def test_tracker_moves_tracks_by_the_camera_motion():
    """A still object filmed by a camera panning 6 px/frame: with CMC the track follows the image."""
    world = _texture(160, 400)
    tracker = EmbeddingTracker(cmc=dict(method="sparse_flow", downscale=1), min_hits=1)
    score = np.array([0.9])
    for k in range(4):
        x = 100.0 - 6.0 * k  # the object's image position; the view moved 6 px right per frame
        frame = np.ascontiguousarray(world[:, 6 * k : 6 * k + 200])
        out = tracker.update(_box(x, 80.0), score, frame_id=k + 1, frame=frame)
    np.testing.assert_allclose(tracker.last_warp[:, 2], [-6.0, 0.0], atol=0.3)
    # Predicted for frame 5 before its detection: the warp (-6) is applied on top of the
    # Kalman velocity (which saw no image motion once compensated).
    frame = np.ascontiguousarray(world[:, 24:224])
    out = tracker.predict_only(frame_id=5, frame=frame)
    centre = (out.bboxes[0, 0] + out.bboxes[0, 2]) / 2
    assert abs(centre - 76.0) < 1.0
    assert out.ids.tolist() == [1]


def test_frames_without_pixels_are_made_up_later():
    """CMC on: a frame given without pixels is tracked as without CMC; the next frame
    with pixels warps by the motion since the last pixels (two frames' worth)."""
    world = _texture(160, 400)
    # No check against the detections: the uncompensated frame 2 taught the track the image
    # motion, so the detections would (rightly) prefer no warp on frame 3.
    tracker = EmbeddingTracker(cmc=dict(downscale=1), cmc_check=False)
    tracker.update(_box(100.0, 80.0), np.array([0.9]), frame_id=1, frame=np.ascontiguousarray(world[:, :200]))
    tracker.update(_box(95.0, 80.0), np.array([0.9]), frame_id=2)  # no pixels: no warp
    assert is_identity(tracker.last_warp)
    tracker.update(
        _box(90.0, 80.0), np.array([0.9]), frame_id=3, frame=np.ascontiguousarray(world[:, 10:210])
    )
    np.testing.assert_allclose(tracker.last_warp[:, 2], [-10.0, 0.0], atol=0.3)


def test_without_cmc_the_frame_changes_nothing():
    frames = list(generate_sequence(_PAN_CFG.replace(num_frames=15), 0, 0))
    rng = np.random.default_rng(0)
    dets = [noisy_detections(f.boxes, rng)[:2] for f in frames]
    a, b = EmbeddingTracker(), EmbeddingTracker()
    for f, (boxes, scores) in zip(frames, dets):
        ra = a.update(boxes, scores, frame_id=f.frame_id)
        rb = b.update(boxes, scores, frame_id=f.frame_id, frame=f.image)
        np.testing.assert_array_equal(ra.ids, rb.ids)
        np.testing.assert_array_equal(ra.bboxes, rb.bboxes)
    assert a.cmc is None and is_identity(b.last_warp) and not a.uses_frames
    assert EmbeddingTracker(cmc=dict()).uses_frames


class _WrongCamera(CameraMotion):
    """Estimates a 30 px jump every frame (as a periodic texture can, one period off)."""

    def estimate(self, frame, boxes=None):
        return np.array([[1.0, 0.0, 30.0], [0.0, 1.0, 0.0]])


def test_detections_overrule_a_wrong_warp():
    image = _texture()
    boxes = np.concatenate([_box(50.0, 60.0), _box(120.0, 90.0)])
    scores = np.array([0.9, 0.9])
    checked, unchecked = (
        EmbeddingTracker(cmc=_WrongCamera()),
        EmbeddingTracker(cmc=_WrongCamera(), cmc_check=False),
    )
    for k in range(1, 6):
        a = checked.update(boxes, scores, frame_id=k, frame=image)
        b = unchecked.update(boxes, scores, frame_id=k, frame=image)
    assert a.ids.tolist() == [1, 2] and is_identity(checked.last_warp)
    assert checked.cmc_counts == {"applied": 0, "overruled": 4}
    assert unchecked.cmc_counts["applied"] == 4 and b.ids.tolist() != [1, 2]  # moved off their objects


def test_reset_forgets_the_previous_frame():
    tracker = EmbeddingTracker(cmc=dict())
    image = _texture()
    tracker.update(_box(50.0, 50.0), np.array([0.9]), frame=image)
    tracker.reset()
    tracker.update(
        _box(50.0, 50.0), np.array([0.9]), frame=_texture(100, 120)
    )  # another size: fine after reset
    assert is_identity(tracker.last_warp)


#: Panning, shaking camera over small objects: ID switches without CMC (the floor: 30 % fewer with it).
_PAN_CFG = SceneConfig(
    appearance="sprites",
    num_frames=60,
    image_size=160,
    num_objects=8,
    object_scale=(0.08, 0.15),
    camera_pan=0.0,
    camera_speed=3.0,
    camera_period=40,
    camera_shake=4.0,
)


def test_cmc_cuts_identity_switches_on_a_moving_camera():
    """Ground-truth boxes with jitter and misses, tracked by IoU with and without CMC."""
    cv2.setNumThreads(1)
    gt, results = {}, {False: {}, True: {}}
    for seq in range(4):
        frames = list(generate_sequence(_PAN_CFG, seq, 0))
        rng = np.random.default_rng(seq)
        dets = [noisy_detections(f.boxes[~f.ignore], rng, jitter=0.03, drop=0.1)[:2] for f in frames]
        gt[str(seq)] = np.array(
            [
                [
                    f.frame_id,
                    f.instance_ids[i],
                    *xyxy_to_mot(f.boxes[i : i + 1])[0],
                    float(not f.ignore[i]),
                    1,
                    1,
                ]
                for f in frames
                for i in range(len(f.boxes))
            ]
        )
        for cmc in (False, True):
            tracker = EmbeddingTracker(cmc=dict(method="sparse_flow", downscale=2) if cmc else None)
            rows = [
                tracks_to_mot_rows(f.frame_id, tracker.update(b, s, frame_id=f.frame_id, frame=f.image))
                for f, (b, s) in zip(frames, dets)
            ]
            results[cmc][str(seq)] = np.concatenate(rows)
    off = evaluate_mot(gt, results[False], hota=False)
    on = evaluate_mot(gt, results[True], hota=False)
    assert off["IDSW"] >= 20  # the scene is hard without CMC
    assert on["IDSW"] <= 0.7 * off["IDSW"]
    assert on["IDF1"] > off["IDF1"] and on["MOTA"] > off["MOTA"]
