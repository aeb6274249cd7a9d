"""MOT17 end to end: train the MOT17 configs a few iterations on a MOT17-shaped folder, then
``mtmnv3 test --track`` scores the validation half and writes the submission files of a test split."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import ROOT, run_tool

from mtmnv3.data.mot_io import load_mot_txt

CONFIG = ROOT / "configs" / "mtmnv3_small_detemb_mot17.py"
CONFIG_3TASK = ROOT / "configs" / "mtmnv3_small_3task_imagefolder_mot17.py"
ITERS = 20
SIZE = "(96,64)"  # the fixture's frames are 96 x 64
#: an untrained detector scores low: track whatever it finds
LOW_TRACKER = ["tracker.high_thr=0.05", "tracker.low_thr=0.01", "tracker.new_track_thr=0.05"]


def _fixtures():
    """tests/data/test_motchallenge.py's MOT17-shaped folder writer (one definition of the fixture)."""
    path = Path(__file__).resolve().parents[1] / "data" / "test_motchallenge.py"
    spec = importlib.util.spec_from_file_location("motchallenge_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = _fixtures()


def model_options(max_iters=ITERS):
    """A tiny model and schedule, single-process loaders."""
    return [
        "model.trunk.width_mult=0.25",
        "model.neck.out_channels=16",
        "model.heads.det.feat_channels=16",
        "model.heads.emb.feat_channels=16",
        f"train_cfg.max_iters={max_iters}",
        "param_scheduler.0.end=2",
        "param_scheduler.1.begin=2",
        f"param_scheduler.1.end={max_iters}",
        "default_hooks.logger.interval=10",
        f"default_hooks.checkpoint.interval={max_iters}",
        "train_dataloader.batch_size=4",
        *(
            f"{s}_dataloader.{k}"
            for s in ("train", "val", "test")
            for k in ("num_workers=0", "persistent_workers=False")
        ),
    ]


def mot17_options(root, max_iters=ITERS):
    """The detection + embedding config on ``root`` (roots set the mmdet way), tiny."""
    return [
        *model_options(max_iters),
        *(f"{s}_dataloader.dataset.data_root={root}" for s in ("train", "val", "test")),
        f"train_dataloader.dataset.pipeline.2.size={SIZE}",
        f"val_dataloader.dataset.pipeline.0.size={SIZE}",
        f"test_dataloader.dataset.pipeline.0.size={SIZE}",
    ]


def three_task_options(mot_root, cls_root, max_iters=ITERS):
    """The classification + detection + embedding config: ImageFolder part 0, MOT17 part 1."""
    opts = [*model_options(max_iters), "model.heads.cls.hidden_channels=16", "model.heads.cls.num_classes=2"]
    for split in ("train", "val", "test"):
        key = f"{split}_dataloader.dataset.datasets"
        at = 2 if split == "train" else 0
        opts += [
            f"{key}.0.data_root={cls_root}",
            f"{key}.1.data_root={mot_root}",
            f"{key}.0.pipeline.{at}.size={SIZE}",
            f"{key}.1.pipeline.{at}.size={SIZE}",
        ]
    return opts


@pytest.fixture(scope="module")
def mot17(tmp_path_factory):
    return FIX.write_mot17(tmp_path_factory.mktemp("mot17") / "MOT17")


@pytest.fixture(scope="module")
def trained(mot17, tmp_path_factory):
    work = tmp_path_factory.mktemp("work_mot17")
    r = run_tool("train", CONFIG, "--work-dir", work, "--cfg-options", *mot17_options(mot17))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return work / f"iter_{ITERS}.pth", r.stdout + r.stderr


def test_train_reads_mot17_with_the_protocol(trained):
    ckpt, log = trained
    assert ckpt.is_file()
    # the training half: 4 of 6 frames of the FRCNN copy of each sequence, identities of both
    assert "train: 8 frames of 2 sequences; 4 training identities; boxes trained: pedestrian 19" in log
    assert "boxes not used: car 4" in log and "loss_emb" in log


def _rows(folder):
    return {p.stem: load_mot_txt(p) for p in sorted(Path(folder).glob("*.txt"))}


def test_track_the_validation_half_with_ground_truth(mot17, trained, tmp_path):
    ckpt, _ = trained
    out = tmp_path / "val"
    r = run_tool("test", CONFIG, ckpt, "--track", "--out-dir", out,
                 "--cfg-options", *mot17_options(mot17), *LOW_TRACKER)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "det" in r.stdout and "mAP" in r.stdout  # the per-task metrics
    header = next(line for line in r.stdout.splitlines() if "MOTA" in line)
    assert all(k in header for k in ("MOTA", "IDF1", "HOTA"))
    rows = _rows(out)
    # one file per sequence folder, the DPM/SDP copies included (same frames, same tracks)
    assert set(rows) == {"MOT17-02-DPM", "MOT17-02-FRCNN", "MOT17-02-SDP", "MOT17-04-FRCNN", "MOT17-04-SDP"}
    assert np.array_equal(rows["MOT17-02-DPM"], rows["MOT17-02-FRCNN"])
    frcnn = rows["MOT17-02-FRCNN"]
    assert len(frcnn) and frcnn.shape[1] == 10 and set(frcnn[:, 0]) <= {5, 6}  # the second half's frames
    assert np.all(frcnn[:, 7:] == -1)
    # boxes in the frames' own pixels (96 x 64; the network saw them letterboxed)
    left, top, w, h = frcnn[:, 2] - 1, frcnn[:, 3] - 1, frcnn[:, 4], frcnn[:, 5]
    assert left.min() >= -1 and top.min() >= -1 and (left + w).max() <= 97 and (top + h).max() <= 65


def test_track_a_test_split_writes_the_submission(mot17, trained, tmp_path):
    ckpt, _ = trained
    out = tmp_path / "submit"
    test_split = ["test_dataloader.dataset.split=test", "test_dataloader.dataset.half=None"]
    r = run_tool("test", CONFIG, ckpt, "--track", "--out-dir", out,
                 "--cfg-options", *mot17_options(mot17), *LOW_TRACKER, *test_split)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "no ground truth" in r.stdout and "MOTA" not in r.stdout and "Traceback" not in r.stderr
    rows = _rows(out)
    assert set(rows) == {"MOT17-01-DPM", "MOT17-01-FRCNN", "MOT17-01-SDP"}
    sub = rows["MOT17-01-FRCNN"]
    assert len(sub) and set(sub[:, 0]) <= {1, 2, 3, 4} and sub.shape[1] == 10
    assert all(np.array_equal(sub, rows[n]) for n in rows)


def _test_in_process(capsys, *argv):
    """``mtmnv3 test ARGV`` in this process (input errors return before any heavy work); (rc, stderr)."""
    from mtmnv3.cli import test as test_cli

    rc = test_cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def test_test_split_without_track_is_refused(mot17, trained, capsys):
    ckpt, _ = trained
    test_split = ["test_dataloader.dataset.split=test", "test_dataloader.dataset.half=None"]
    rc, err = _test_in_process(capsys, CONFIG, ckpt, "--cfg-options", *mot17_options(mot17), *test_split)
    assert rc == 2 and "no ground truth: nothing to evaluate; give --track --out-dir DIR" in err


@pytest.mark.parametrize(
    "options, match",
    [
        (["test_dataloader.dataset.split=val"], r"split folder not found: .*MOT17/val' \(expected ROOT/\{train,test\}/SEQ/"),
        (["test_dataloader.dataset.split=None", "test_dataloader.dataset.half=None"],
         r"no sequence folders with a seqinfo\.ini; it holds train/, test/: set split='train'"),
        (["test_dataloader.dataset.data_root=/no/such/MOT17"], r"MOTChallenge root not found: '/no/such/MOT17' \(expected ROOT/"),
    ],
)  # fmt: skip
def test_wrong_layout_names_the_path_and_the_layout(mot17, trained, capsys, options, match):
    import re

    ckpt, _ = trained
    rc, err = _test_in_process(
        capsys, CONFIG, ckpt, "--track", "--cfg-options", *mot17_options(mot17), *options
    )
    assert rc == 2 and re.search(match, err), err[-3000:]


def _image_folder(root):
    """CLS_ROOT/{train,val}/{a,b}/*.jpg: small JPEG images of two classes."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for k, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
                img[10:30, 10:30, k] = 220
                cv2.imwrite(str(root / split / name / f"{i}.jpg"), img)
    return root


@pytest.mark.slow
def test_three_task_config_trains_and_tracks(mot17, tmp_path):
    cls_root = _image_folder(tmp_path / "cls")
    work = tmp_path / "work"
    opts = three_task_options(mot17, cls_root)
    r = run_tool("train", CONFIG_3TASK, "--work-dir", work, "--cfg-options", *opts)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert all(k in log for k in ("loss_cls", "loss_det_heatmap", "loss_emb", "cls/top1", "det/mAP"))
    r = run_tool("test", CONFIG_3TASK, work / f"iter_{ITERS}.pth", "--track", "--out-dir", tmp_path / "res",
                 "--cfg-options", *opts, *LOW_TRACKER)  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "top1" in r.stdout and "MOTA" in r.stdout
    assert {p.stem for p in (tmp_path / "res").glob("*.txt")} >= {"MOT17-02-FRCNN", "MOT17-04-FRCNN"}


def test_train_on_a_wrong_root_is_a_clear_error(tmp_path):
    """The Runner builds its datasets inside train(): the layout error still comes without a traceback."""
    bad = tmp_path / "no_such_MOT17"
    r = run_tool(
        "train", CONFIG, "--work-dir", tmp_path / "work",
        "--cfg-options", *model_options(), f"train_dataloader.dataset.data_root={bad}",
    )  # fmt: skip
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "MOTChallenge root not found" in r.stderr and "Traceback" not in r.stderr
