"""BoxMOT peer trackers behind our interface: parity with BoxMOT itself, options, frames, no re-ID download."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import numpy as np
import pytest

from mtmnv3.data.synth import SceneConfig, generate_sequence, noisy_detections
from mtmnv3.tracking import (
    PEER_TRACKERS,
    TRACKER_TYPES,
    BoxMOTBoTSORT,
    BoxMOTByteTrack,
    BoxMOTOCSort,
    TrackResult,
    build_tracker,
)
from mtmnv3.tracking.peers import BOXMOT_VERSION, import_boxmot

needs_boxmot = pytest.mark.skipif(
    importlib.util.find_spec("boxmot") is None, reason="boxmot is not installed (the trackers extra)"
)

#: A panning, shaking camera over a few objects: the sequence every parity test runs.
SCENE = SceneConfig(
    appearance="sprites",
    num_frames=30,
    image_size=128,
    num_objects=5,
    object_scale=(0.12, 0.25),
    camera_pan=0.0,
    camera_speed=2.0,
    camera_period=30,
    camera_shake=2.0,
)


@pytest.fixture(scope="module")
def sequence():
    """Frames (RGB) and per-frame detections: jittered ground truth, some frames empty, embeddings per identity."""
    frames = list(generate_sequence(SCENE, 0, 0))
    rng = np.random.default_rng(0)
    looks: dict[int, np.ndarray] = {}
    out = []
    for f in frames:
        keep = np.flatnonzero(~f.ignore)
        boxes, scores, kept = noisy_detections(
            f.boxes[keep], rng, jitter=0.03, drop=0.1, score_range=(0.2, 1.0)
        )
        ids = f.instance_ids[keep][kept]
        emb = np.stack([looks.setdefault(int(i), rng.standard_normal(8)) for i in ids]) if len(ids) else None
        if emb is not None:
            emb = (emb + 0.2 * rng.standard_normal(emb.shape)).astype(np.float32)
        labels = f.labels[keep][kept]
        if f.frame_id in (7, 8):  # frames where the detector found nothing
            boxes, scores, labels, emb = (
                np.zeros((0, 4)),
                np.zeros(0),
                np.zeros(0, np.int64),
                np.zeros((0, 8)),
            )
        out.append((f.frame_id, f.image, boxes, scores, labels, emb))
    return out


def _direct_rows(tracker, boxes, scores, labels, image=None):
    dets = np.column_stack([boxes, scores, labels]).astype(np.float32).reshape(-1, 6)
    rows = np.asarray(tracker.update(dets, image), np.float64).reshape(-1, 8)
    return rows[np.argsort(rows[:, 4], kind="stable")]


def _assert_same(result: TrackResult, rows: np.ndarray) -> None:
    """Our result equals BoxMOT's rows ``x1, y1, x2, y2, id, conf, cls, det_ind`` (ids + 1)."""
    np.testing.assert_array_equal(result.ids, rows[:, 4].astype(np.int64) + 1)
    np.testing.assert_allclose(result.bboxes, rows[:, :4], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.scores, rows[:, 5], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(result.labels, rows[:, 6].astype(np.int64))


# --------------------------------------------------------------------------- registry and install


def test_peers_are_registered_next_to_ours():
    assert set(PEER_TRACKERS) == {"BoxMOTByteTrack", "BoxMOTOCSort", "BoxMOTBoTSORT"}
    assert set(PEER_TRACKERS) < set(TRACKER_TYPES) and "EmbeddingTracker" in TRACKER_TYPES
    with pytest.raises(ValueError, match=r"BoxMOT peers \(need boxmot\): \['BoxMOTBoTSORT'"):
        build_tracker(dict(type="BoxMOTSort"))


def test_missing_boxmot_names_the_package_and_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "boxmot", None)  # import boxmot -> ImportError
    with pytest.raises(
        ImportError, match=r"'boxmot' package \(BoxMOT 25\.0\.0\).*pip install --no-deps boxmot"
    ):
        build_tracker(dict(type="BoxMOTOCSort"))
    import mtmnv3.tracking  # noqa: F401  (importing our package never needs boxmot)


@needs_boxmot
def test_pinned_boxmot_version():
    assert import_boxmot().__version__ == BOXMOT_VERSION


# --------------------------------------------------------------------------- parity with BoxMOT


@needs_boxmot
@pytest.mark.parametrize(
    "ours, theirs, kwargs",
    [
        (BoxMOTByteTrack, "ByteTrack", dict(frame_rate=30.0)),
        (BoxMOTOCSort, "OcSort", dict(max_age=30)),
    ],
)
def test_motion_only_peers_equal_boxmot(sequence, ours, theirs, kwargs):
    import boxmot

    adapter = ours()
    direct = getattr(boxmot, theirs)(**kwargs)
    shown = 0
    for fid, image, boxes, scores, labels, emb in sequence:
        result = adapter.update(boxes, scores, labels, emb, frame_id=fid, frame=image)
        _assert_same(result, _direct_rows(direct, boxes, scores, labels))
        shown += len(result.ids)
    assert shown > 20 and adapter.frame_id == sequence[-1][0]
    adapter.reset()  # a new video: ids from 1 again, as a fresh BoxMOT tracker
    fid, image, boxes, scores, labels, emb = sequence[0]
    _assert_same(
        adapter.update(boxes, scores, labels),
        _direct_rows(getattr(boxmot, theirs)(**kwargs), boxes, scores, labels),
    )
    assert adapter.update(*sequence[1][2:5]).ids.min() == 1


@needs_boxmot
@pytest.mark.parametrize("cmc_method", [None, "sof"])
def test_botsort_with_our_embeddings_equals_boxmot(sequence, cmc_method):
    """BoT-SORT fed our embeddings (and, with CMC, the frames as BGR) gives BoxMOT's own tracks."""
    import boxmot
    import torch
    from boxmot.structures import Boxes, Detections

    class Refuse:
        def get_features(self, boxes, image):
            raise AssertionError("no re-ID model may run")

    adapter = BoxMOTBoTSORT(cmc_method=cmc_method)
    direct = boxmot.BotSort(
        use_cmc=cmc_method is not None, cmc_method=cmc_method or "ecc", frame_rate=30.0, reid_model=Refuse()
    )
    for fid, image, boxes, scores, labels, emb in sequence:
        result = adapter.update(boxes, scores, labels, emb, frame_id=fid, frame=image)
        n = len(boxes)
        dets = Detections(
            geometry=Boxes(torch.from_numpy(np.asarray(boxes, np.float32).reshape(n, 4))),
            scores=torch.from_numpy(np.asarray(scores, np.float32)),
            class_ids=torch.from_numpy(np.asarray(labels, np.int64)),
            sample_id=f"f{fid}",
            embeddings=None if emb is None or n == 0 else torch.from_numpy(np.asarray(emb, np.float32)),
        )
        tracks = direct.update(dets, np.ascontiguousarray(image[..., ::-1]) if cmc_method else None)
        rows = np.column_stack(
            [
                tracks.geometry.values.numpy(),
                tracks.track_ids.numpy(),
                tracks.scores.numpy(),
                tracks.class_ids.numpy(),
                tracks.detection_indices.numpy(),
            ]
        ).astype(np.float64)
        _assert_same(result, rows[np.argsort(rows[:, 4], kind="stable")])
    assert (adapter.boxmot_tracker.cmc is not None) == (cmc_method is not None)


@needs_boxmot
def test_skipped_frames_are_empty_boxmot_frames(sequence):
    import boxmot

    adapter, direct = BoxMOTByteTrack(), boxmot.ByteTrack(frame_rate=30.0)
    for k, (fid, _, boxes, scores, labels, _) in enumerate(sequence[:12]):
        if k % 3 == 1:
            continue  # frame_id jumps by 2
        if k % 3 == 2:
            _direct_rows(direct, np.zeros((0, 4)), np.zeros(0), np.zeros(0))
        _assert_same(
            adapter.update(boxes, scores, labels, frame_id=fid), _direct_rows(direct, boxes, scores, labels)
        )
    with pytest.raises(ValueError, match="frame_id must increase"):
        adapter.update(np.zeros((0, 4)), np.zeros(0), frame_id=3)


@needs_boxmot
def test_our_option_names_are_translated():
    import boxmot

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bt = BoxMOTByteTrack(high_thr=0.4, low_thr=0.05, match_thr=0.7, track_buffer=60, frame_rate=15.0)
    assert (bt.boxmot_tracker.track_thresh, bt.boxmot_tracker.min_conf, bt.boxmot_tracker.match_thresh) == (
        0.4,
        0.05,
        0.7,
    )
    assert bt.boxmot_tracker.max_time_lost == 30
    oc = BoxMOTOCSort(high_thr=0.4, track_buffer=20, frame_rate=60.0, delta_t=2)
    assert (oc.boxmot_tracker.det_thresh, oc.boxmot_tracker.max_age, oc.boxmot_tracker.delta_t) == (
        0.4,
        40,
        2,
    )
    bs = BoxMOTBoTSORT(
        high_thr=0.4, new_track_thr=0.5, proximity_thr=0.4, use_embeddings=False, cmc_method=None
    )
    t = bs.boxmot_tracker
    assert (t.track_high_thresh, t.new_track_thresh, t.proximity_thresh, t.use_embeddings) == (
        0.4,
        0.5,
        0.4,
        False,
    )
    assert isinstance(t, boxmot.BotSort) and t.cmc is None


@needs_boxmot
def test_the_default_config_tracker_can_be_swapped_for_a_peer():
    """``--cfg-options tracker.type=BoxMOTOCSort`` keeps the config's other keys: the score
    thresholds carry over, our association's own options are ignored with a warning."""
    from mtmnv3.engine import load_config

    cfg = dict(load_config("configs/mtmnv3_small_3task_synth.py", {"tracker.type": "BoxMOTOCSort"}).tracker)
    with pytest.warns(
        UserWarning, match="BoxMOTOCSort ignores fusion, gate_position_only, gate_thr, kalman, new_track_thr"
    ):
        tracker = build_tracker({**cfg, "use_embeddings": True, "frame_rate": 25.0})
    assert tracker.boxmot_tracker.det_thresh == cfg["high_thr"]
    with pytest.raises(TypeError, match="bad arguments for tracker BoxMOTByteTrack"):
        build_tracker(dict(type="BoxMOTByteTrack", hihg_thr=0.5))
    with pytest.raises(TypeError, match="set the same option"):
        BoxMOTByteTrack(high_thr=0.5, track_thresh=0.6)
    with pytest.raises(TypeError, match="never loads a re-ID model"):
        BoxMOTBoTSORT(reid_weights="osnet_x0_25_msmt17.pt")


# --------------------------------------------------------------------------- BoT-SORT's inputs


@needs_boxmot
def test_botsort_needs_our_embeddings_and_never_its_own(sequence):
    _, image, boxes, scores, labels, emb = sequence[0]
    tracker = BoxMOTBoTSORT()
    with pytest.raises(ValueError, match="needs the detections' embeddings"):
        tracker.update(boxes, scores, labels, None, frame=image)
    assert type(tracker.boxmot_tracker._reid_model).__name__ == "_NoReID"
    iou_only = BoxMOTBoTSORT(use_embeddings=False)
    born = iou_only.update(boxes, scores, labels, None, frame=image)
    assert len(born.ids) == int((scores >= 0.6).sum()) > 0  # new_track_thresh
    assert "boxmot.reid.core" not in sys.modules


@needs_boxmot
def test_botsort_cmc_runs_only_where_frames_come(sequence):
    without = BoxMOTBoTSORT()
    for fid, _, boxes, scores, labels, emb in sequence[:3]:
        without.update(boxes, scores, labels, emb, frame_id=fid)  # no pixels: CMC off for this video
    assert without.boxmot_tracker.cmc is None
    assert without.uses_frames and not BoxMOTBoTSORT(cmc_method=None).uses_frames
    assert not BoxMOTByteTrack().uses_frames and not BoxMOTOCSort().uses_frames
    with_frames = BoxMOTBoTSORT()
    fid, image, boxes, scores, labels, emb = sequence[0]
    with_frames.update(boxes, scores, labels, emb, frame_id=fid, frame=image)
    assert with_frames.boxmot_tracker.cmc is not None
    with pytest.raises(ValueError, match="pass frame= on every frame"):
        with_frames.update(*sequence[1][2:6], frame_id=2)
    with_frames.reset()
    with_frames.update(boxes, scores, labels, emb, frame_id=1)  # a new video without pixels is fine
    assert with_frames.boxmot_tracker.cmc is None


@needs_boxmot
def test_predict_only_is_an_empty_frame_and_bad_inputs_are_named(sequence):
    _, _, boxes, scores, labels, _ = sequence[0]
    tracker = BoxMOTByteTrack()
    tracker.update(boxes, scores, labels)
    out = tracker.predict_only()
    assert len(out.ids) == 0 and out.bboxes.shape == (0, 4) and tracker.frame_id == 2
    with pytest.raises(ValueError, match="scores must be in"):
        tracker.update(boxes, scores + 1.0, labels)
    with pytest.raises(ValueError, match="labels must be"):
        tracker.update(boxes, scores, -np.ones(len(boxes)))
    with pytest.raises(ValueError, match="bboxes must have shape"):
        tracker.update(boxes[:, :3], scores)
    assert (
        len(tracker.update(np.array([[5.0, 5.0, 5.0, 9.0]]), np.array([0.9])).ids) == 0
    )  # zero width: ignored
