"""Written datasets read back exactly; motmetrics/pycocotools read them; caching; CLI."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data import (
    ClassificationListDataset,
    MOTChallengeDataset,
    MultiTaskDataset,
    SceneConfig,
    SynthMultiTaskDataset,
    ensure_synth_dataset,
    generate_sequence,
    render_preview,
    synth_io,
    write_synth_dataset,
)

REPO = Path(__file__).resolve().parents[2]
CFG = SceneConfig(num_sequences=2, num_frames=12, image_size=48, num_objects=3, object_scale=(0.3, 0.5))
SMALL = dict(num_sequences=1, num_frames=6, image_size=32, num_objects=2)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_synth_dataset(out, CFG, seed=11, progress=False)
    truth = [
        list(generate_sequence(CFG.replace(appearance=synth_io.resolve_appearance("auto")), i, 11))
        for i in range(2)
    ]
    return out, truth


def _check_same(sample, fr, ids):
    np.testing.assert_array_equal(sample["gt_bboxes"], fr.boxes)
    np.testing.assert_array_equal(sample["gt_labels"], fr.labels)
    np.testing.assert_array_equal(sample["gt_instance_ids"], ids)
    np.testing.assert_allclose(sample["gt_visibility"], fr.visibility, atol=1e-6)
    np.testing.assert_array_equal(sample["gt_ignore"], fr.ignore)


def test_mot_read_back_exactly(written):
    out, truth = written
    # renumber_ids=False: the file's ids as written (by default, ids shared by two sequences are renumbered)
    ds = MOTChallengeDataset(
        data_root=str(out / "mot"), classes=tuple(str(i) for i in range(10)), renumber_ids=False
    )
    assert len(ds) == 24 and ds.metainfo["videos"] == ("synth-0000", "synth-0001")
    for i, s in enumerate(ds):
        fr = truth[i // 12][i % 12]
        assert (s["video_id"], s["frame_id"]) == (i // 12 + 1, fr.frame_id)
        assert s["img"].shape == (48, 48, 3) and s["img"].dtype == np.uint8
        err = np.abs(s["img"].astype(int) - fr.image).mean()
        assert (
            err < 12 and err < np.abs(s["img"][..., ::-1].astype(int) - fr.image).mean()
        )  # JPEG; RGB order kept
        _check_same(s, fr, fr.instance_ids)
        assert s["tasks"] == ("det", "track")


def test_coco_read_back_exactly(written):
    out, truth = written
    ds = MultiTaskDataset(ann_file="annotations/coco.json", data_root=str(out))
    assert ds.metainfo["cls_classes"][-1] == "no object" and len(ds.metainfo["cls_classes"]) == 11
    global_ids: dict[tuple[int, int], int] = {}
    for i, s in enumerate(ds):
        fr = truth[i // 12][i % 12]
        assert s["img_path"].endswith(f"mot/synth-{i // 12:04d}/img1/{fr.frame_id:06d}.jpg")
        assert s["gt_cls_label"] == fr.cls_label and s["frame_id"] == fr.frame_id
        ids = [
            global_ids.setdefault((s["video_id"], int(m)), int(g))
            for m, g in zip(fr.instance_ids, s["gt_instance_ids"], strict=True)
        ]
        _check_same(s, fr, np.array(ids, np.int64))
        assert s["tasks"] == ("cls", "det", "track")
        assert s["domain"] == fr.meta["domain"]
    assert len(set(global_ids.values())) == len(global_ids)  # global instance ids are unique


def test_classification_index_read_back(written):
    out, truth = written
    ds = MultiTaskDataset(ann_file="annotations/coco.json", data_root=str(out))
    cls = ClassificationListDataset(
        ann_file="annotations/classification.txt", data_root=str(out), classes=ds.metainfo["cls_classes"]
    )
    assert [s["gt_cls_label"] for s in cls] == [fr.cls_label for seq in truth for fr in seq]


@pytest.mark.filterwarnings("ignore:Operation with tuple is deprecated")
def test_motmetrics_reads_every_gt(written):
    mm = pytest.importorskip("motmetrics")
    out, truth = written
    for i, seq in enumerate(truth):
        df = mm.io.loadtxt(os.fspath(out / "mot" / f"synth-{i:04d}" / "gt" / "gt.txt"), fmt="mot15-2D")
        assert len(df) == sum(len(fr.boxes) for fr in seq)
        first = seq[0]
        row = df.loc[(1, int(first.instance_ids[0]))]
        # motmetrics subtracts 1 from the 1-based MOTChallenge corner: back to our 0-based x1.
        assert row["X"] == first.boxes[0, 0] and row["Width"] == first.boxes[0, 2] - first.boxes[0, 0]


def test_pycocotools_reads_json(written):
    from pycocotools.coco import COCO

    out, truth = written
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(os.fspath(out / "annotations" / "coco.json"))
    assert len(coco.getImgIds()) == 24
    assert len(coco.getAnnIds()) == sum(len(fr.boxes) for seq in truth for fr in seq)
    assert len(coco.dataset["videos"]) == 2
    for img in coco.loadImgs(coco.getImgIds()):
        assert (out / img["file_name"]).is_file()


def test_preview(written, tmp_path):
    out, _ = written
    png = render_preview(out, tmp_path / "p.png", num_sequences=2, frames_per_sequence=3)
    import cv2

    img = cv2.imread(os.fspath(png))
    assert img is not None and img.shape[0] > 2 * 48 and img.shape[1] >= 3 * 48


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    calls = []

    def boom(job):
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(job)

    real = synth_io._write_sequence
    monkeypatch.setattr(synth_io, "_write_sequence", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_synth_dataset(tmp_path / "ds", CFG, progress=False)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileExistsError, match="already exists"):
        (tmp_path / "x").mkdir()
        write_synth_dataset(tmp_path / "x", CFG, progress=False)


def test_ensure_caches_by_knobs_and_splits_are_disjoint(tmp_path):
    a = ensure_synth_dataset(tmp_path, "train", **SMALL)
    stamp = (a / "meta.json").stat().st_mtime_ns
    assert ensure_synth_dataset(tmp_path, "train", **SMALL) == a
    assert (a / "meta.json").stat().st_mtime_ns == stamp
    b = ensure_synth_dataset(tmp_path, "train", **{**SMALL, "num_objects": 3})
    v = ensure_synth_dataset(tmp_path, "val", **SMALL)
    assert len({a, b, v}) == 3 and v.name.startswith("val-")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    ta = MultiTaskDataset(ann_file="annotations/coco.json", data_root=str(a))
    tv = MultiTaskDataset(ann_file="annotations/coco.json", data_root=str(v))
    assert not any(np.array_equal(ta[i]["img"], tv[i]["img"]) for i in range(len(ta)))
    with pytest.raises(ValueError, match="split must be one of"):
        ensure_synth_dataset(tmp_path, "holdout")


def test_synth_dataset_in_a_runner_style_dataloader(tmp_path):
    from mmengine.dataset import default_collate, pseudo_collate
    from mmengine.registry import DATASETS as ROOT_DATASETS
    from mmengine.registry import DefaultScope
    from torch.utils.data import DataLoader

    cfg = dict(
        type="SynthMultiTaskDataset",
        data_root=str(tmp_path),
        split="train",
        num_sequences=1,
        num_frames=4,
        image_size=40,
        num_objects=2,
        pipeline=[
            dict(type="Letterbox", size=32),
            dict(type="RandomFlip", prob=0.5),
            dict(type="PackMultiTaskInputs"),
        ],
    )
    with DefaultScope.overwrite_default_scope("mtmnv3"):
        ds = ROOT_DATASETS.build(cfg)
    assert isinstance(ds, SynthMultiTaskDataset) and len(ds) == 4
    for collate in (pseudo_collate, default_collate):
        batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=collate)))
        inputs = batch["inputs"]
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        assert inputs.shape == (2, 3, 32, 32) and inputs.dtype == torch.uint8
        assert all(isinstance(d, MultiTaskDataSample) for d in batch["data_samples"])
        sample = batch["data_samples"][0]
        assert sample.gt_label.shape == () and sample.gt_label.dtype == torch.long
        assert sample.gt_instances.bboxes.dtype == torch.float32
        assert sample.metainfo["tasks"] == ("cls", "det", "track") and sample.metainfo["frame_id"] == 1


def test_dataset_keeps_only_the_tasks_asked_for(tmp_path):
    """``tasks=`` turns videos into plain labelled frames: the identity labels
    stay out of training (the embedding head skips such samples) while the
    classification and detection labels are unchanged."""
    base = dict(
        data_root=str(tmp_path), split="train", num_sequences=2, num_frames=2, image_size=40, num_objects=2
    )
    full = SynthMultiTaskDataset(**base)
    frames = SynthMultiTaskDataset(**base, tasks=("cls", "det"))
    assert len(frames) == len(full) == 4
    for i in range(len(full)):
        a, b = full.get_data_info(i), frames.get_data_info(i)
        assert "track" in a["tasks"] and b["tasks"] == tuple(t for t in a["tasks"] if t != "track")
        assert a["gt_cls_label"] == b["gt_cls_label"] and a["img_path"] == b["img_path"]
    with pytest.raises(ValueError, match="tasks must be a non-empty subset"):
        SynthMultiTaskDataset(**base, tasks=("cls", "depth"))
    with pytest.raises(ValueError, match="tasks must be a non-empty subset"):
        SynthMultiTaskDataset(**base, tasks="cls")


def _cli_module():
    import mtmnv3.cli.make_synth as module

    return module


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mtmnv3", "make-synth", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_cli_writes_dataset_and_preview(tmp_path):
    r = _cli(
        "--out",
        str(tmp_path / "ds"),
        "--sequences",
        "2",
        "--frames",
        "3",
        "--size",
        "32",
        "--objects",
        "2",
        "--seed",
        "1",
        "--preview",
        str(tmp_path / "p.png"),
        "--noise",
        "4",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.png").is_file()
    for rel in (
        "meta.json",
        "annotations/coco.json",
        "annotations/classification.txt",
        "mot/synth-0001/img1/000003.jpg",
        "mot/synth-0000/gt/gt.txt",
        "mot/synth-0000/seqinfo.ini",
    ):
        assert (tmp_path / "ds" / rel).is_file(), rel


@pytest.mark.parametrize(
    "args, match",
    [
        (["--frames", "0"], "num_frames must be >= 1, got 0"),
        (["--domains", "lava"], "domains must be a non-empty subset"),
        (["--size", "8"], "image_size must be at least 16"),
        (["--seed", "-3"], "--seed must be >= 0, got -3"),
    ],
)
def test_cli_bad_input_exits_nonzero(tmp_path, capsys, args, match):
    code = _cli_module().main(
        [
            "--out",
            str(tmp_path / "ds"),
            "--sequences",
            "1",
            "--frames",
            "2",
            "--size",
            "32",
            "--no-progress",
            *args,
        ]
    )
    assert code != 0 and match in capsys.readouterr().err
    assert not (tmp_path / "ds").exists()


def test_cli_refuses_existing_output_without_traceback(tmp_path):
    (tmp_path / "ds").mkdir()
    r = _cli("--out", str(tmp_path / "ds"), "--sequences", "1", "--frames", "2", "--size", "32")
    assert r.returncode != 0 and "already exists" in r.stderr and "Traceback" not in r.stderr
