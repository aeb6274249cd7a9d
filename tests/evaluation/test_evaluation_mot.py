"""MOT metrics on hand-made tracks whose answers are worked out below."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import BaseDataElement, InstanceData

from mtmnv3.data.mot import xyxy_to_mot
from mtmnv3.data.mot_io import MOTFormatError, load_mot_txt, write_mot_txt
from mtmnv3.evaluation import MOTMetric, evaluate_mot, evaluate_mot_files

# Two objects far apart; boxes as (left, top, width, height).
BOX_A = (10.0, 10.0, 50.0, 100.0)
BOX_B = (200.0, 10.0, 50.0, 100.0)
BOX_FAR = (400.0, 300.0, 30.0, 30.0)  # overlaps nothing


def rows(*entries: tuple) -> np.ndarray:
    """``(frame, id, box)`` -> MOTChallenge rows with conf 1."""
    return np.array([[f, i, *box, 1.0] for f, i, box in entries], dtype=np.float64)


def two_objects_four_frames() -> np.ndarray:
    return rows(*[(f, 1, BOX_A) for f in range(1, 5)], *[(f, 2, BOX_B) for f in range(1, 5)])


def hand_case_results() -> np.ndarray:
    """Tracks for :func:`two_objects_four_frames` with one IDSW, one FP, one FN.

    frame 1-3: track 1 on A, track 2 on B
    frame 4:   track 3 on A (A switches from 1 to 3: IDSW), B missed (FN),
               track 4 on empty ground (FP)
    """
    return rows(
        *[(f, 1, BOX_A) for f in (1, 2, 3)],
        *[(f, 2, BOX_B) for f in (1, 2, 3)],
        (4, 3, BOX_A),
        (4, 4, BOX_FAR),
    )


def test_hand_case_mota_idf1_hota():
    m = evaluate_mot({"s": two_objects_four_frames()}, {"s": hand_case_results()})
    # CLEAR: GT = 8 boxes, FN = 1, FP = 1, IDSW = 1 -> MOTA = 1 - 3/8.
    assert (m["FN"], m["FP"], m["IDSW"]) == (1, 1, 1)
    assert m["MOTA"] == pytest.approx(1 - 3 / 8)
    # Identity: best one-to-one id map is A<->1 (3 frames), B<->2 (3 frames).
    # IDTP = 6, IDFN = 8 - 6 = 2, IDFP = 8 result boxes - 6 = 2
    # IDF1 = 2*6 / (2*6 + 2 + 2) = 12/16.
    assert m["IDF1"] == pytest.approx(12 / 16)
    # Matched boxes are identical: MOTP (mean IoU) = 1.
    assert m["MOTP"] == pytest.approx(1.0)
    # HOTA (similarity is 1 for every match, so every alpha gives the same):
    # TP = 7, FN = 1, FP = 1 -> DetA = 7/9.
    # AssA = mean over TPs of TPA/(TPA+FNA+FPA) of the TP's (gt, track) pair:
    #   (A,1): 3 TPs, |A| = 4, |1| = 3 -> 3/(4+3-3) = 3/4
    #   (A,3): 1 TP,  |A| = 4, |3| = 1 -> 1/(4+1-1) = 1/4
    #   (B,2): 3 TPs, |B| = 4, |2| = 3 -> 3/4
    #   AssA = (3*3/4 + 1/4 + 3*3/4) / 7 = 4.75/7
    # HOTA = sqrt(DetA * AssA) = sqrt(4.75/9).
    assert m["DetA"] == pytest.approx(7 / 9)
    assert m["AssA"] == pytest.approx(4.75 / 7)
    assert m["HOTA"] == pytest.approx(math.sqrt(4.75 / 9))


def test_perfect_tracks_score_one():
    gt = two_objects_four_frames()
    results = gt.copy()
    results[:, 1] += 10  # track ids need not equal gt ids
    m = evaluate_mot({"s": gt}, {"s": results})
    assert m["MOTA"] == pytest.approx(1.0)
    assert m["IDF1"] == pytest.approx(1.0)
    assert m["HOTA"] == pytest.approx(1.0)
    assert (m["IDSW"], m["FP"], m["FN"]) == (0, 0, 0)


def test_empty_results_score_zero():
    m = evaluate_mot({"s": two_objects_four_frames()}, {"s": np.zeros((0, 10))})
    # MOTA = 1 - FN/GT = 1 - 8/8; nothing matched.
    assert m["FN"] == 8 and m["FP"] == 0
    assert m["MOTA"] == pytest.approx(0.0)
    assert m["IDF1"] == pytest.approx(0.0)
    assert m["HOTA"] == pytest.approx(0.0)


def test_hota_partial_overlap_counts_alphas():
    # One object over 3 frames, tracked perfectly but with IoU 0.62:
    # gt 100x100, result 100x62 sharing the top-left corner -> IoU 6200/10000.
    # HOTA's alphas are 0.05, 0.10, ..., 0.95 (19 values); the match holds for
    # the 12 alphas <= 0.60 (HOTA_alpha = 1) and fails for the 7 above
    # (HOTA_alpha = 0), so HOTA = 12/19. CLEAR/ID metrics use IoU >= 0.5: perfect.
    gt = rows(*[(f, 1, (0.0, 0.0, 100.0, 100.0)) for f in (1, 2, 3)])
    res = rows(*[(f, 5, (0.0, 0.0, 100.0, 62.0)) for f in (1, 2, 3)])
    m = evaluate_mot({"s": gt}, {"s": res})
    assert m["HOTA"] == pytest.approx(12 / 19)
    assert m["MOTA"] == pytest.approx(1.0) and m["IDF1"] == pytest.approx(1.0)
    assert m["MOTP"] == pytest.approx(0.62)


def test_hota_decreases_with_more_identity_errors():
    gt = two_objects_four_frames()
    perfect = evaluate_mot({"s": gt}, {"s": gt})["HOTA"]
    one_switch = evaluate_mot({"s": gt}, {"s": hand_case_results()})["HOTA"]
    # Every frame a new id for A: association falls further.
    fragmented = rows(*[(f, 100 + f, BOX_A) for f in range(1, 5)], *[(f, 2, BOX_B) for f in range(1, 5)])
    many_switches = evaluate_mot({"s": gt}, {"s": fragmented})["HOTA"]
    assert perfect > one_switch > 0
    assert perfect > many_switches > 0


def test_ignored_gt_and_matching_results_are_not_counted():
    gt = two_objects_four_frames()
    gt[gt[:, 1] == 2, 6] = 0  # object B is an ignore region (mark 0)
    results = gt.copy()  # tracking B as well must not produce FPs
    m = evaluate_mot({"s": gt}, {"s": results})
    assert (m["FP"], m["FN"], m["IDSW"]) == (0, 0, 0)
    assert m["MOTA"] == pytest.approx(1.0) and m["HOTA"] == pytest.approx(1.0)


def test_sequences_combine():
    gt = {"a": two_objects_four_frames(), "b": two_objects_four_frames()}
    m = evaluate_mot(gt, {"a": hand_case_results(), "b": two_objects_four_frames()})
    # Counts add up: 16 gt boxes, 1 FN, 1 FP, 1 IDSW.
    assert (m["FN"], m["FP"], m["IDSW"]) == (1, 1, 1)
    assert m["MOTA"] == pytest.approx(1 - 3 / 16)
    # IDTP = 6 + 8, IDFN = 2, IDFP = 2.
    assert m["IDF1"] == pytest.approx(28 / 32)


def random_tracking(seed: int, num_seqs: int = 3, frames: int = 25) -> tuple[dict, dict]:
    """Objects moving through crossings, with noisy, fragmented, swapped and false tracks,
    ignored boxes and empty frames: every kind of CLEAR MOT and identity event."""
    rng = np.random.default_rng(seed)
    gt, res = {}, {}
    for s in range(num_seqs):
        g, r = [], []
        next_fp = 1000
        for o in range(int(rng.integers(0, 7))):
            start = rng.uniform(0, 200, 2)
            vel = rng.normal(0, 6, 2)
            size = rng.uniform(20, 60, 2)
            first, last = sorted(rng.integers(1, frames + 1, 2))
            mark = 0.0 if rng.random() < 0.1 else 1.0
            track = o + 1
            for f in range(first, last + 1):
                box = (*(start + vel * f), *size)
                g.append([f, o + 1, *box, mark, 1, 1])
                if rng.random() < 0.08:
                    track = 100 + int(rng.integers(0, 4))  # fragment or take another's id
                if rng.random() < 0.85:
                    r.append(
                        [f, track, *(np.array(box) + np.r_[rng.normal(0, 4, 2), rng.normal(0, 3, 2)]), 0.9]
                    )
        for f in range(1, frames + 1):
            for _ in range(int(rng.poisson(0.4))):
                r.append([f, next_fp, *rng.uniform(0, 220, 2), 30, 30, 0.5])
                next_fp += 1
        g = np.array(g).reshape(-1, 9)
        r = np.array(r).reshape(-1, 7)
        # ids unique within a frame: keep the first result of a repeated (frame, id)
        _, first_rows = np.unique(r[:, :2], axis=0, return_index=True)
        gt[f"seq{s}"], res[f"seq{s}"] = g, r[np.sort(first_rows)]
    return gt, res


@pytest.mark.parametrize("seed", range(12))
def test_numpy_backend_equals_motmetrics(seed):
    gt, res = random_tracking(seed)
    ours = evaluate_mot(gt, res, backend="numpy")
    ref = evaluate_mot(gt, res, backend="motmetrics")
    assert set(ours) == set(ref)
    if math.isnan(ref["MOTP"]):
        # motmetrics' overall MOTP is NaN once any sequence has no match (0 * NaN);
        # ours is the mean over every match: the per-sequence MOTPs weighted by matches.
        per_seq = [evaluate_mot({k: gt[k]}, {k: res[k]}, backend="motmetrics") for k in gt]
        matches = [(gt[k][:, 6] != 0).sum() - m["FN"] for k, m in zip(gt, per_seq)]
        assert 0 in matches
        ref["MOTP"] = float(sum(m["MOTP"] * n for m, n in zip(per_seq, matches) if n) / sum(matches))
    for key in ours:
        assert ours[key] == pytest.approx(ref[key], rel=1e-12, abs=1e-12), key
        assert type(ours[key]) is type(ref[key]), key


def test_random_tracking_exercises_every_event():
    """The parity cases are not trivial: switches, misses and false positives all occur."""
    totals = dict(IDSW=0, FP=0, FN=0)
    for seed in range(12):
        m = evaluate_mot(*random_tracking(seed))
        for key in totals:
            totals[key] += m[key]
    assert all(v > 10 for v in totals.values()), totals


def test_a_kept_correspondence_beats_a_closer_box():
    """CLEAR MOT keeps an object's previous track while it still overlaps (IoU >= 0.5),
    even when another track's box is closer: no switch."""
    gt = rows((1, 1, BOX_A), (2, 1, BOX_A))
    near = (BOX_A[0] + 8, *BOX_A[1:])  # IoU with A about 0.72
    res = rows((1, 7, near), (2, 7, near), (2, 8, BOX_A))
    for backend in ("numpy", "motmetrics"):
        m = evaluate_mot({"s": gt}, {"s": res}, backend=backend)
        assert (m["IDSW"], m["FP"], m["FN"]) == (0, 1, 0), backend


def test_hota_can_be_left_out():
    gt, res = random_tracking(3)
    full = evaluate_mot(gt, res)
    fast = evaluate_mot(gt, res, hota=False)
    assert set(full) - set(fast) == {"HOTA", "DetA", "AssA"}
    assert fast == {k: v for k, v in full.items() if k in fast}
    evaluator = Evaluator(MOTMetric(hota=False))
    evaluator.process(_hand_case_samples())
    metrics = evaluator.evaluate(4)
    assert metrics["mot/MOTA"] == pytest.approx(1 - 3 / 8) and "mot/HOTA" not in metrics


def test_unknown_backend_is_rejected():
    gt = {"s": two_objects_four_frames()}
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate_mot(gt, gt, backend="pandas")
    with pytest.raises(ValueError, match="backend must be one of"):
        MOTMetric(backend="pandas")


def test_evaluate_mot_rejects_bad_input():
    gt = {"s": two_objects_four_frames()}
    with pytest.raises(ValueError, match="same sequences"):
        evaluate_mot(gt, {"t": hand_case_results()})
    with pytest.raises(ValueError, match="MOTChallenge array"):
        evaluate_mot(gt, {"s": np.zeros((3, 4))})
    dup = rows((1, 7, BOX_A), (1, 7, BOX_B))
    with pytest.raises(ValueError, match=r"frame 1: result id\(s\) \[7"):
        evaluate_mot(gt, {"s": dup})
    with pytest.raises(TypeError, match="list"):
        evaluate_mot(gt, [hand_case_results()])


def test_txt_round_trip_and_file_evaluation(tmp_path):
    # MOTChallenge layout: <split>/<seq>/gt/gt.txt, results as <seq>.txt.
    gt_file = tmp_path / "train" / "seq1" / "gt" / "gt.txt"
    gt_file.parent.mkdir(parents=True)
    gt = two_objects_four_frames()
    gt_file.write_text("".join(f"{int(r[0])},{int(r[1])},{r[2]},{r[3]},{r[4]},{r[5]},1,1,1.0\n" for r in gt))
    write_mot_txt(tmp_path / "res" / "seq1.txt", hand_case_results())
    loaded = load_mot_txt(tmp_path / "res" / "seq1.txt")
    assert loaded.shape == (8, 10)
    np.testing.assert_allclose(
        loaded[:, :7], hand_case_results()[np.lexsort((hand_case_results()[:, 1], hand_case_results()[:, 0]))]
    )
    m_dir = evaluate_mot_files(tmp_path / "train", tmp_path / "res")
    m_list = evaluate_mot_files([gt_file], [tmp_path / "res" / "seq1.txt"])
    m_map = evaluate_mot_files({"x": gt_file}, {"x": tmp_path / "res" / "seq1.txt"})
    expected = evaluate_mot({"s": gt}, {"s": hand_case_results()})
    for m in (m_dir, m_list, m_map):
        assert m == pytest.approx(expected)
    with pytest.raises(FileNotFoundError, match="no file for sequence"):
        evaluate_mot_files(tmp_path / "train", tmp_path)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("1,1,10,10,50", "at least 6"),
        ("1,1,10,ten,50,100,1", "non-numeric"),
        ("0,1,10,10,50,100,1", "frame must be an integer >= 1"),
        ("1.5,1,10,10,50,100,1", "frame must be an integer >= 1"),
        ("1,1,10,10,-50,100,1", "negative box size"),
        ("1,1,10,10,50,100", "6 columns, but earlier lines have 7"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, why):
    path = tmp_path / "bad.txt"
    path.write_text(f"1,1,10,10,50,100,1\n\n{line}\n")
    with pytest.raises(MOTFormatError, match=rf"bad\.txt:3: .*{why}"):
        load_mot_txt(path)


def test_write_mot_txt_rejects_bad_rows(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(N, >=6\)"):
        write_mot_txt(tmp_path / "x.txt", np.zeros((2, 3)))
    with pytest.raises(ValueError, match="integer frames >= 1"):
        write_mot_txt(tmp_path / "x.txt", np.zeros((1, 6)))
    assert not (tmp_path / "x.txt").exists()


def _xyxy(box: tuple) -> list[float]:
    left, top, w, h = box
    return [left, top, left + w, top + h]


def _track_sample(video_id: int, frame: int, gt: list, pred: list, scale: float = 2.0) -> BaseDataElement:
    """A tracking sample: gt boxes in resized pixels (x ``scale``), predictions in original pixels."""
    sample = BaseDataElement(
        metainfo=dict(
            img_id=video_id * 100 + frame,
            video_id=video_id,
            frame_id=frame,
            ori_shape=(480, 640),
            img_shape=(int(480 * scale), int(640 * scale)),
            scale_factor=(scale, scale),
            tasks=("det", "track"),
        )
    )
    gt_inst = InstanceData()
    gt_inst.bboxes = torch.tensor([_xyxy(b) for _, b in gt], dtype=torch.float32).reshape(-1, 4) * scale
    gt_inst.labels = torch.zeros(len(gt), dtype=torch.long)
    gt_inst.instance_ids = torch.tensor([i for i, _ in gt], dtype=torch.long)
    gt_inst.ignore = torch.zeros(len(gt), dtype=torch.bool)
    gt_inst.visibility = torch.ones(len(gt))
    sample.gt_instances = gt_inst
    pred_inst = InstanceData()
    pred_inst.bboxes = torch.tensor([_xyxy(b) for _, b in pred], dtype=torch.float32).reshape(-1, 4)
    pred_inst.instance_ids = torch.tensor([i for i, _ in pred], dtype=torch.long)
    pred_inst.scores = torch.full((len(pred),), 0.9)
    pred_inst.labels = torch.zeros(len(pred), dtype=torch.long)
    sample.pred_track_instances = pred_inst
    return sample


def _hand_case_samples(video_id: int = 0) -> list[BaseDataElement]:
    gt = {f: [(1, BOX_A), (2, BOX_B)] for f in range(1, 5)}
    pred = {f: [(1, BOX_A), (2, BOX_B)] for f in (1, 2, 3)}
    pred[4] = [(3, BOX_A), (4, BOX_FAR)]
    return [_track_sample(video_id, f, gt[f], pred[f]) for f in range(1, 5)]


def test_mot_metric_through_evaluator(tmp_path):
    evaluator = Evaluator(MOTMetric(out_dir=tmp_path))
    samples = _hand_case_samples()
    # Frames arrive out of order and in batches, plus a classification-only sample.
    cls_only = BaseDataElement(metainfo=dict(img_id=999, video_id=-1, frame_id=1, tasks=("cls",)))
    evaluator.process([samples[2], samples[0], cls_only])
    evaluator.process([samples[3], samples[1]])
    metrics = evaluator.evaluate(4)
    assert metrics["mot/MOTA"] == pytest.approx(1 - 3 / 8)
    assert metrics["mot/IDF1"] == pytest.approx(12 / 16)
    assert metrics["mot/IDSW"] == 1
    assert metrics["mot/HOTA"] == pytest.approx(math.sqrt(4.75 / 9))
    written = load_mot_txt(tmp_path / "video_0.txt")
    assert written.shape == (8, 10)
    # MOTChallenge's 1-based corner, as tracking result files and gt.txt write it
    np.testing.assert_allclose(
        written[written[:, 1] == 4, 2:6], xyxy_to_mot(np.array([_xyxy(BOX_FAR)])), atol=1e-3
    )
    np.testing.assert_allclose(
        written[written[:, 1] == 4, 2:4], [[BOX_FAR[0] + 1, BOX_FAR[1] + 1]], atol=1e-3
    )


def test_mot_metric_needs_track_predictions_and_video():
    metric = MOTMetric()
    sample = _hand_case_samples()[0]
    del sample.pred_track_instances
    with pytest.raises(KeyError, match="pred_track_instances"):
        metric.process(None, [sample])
    bad = _track_sample(-1, 1, [(1, BOX_A)], [(1, BOX_A)])
    with pytest.raises(ValueError, match="video_id=-1"):
        metric.process(None, [bad])


def test_metrics_build_from_registry_in_fresh_interpreter():
    code = (
        "from mtmnv3.core.registry import METRICS\n"
        "for name in ('Top1Accuracy', 'CocoDetMetric', 'MOTMetric'):\n"
        "    m = METRICS.build(dict(type=name))\n"
        "    print(type(m).__name__, m.prefix)\n"
        "from mmengine.registry import METRICS as ROOT_METRICS, init_default_scope\n"
        "init_default_scope('mtmnv3')\n"
        "print(type(ROOT_METRICS.build(dict(type='MOTMetric'))).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Top1Accuracy", "cls", "CocoDetMetric", "det", "MOTMetric", "mot", "MOTMetric"]
