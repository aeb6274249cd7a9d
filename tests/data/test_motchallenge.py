"""MOTChallenge benchmark folders with the MOT17 protocol: classes 1-12, ignore regions, one copy
of each sequence, identities across sequences, the half split, a test split without ground truth."""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pytest

from mtmnv3.data import DataError, MOTChallengeDataset
from mtmnv3.data.mot import MOT17_CLASSES, MotSequenceInfo, write_seqinfo

W, H = 96, 64
#: MOT17-02: (id, class, consider, visibility, box (left, top, w, h) at frame 1, dx per frame, frames)
SEQ02 = [
    (1, 1, 1, 1.0, (6, 10, 14, 30), 2, range(1, 7)),  # pedestrian
    (2, 1, 1, 0.3, (40, 20, 12, 28), 0, range(1, 7)),  # pedestrian, mostly occluded
    (3, 7, 0, 1.0, (70, 5, 10, 25), 0, range(1, 7)),  # static person: an ignore region
    (4, 3, 0, 1.0, (55, 38, 30, 20), -1, range(1, 7)),  # car: not used
    (5, 1, 0, 1.0, (22, 33, 10, 25), 0, range(1, 4)),  # pedestrian with consider 0
    (6, 2, 0, 1.0, (80, 30, 8, 20), 0, range(1, 2)),  # person on vehicle: ignore region
    (7, 4, 0, 1.0, (1, 50, 10, 8), 0, range(1, 2)),  # bicycle
    (8, 5, 0, 1.0, (12, 50, 10, 8), 0, range(1, 2)),  # motorbike
    (9, 6, 0, 1.0, (24, 50, 10, 8), 0, range(1, 2)),  # non-motorized vehicle
    (10, 8, 0, 1.0, (36, 50, 10, 8), 0, range(1, 2)),  # distractor: ignore region
    (11, 9, 0, 1.0, (48, 50, 10, 8), 0, range(1, 2)),  # occluder
    (12, 10, 0, 1.0, (60, 50, 10, 8), 0, range(1, 2)),  # occluder on the ground
    (13, 11, 0, 1.0, (72, 50, 10, 8), 0, range(1, 2)),  # occluder full
    (14, 12, 0, 1.0, (84, 50, 10, 8), 0, range(1, 2)),  # reflection: ignore region
]
#: MOT17-04: its ids 1 and 2 are other people than MOT17-02's 1 and 2.
SEQ04 = [
    (1, 1, 1, 0.8, (10, 12, 12, 30), 3, range(1, 7)),
    (2, 8, 0, 1.0, (60, 10, 10, 24), 0, range(1, 7)),  # distractor
    (3, 1, 1, 1.0, (50, 30, 14, 30), -2, range(1, 7)),
]


def _frame(t, rows, seed):
    """A JPEG-able frame: textured background, a filled box per object (pedestrians brighter)."""
    rng = np.random.default_rng(seed * 100 + t)
    img = rng.integers(40, 90, (H, W, 3), dtype=np.uint8)
    for ident, cls, _, _, (x, y, w, h), dx, frames in rows:
        if t in frames:
            x = x + dx * (t - 1)
            colour = (60 + 40 * (ident % 4), 200, 230) if cls == 1 else (30, 30, 150)
            cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, -1)
    return img


def _gt_lines(rows):
    lines = []
    for ident, cls, consider, vis, (x, y, w, h), dx, frames in rows:
        for t in frames:
            # MOTChallenge corners are 1-based
            lines.append(f"{t},{ident},{x + dx * (t - 1) + 1},{y + 1},{w},{h},{consider},{cls},{vis}")
    return "\n".join(sorted(lines, key=lambda s: int(s.split(",")[0]))) + "\n"


def write_sequence(seq_dir, rows, n, seed, gt=True):
    """One MOTChallenge sequence folder: seqinfo.ini, img1/*.jpg, gt/gt.txt (when ``gt``)."""
    (seq_dir / "img1").mkdir(parents=True)
    write_seqinfo(seq_dir / "seqinfo.ini", MotSequenceInfo(seq_dir.name, "img1", 30, n, W, H, ".jpg"))
    for t in range(1, n + 1):
        cv2.imwrite(str(seq_dir / "img1" / f"{t:06d}.jpg"), _frame(t, rows, seed))
    if gt:
        (seq_dir / "gt").mkdir()
        (seq_dir / "gt" / "gt.txt").write_text(_gt_lines(rows))


def write_mot17(root, n=6, n_test=4):
    """A MOT17-shaped benchmark: ``train/`` with MOT17-02 (DPM/FRCNN/SDP copies) and MOT17-04
    (FRCNN/SDP), ``test/`` with MOT17-01 (three copies, no ground truth)."""
    root = Path(root)
    for det in ("DPM", "FRCNN", "SDP"):
        write_sequence(root / "train" / f"MOT17-02-{det}", SEQ02, n, seed=2)
        write_sequence(root / "test" / f"MOT17-01-{det}", SEQ04, n_test, seed=1, gt=False)
    for det in ("FRCNN", "SDP"):
        write_sequence(root / "train" / f"MOT17-04-{det}", SEQ04, n, seed=4)
    return root


@pytest.fixture(scope="module")
def mot17(tmp_path_factory):
    return write_mot17(tmp_path_factory.mktemp("mot17") / "MOT17")


def _load(root, **kw):
    kw = {"split": "train", "protocol": "mot17", "classes": ("pedestrian",), "prefer_detector": "FRCNN", **kw}
    return MOTChallengeDataset(data_root=str(root), **kw)


def _annotations(ds):
    """{(video name, frame): sample info} without reading images."""
    videos = ds.metainfo["videos"]
    return {
        (videos[d["video_id"] - 1], d["frame_id"]): d for d in (ds.get_data_info(i) for i in range(len(ds)))
    }


def _box(rows, ident, t):
    _, _, _, _, (x, y, w, h), dx, _ = next(r for r in rows if r[0] == ident)
    x = x + dx * (t - 1)
    return [x, y, x + w, y + h]


def test_mot17_protocol_classes_ignore_regions_and_one_copy(mot17):
    with mock.patch("mtmnv3.data.motchallenge.print_log") as print_log:
        ds = _load(mot17)
    assert ds.metainfo["videos"] == ("MOT17-02-FRCNN", "MOT17-04-FRCNN")
    assert [s.copies for s in ds.sequences] == [("MOT17-02-DPM", "MOT17-02-SDP"), ("MOT17-04-SDP",)]
    assert len(ds) == 12 and ds.has_gt
    f1 = _annotations(ds)["MOT17-02-FRCNN", 1]
    # pedestrians 1, 2, 5 (label 0); ignore regions: static person 3, person on vehicle 6,
    # distractor 10, reflection 14; vehicles and occluders are not read
    boxes = {
        tuple(b): (int(label), bool(ign))
        for b, label, ign in zip(f1["gt_bboxes"], f1["gt_labels"], f1["gt_ignore"])
    }
    expected = {1: False, 2: False, 5: True, 3: True, 6: True, 10: True, 14: True}
    assert len(boxes) == len(expected)
    for ident, ignore in expected.items():
        assert boxes[tuple(float(v) for v in _box(SEQ02, ident, 1))] == (0, ignore), ident
    assert f1["tasks"] == ("det", "track")
    log = print_log.call_args.args[0]
    assert "12 frames of 2 sequences; 4 training identities; boxes trained: pedestrian 27" in log
    assert "ignore regions: person_on_vehicle 1, static_person 6, distractor 7, reflection 1" in log
    assert "boxes not used: car 6, bicycle 1, motorbike 1, non_mot_vehicle 1, occluder 1, " in log
    assert "3 boxes with consider=0 ignored" in log


def _at(d, key, rows, ident, t):
    """The ``key`` value of identity ``ident``'s box in the sample info ``d`` of frame ``t``."""
    by_box = dict(zip(map(tuple, d["gt_bboxes"].tolist()), d[key].tolist()))
    return by_box[tuple(map(float, _box(rows, ident, t)))]


def test_identities_unique_across_sequences_and_classifier_size(mot17):
    ds = _load(mot17)
    anns = _annotations(ds)
    one02 = _at(anns["MOT17-02-FRCNN", 1], "gt_instance_ids", SEQ02, 1, 1)
    one04 = _at(anns["MOT17-04-FRCNN", 1], "gt_instance_ids", SEQ04, 1, 1)
    assert one02 != one04  # both files call them 1
    for t in range(2, 7):  # each keeps its id through its sequence
        assert _at(anns["MOT17-02-FRCNN", t], "gt_instance_ids", SEQ02, 1, t) == one02
        assert _at(anns["MOT17-04-FRCNN", t], "gt_instance_ids", SEQ04, 1, t) == one04
    # trained identities: 02's pedestrians 1 and 2, 04's 1 and 3 (02's 5 is only ever consider=0)
    assert ds.metainfo["num_ids"] == 4
    trained = {i for d in anns.values() for i, ign in zip(d["gt_instance_ids"], d["gt_ignore"]) if not ign}
    assert trained == {0, 1, 2, 3}
    ignored_only = {i for d in anns.values() for i in d["gt_instance_ids"]} - trained
    assert ignored_only and min(ignored_only) >= 4
    with pytest.raises(
        DataError, match=r"4 training identities but num_ids=3; set the embedding head's num_ids"
    ):
        _load(mot17, num_ids=3)


def test_embedding_head_trains_on_the_identities(mot17):
    import torch
    from mtmnv3.heads.base import EMBEDDING  # noqa: F401  (registers the heads)

    from mtmnv3.core.registry import MODELS

    ds = _load(mot17, pipeline=[dict(type="Letterbox", size=(96, 64)), dict(type="PackMultiTaskInputs")])
    head = MODELS.build(
        dict(type="EmbeddingHead", in_channels=8, strides=(8,), num_ids=ds.metainfo["num_ids"], embed_dim=8)
    )
    samples = [ds[i]["data_samples"] for i in (0, 6)]
    loss = head.loss(torch.randn(2, 8, 8, 12), samples)["loss_emb"]
    assert torch.isfinite(loss) and loss > 0


def test_min_visibility_makes_ignore_regions(mot17):
    d = _annotations(_load(mot17, min_visibility=0.5))["MOT17-02-FRCNN", 2]
    assert _at(d, "gt_ignore", SEQ02, 2, 2) is True  # visibility 0.3
    assert _at(d, "gt_ignore", SEQ02, 1, 2) is False
    assert _load(mot17, min_visibility=0.5).metainfo["num_ids"] == 3


def test_half_split(mot17):
    first, second = _load(mot17, half="first"), _load(mot17, half="second")
    assert sorted({d["frame_id"] for d in _annotations(first).values()}) == [1, 2, 3, 4]  # 6 // 2 + 1
    assert sorted({d["frame_id"] for d in _annotations(second).values()}) == [5, 6]
    assert [(s.first_frame, s.last_frame) for s in second.sequences] == [(5, 6), (5, 6)]
    assert len(first) + len(second) == len(_load(mot17))
    assert second[0]["img"].shape == (H, W, 3) and second[0]["frame_id"] == 5


def test_test_split_without_gt(mot17):
    ds = _load(mot17, split="test", with_gt=None)
    assert not ds.has_gt and ds.metainfo["videos"] == ("MOT17-01-FRCNN",)
    assert ds.sequences[0].copies == ("MOT17-01-DPM", "MOT17-01-SDP") and len(ds) == 4
    s = ds[0]
    assert s["tasks"] == () and len(s["gt_bboxes"]) == 0 and s["img"].shape == (H, W, 3)
    with pytest.raises(DataError, match=r"half=.second. .*\(a test split: set half=None\)"):
        _load(mot17, split="test", with_gt=None, half="second")
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: .*MOT17-01-FRCNN/gt/gt\.txt"):
        _load(mot17, split="test")  # with_gt=True asks for the files


def test_detector_copies(mot17, tmp_path):
    assert _load(mot17, prefer_detector="SDP").metainfo["videos"] == ("MOT17-02-SDP", "MOT17-04-SDP")
    assert _load(mot17, prefer_detector=("DPM", "SDP")).metainfo["videos"] == ("MOT17-02-DPM", "MOT17-04-SDP")
    every = _load(mot17, prefer_detector=None)
    assert len(every.metainfo["videos"]) == 5 and every.metainfo["num_ids"] == 3 * 2 + 2 * 2
    with pytest.raises(ValueError, match="prefer_detector must name detectors from"):
        _load(mot17, prefer_detector="YOLO")
    root = tmp_path / "MOT17"
    shutil.copytree(mot17, root)
    ini = root / "train" / "MOT17-02-SDP" / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("seqLength = 6", "seqLength = 5"))
    with pytest.raises(DataError, match="has 5 frames but .*MOT17-02-FRCNN' has 6: they are not copies"):
        _load(root)


def test_classes_outside_the_lists(mot17, tmp_path):
    # distractors not listed as ignore regions are not used (counted in the log, never merged)
    d = _annotations(_load(mot17, ignore_classes=()))["MOT17-02-FRCNN", 1]
    assert len(d["gt_bboxes"]) == 3  # pedestrians 1, 2, 5
    # a class id MOT17 does not have: not used, counted in a warning naming the file and line
    root = tmp_path / "MOT17"
    shutil.copytree(mot17, root)
    gt = root / "train" / "MOT17-04-FRCNN" / "gt" / "gt.txt"
    gt.write_text(gt.read_text() + "6,9,1,1,5,5,1,13,1.0\n6,10,1,20,5,5,1,13,1.0\n")
    with pytest.warns(
        UserWarning, match=r"2 boxes of class 13 \(not in the class list\) not used \(first at .*gt\.txt:19\)"
    ):
        ds = _load(root)
    assert ds.metainfo["num_ids"] == 4
    # names outside MOT17's
    with pytest.raises(ValueError, match=r"not MOT17 class names: \['person'\]"):
        _load(mot17, classes=("person",))
    # without the protocol the class column counts 1..len(classes): MOT17 files fail loudly
    with pytest.raises(DataError, match=r"gt\.txt:\d+: class \d+ outside 1\.\.1"):
        _load(mot17, protocol=None)


def test_two_classes(mot17):
    ds = _load(mot17, classes=("pedestrian", "car"))
    d = _annotations(ds)["MOT17-02-FRCNN", 1]
    assert _at(d, "gt_labels", SEQ02, 4, 1) == 1 and _at(d, "gt_labels", SEQ02, 1, 1) == 0


@pytest.mark.parametrize(
    "where, match",
    [
        ("root_missing", r"MOTChallenge root not found: .*nowhere.* \(expected ROOT/\{train,test\}/SEQ/"),
        (
            "split_missing",
            r"split folder not found: .*MOT17/val' \(expected ROOT/\{train,test\}/SEQ/.*holds \['test', 'train'\]",
        ),
        ("no_split", r"no sequence folders with a seqinfo\.ini; it holds train/, test/: set split='train'"),
        (
            "sequence_as_root",
            r"MOT17-02-FRCNN' is a sequence folder \(it holds seqinfo\.ini\); give the folder",
        ),
        ("no_seqinfo", r"seqinfo\.ini not found: .*train/MOT17-04-SDP/seqinfo\.ini"),
        ("no_image", r"seqinfo\.ini: image file not found: .*MOT17-04-FRCNN/img1/000003\.jpg"),
        ("seq_name", r"sequence folder\(s\) not found under .*: \['MOT17-09-FRCNN'\]"),
    ],
)
def test_bad_layout_names_path_and_layout(mot17, tmp_path, where, match):
    root = tmp_path / "MOT17"
    shutil.copytree(mot17, root)
    kw = {}
    if where == "root_missing":
        root = tmp_path / "nowhere"
    elif where == "split_missing":
        kw["split"] = "val"
    elif where == "no_split":
        kw["split"] = None
    elif where == "sequence_as_root":
        root, kw["split"] = root / "train" / "MOT17-02-FRCNN", None
    elif where == "no_seqinfo":
        (root / "train" / "MOT17-04-SDP" / "seqinfo.ini").unlink()
    elif where == "no_image":
        (root / "train" / "MOT17-04-FRCNN" / "img1" / "000003.jpg").unlink()
    elif where == "seq_name":
        kw["seq_names"] = ["MOT17-09-FRCNN"]
    with pytest.raises((FileNotFoundError, DataError), match=match):
        _load(root, **kw)


def test_mot17_class_table_complete():
    assert sorted(MOT17_CLASSES) == list(range(1, 13))


def _tracks(rows, plan):
    """Result rows ``frame,id,left,top,w,h,conf,-1,-1,-1`` from ``{track id: [(gt id, frames, dx)]}``."""
    out = []
    for track, parts in plan.items():
        for ident, frames, shift in parts:
            for t in frames:
                x1, y1, x2, y2 = _box(rows, ident, t)
                out.append([t, track, x1 + 1 + shift, y1 + 1, x2 - x1, y2 - y1, 0.9, -1, -1, -1])
    return np.array(out, np.float64)


def test_mot17_evaluation_protocol_matches_trackeval(mot17, tmp_path):
    """evaluate_mot(protocol='mot17') against TrackEval's own MOTChallenge preprocessing and metrics."""
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, HOTA, Identity

    from mtmnv3.data.mot_io import load_mot_txt, write_mot_txt
    from mtmnv3.evaluation import evaluate_mot

    results = {
        "MOT17-02-FRCNN": _tracks(
            SEQ02,
            {
                1: [(1, range(1, 7), 0)],  # a pedestrian, followed
                2: [(2, range(1, 4), 1)],  # another, then an identity switch
                3: [(2, range(4, 7), 0)],
                4: [(3, range(1, 7), 0)],  # on a static person (a distractor): dropped
                5: [(4, range(1, 7), 0)],  # on a car: a false positive
                6: [(5, range(1, 4), 0)],  # on a consider=0 pedestrian: not evaluated, so a false positive
                7: [(14, range(1, 2), 0)],  # on a reflection: dropped
                8: [(7, range(1, 2), 0)],  # on a bicycle: a false positive
            },
        ),
        "MOT17-04-FRCNN": _tracks(SEQ04, {9: [(3, range(2, 7), 2)], 10: [(2, range(1, 7), 0)]}),
    }
    trackers = tmp_path / "trackers"
    for name, rows in results.items():
        write_mot_txt(trackers / "mine" / "data" / f"{name}.txt", rows)
    dataset = MotChallenge2DBox(
        {
            "GT_FOLDER": str(mot17 / "train"),
            "TRACKERS_FOLDER": str(trackers),
            "BENCHMARK": "MOT17",
            "SPLIT_TO_EVAL": "train",
            "TRACKERS_TO_EVAL": ["mine"],
            "SEQ_INFO": dict.fromkeys(results),
            "SKIP_SPLIT_FOL": True,
            "PRINT_CONFIG": False,
        }
    )
    metrics = {
        "HOTA": HOTA(),
        "CLEAR": CLEAR({"PRINT_CONFIG": False}),
        "Identity": Identity({"PRINT_CONFIG": False}),
    }
    per_seq = {k: {} for k in metrics}
    for name in results:
        data = dataset.get_preprocessed_seq_data(dataset.get_raw_seq_data("mine", name), "pedestrian")
        for k, m in metrics.items():
            per_seq[k][name] = m.eval_sequence(data)
    ref = {k: m.combine_sequences(per_seq[k]) for k, m in metrics.items()}
    gt = {name: load_mot_txt(mot17 / "train" / name / "gt" / "gt.txt") for name in results}
    ours = evaluate_mot(
        gt, {n: load_mot_txt(trackers / "mine" / "data" / f"{n}.txt") for n in results}, protocol="mot17"
    )
    assert ours["FP"] == ref["CLEAR"]["CLR_FP"] == 6 + 3 + 1
    assert ours["FN"] == ref["CLEAR"]["CLR_FN"] and ours["IDSW"] == ref["CLEAR"]["IDSW"] == 1
    assert ours["MOTA"] == pytest.approx(ref["CLEAR"]["MOTA"])
    assert ours["IDF1"] == pytest.approx(ref["Identity"]["IDF1"])
    assert ours["HOTA"] == pytest.approx(float(np.mean(ref["HOTA"]["HOTA"])))
    # class-agnostic (no protocol): every mark-0 box is an ignore region, classes do not count
    assert (
        evaluate_mot(gt, {n: load_mot_txt(trackers / "mine" / "data" / f"{n}.txt") for n in results})["FP"]
        == 0
    )
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_mot(gt, gt, protocol="mot20")
