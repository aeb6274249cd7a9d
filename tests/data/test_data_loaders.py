"""Each loader on a tiny hand-written fixture in its format; transforms; packing."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data import (
    ClassificationListDataset,
    CocoDetDataset,
    ColorJitter,
    FashionMNISTDataset,
    ImageFolderDataset,
    Letterbox,
    MOTChallengeDataset,
    MultiTaskDataset,
    PackMultiTaskInputs,
    RandomCrop,
    RandomFlip,
    Resize,
    find_fashion_mnist,
    read_idx,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
RAW_KEYS = {
    "img",
    "img_path",
    "img_id",
    "video_id",
    "frame_id",
    "ori_shape",
    "gt_bboxes",
    "gt_labels",
    "gt_instance_ids",
    "gt_visibility",
    "gt_ignore",
    "gt_cls_label",
    "tasks",
}


def check_raw(s):
    assert RAW_KEYS <= set(s)
    assert s["img"].dtype == np.uint8 and s["img"].ndim == 3 and s["img"].shape[2] == 3
    k = len(s["gt_bboxes"])
    assert s["gt_bboxes"].dtype == np.float32 and s["gt_bboxes"].shape == (k, 4)
    for key, dtype in (
        ("gt_labels", np.int64),
        ("gt_instance_ids", np.int64),
        ("gt_visibility", np.float32),
        ("gt_ignore", bool),
    ):
        assert s[key].dtype == dtype and s[key].shape == (k,), key
    assert s["ori_shape"] == s["img"].shape[:2]


def test_mot_fixture():
    with pytest.warns(UserWarning, match=r"1 boxes partly outside the image clipped \(first at .*gt.txt:5\)"):
        ds = MOTChallengeDataset(data_root=str(FIX / "mot"), classes=("circle", "square"))
    assert len(ds) == 3
    f1, f2, f3 = ds[0], ds[1], ds[2]
    for s in (f1, f2, f3):
        check_raw(s)
    assert f1["frame_id"] == 1 and f3["frame_id"] == 3 and f1["video_id"] == 1
    assert f1["img"][0, 0].tolist() == [40, 40, 40]
    np.testing.assert_array_equal(
        f1["gt_bboxes"], [[2, 4, 12, 12], [20, 10, 28, 20]]
    )  # 1-based corner -> 0-based
    np.testing.assert_array_equal(f1["gt_labels"], [0, 1])
    np.testing.assert_array_equal(f1["gt_instance_ids"], [1, 2])
    np.testing.assert_allclose(f1["gt_visibility"], [1.0, 0.5])
    np.testing.assert_array_equal(f2["gt_ignore"], [False, True])  # consider flag 0 honoured
    np.testing.assert_array_equal(f3["gt_bboxes"], [[26, 4, 32, 12]])  # clipped to the 32 px width
    assert f1["tasks"] == ("det", "track") and f1["gt_cls_label"] == -1


def test_coco_fixture():
    ds = CocoDetDataset(ann_file="instances.json", data_root=str(FIX / "coco"))
    assert ds.metainfo["classes"] == ("circle", "square")
    a, b = ds[0], ds[1]
    check_raw(a)
    np.testing.assert_array_equal(a["gt_bboxes"], [[2, 4, 12, 12], [20, 10, 28, 20]])
    np.testing.assert_array_equal(a["gt_labels"], [0, 1])  # category ids 3, 7 -> 0, 1
    np.testing.assert_array_equal(a["gt_ignore"], [False, True])  # iscrowd
    assert a["img"][0, 0].tolist() == [200, 0, 0]  # red in BGR file -> RGB
    np.testing.assert_array_equal(b["gt_bboxes"], [[0, 0, 32, 24]])
    assert a["tasks"] == ("det",) and a["video_id"] == -1 and a["frame_id"] == -1


def test_multitask_fixture_yields_every_label():
    ds = MultiTaskDataset(ann_file="video.json", data_root=str(FIX / "coco"))
    assert ds.metainfo["cls_classes"] == ("circle", "no object")
    s10, s11, s12 = ds[0], ds[1], ds[2]
    check_raw(s10)
    assert s10["tasks"] == ("cls", "det", "track") and s10["gt_cls_label"] == 1
    assert (s10["video_id"], s10["frame_id"], s11["frame_id"]) == (1, 1, 2)
    assert s10["gt_instance_ids"].tolist() == [5] and s10["gt_visibility"].tolist() == [0.75]
    assert s10["domain"] == "stripes"
    assert s11["tasks"] == ("det", "track") and s11["gt_cls_label"] == -1
    assert s12["tasks"] == ("det",) and s12["video_id"] == -1 and len(s12["gt_bboxes"]) == 0


def test_imagefolder_fixture():
    with pytest.warns(UserWarning, match="1 files without an image extension skipped"):
        ds = ImageFolderDataset(data_root=str(FIX / "imagefolder"))
    assert ds.metainfo["cls_classes"] == ("circle", "square") and len(ds) == 3
    labels = [s["gt_cls_label"] for s in ds]
    assert labels == [0, 1, 1]
    check_raw(ds[0])
    assert ds[0]["tasks"] == ("cls",) and len(ds[0]["gt_bboxes"]) == 0


def test_classification_list_fixture():
    ds = ClassificationListDataset(
        ann_file="classification.txt", data_root=str(FIX), classes=("circle", "square")
    )
    assert [s["gt_cls_label"] for s in ds] == [0, 1]
    assert ds[1]["img"][4, 4].tolist() == [255, 255, 255]


def _write_idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_fixture(tmp_path, compress):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([2, 0, 1], np.uint8)
    ext = ".gz" if compress else ""
    _write_idx(tmp_path / f"img-idx3-ubyte{ext}", images, compress)
    _write_idx(tmp_path / f"lab-idx1-ubyte{ext}", labels, compress)
    np.testing.assert_array_equal(read_idx(tmp_path / f"img-idx3-ubyte{ext}"), images)
    ds = FashionMNISTDataset(
        images_file=str(tmp_path / f"img-idx3-ubyte{ext}"), labels_file=str(tmp_path / f"lab-idx1-ubyte{ext}")
    )
    assert [s["gt_cls_label"] for s in ds] == [2, 0, 1]
    s = ds[1]
    check_raw(s)
    np.testing.assert_array_equal(s["img"][..., 0], images[1])
    assert s["img"].shape == (4, 5, 3) and s["tasks"] == ("cls",)


@pytest.mark.skipif(find_fashion_mnist("test") is None, reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files():
    ds = FashionMNISTDataset(split="test", indices=20)
    assert len(ds) == 20 and ds.metainfo["classes"][9] == "ankle boot"
    assert ds[0]["img"].shape == (28, 28, 3) and 0 <= ds[0]["gt_cls_label"] < 10


# ----------------------------------------------------------------------------- transforms
def sample():
    img = np.zeros((20, 40, 3), np.uint8)
    img[2:8, 4:14] = 255  # object 1
    return {
        "img": img,
        "img_shape": (20, 40),
        "ori_shape": (20, 40),
        "scale_factor": (1.0, 1.0),
        "flip": False,
        "gt_bboxes": np.array([[4, 2, 14, 8], [30, 10, 40, 20]], np.float32),
        "gt_labels": np.array([3, 5], np.int64),
        "gt_instance_ids": np.array([7, 9], np.int64),
        "gt_visibility": np.array([1.0, 0.5], np.float32),
        "gt_ignore": np.array([False, True]),
        "gt_cls_label": 3,
        "tasks": ("cls", "det", "track"),
        "img_id": 0,
        "video_id": 1,
        "frame_id": 1,
        "img_path": "x",
    }


def test_resize_and_letterbox_scale_boxes():
    s = Resize(scale=(80, 10))(sample())
    np.testing.assert_allclose(s["gt_bboxes"][0], [8, 1, 28, 4])
    assert s["img"].shape == (10, 80, 3) and s["scale_factor"] == (2.0, 0.5)
    s = Letterbox(size=(60, 60))(sample())
    assert s["img"].shape == (60, 60, 3) and s["pad_param"] == (15, 15, 0, 0)
    np.testing.assert_allclose(s["gt_bboxes"][0], [6, 18, 21, 27])
    ys, xs = np.nonzero(s["img"][..., 0] == 255)
    assert xs.min() >= 6 and xs.max() < 21 and ys.min() >= 18 and ys.max() < 27


def test_flip_boxes_follow_pixels():
    s = RandomFlip(prob=1.0)(sample())
    np.testing.assert_array_equal(s["gt_bboxes"], [[26, 2, 36, 8], [0, 10, 10, 20]])
    ys, xs = np.nonzero(s["img"][..., 0] == 255)
    assert (xs.min(), xs.max() + 1) == (26, 36)
    assert s["gt_instance_ids"].tolist() == [7, 9] and s["flip"] is True
    v = RandomFlip(prob=1.0, direction="vertical")(sample())
    np.testing.assert_array_equal(v["gt_bboxes"][0], [4, 12, 14, 18])


def test_color_jitter_keeps_labels():
    s = ColorJitter(0.5, 0.5, 0.5, 0.1, seed=0)(sample())
    assert s["img"].shape == (20, 40, 3) and s["gt_bboxes"].tolist() == sample()["gt_bboxes"].tolist()


def test_random_crop_drops_rows_together_and_guards_cls_label():
    crop = RandomCrop(crop_size=(20, 20), min_boxes=0, seed=0)
    crop._window = lambda h, w: (0, 0, 20, 20)  # keeps object 7 whole, drops object 9
    s = crop(sample())
    assert s["gt_instance_ids"].tolist() == [7] and s["gt_labels"].tolist() == [3]
    assert s["gt_cls_label"] == -1 and "cls" not in s["tasks"]  # a dropped object could have been the label
    one = sample()
    for key in ("gt_bboxes", "gt_labels", "gt_instance_ids", "gt_visibility", "gt_ignore"):
        one[key] = one[key][:1]
    s = crop(one)  # nothing cut: the label still holds
    assert s["gt_cls_label"] == 3 and s["tasks"] == ("cls", "det", "track")
    crop._window = lambda h, w: (8, 0, 20, 20)  # cuts object 1 in half
    s = crop(sample())
    np.testing.assert_array_equal(s["gt_bboxes"], [[0, 2, 6, 8]])
    np.testing.assert_allclose(s["gt_visibility"], [0.6])
    assert s["gt_cls_label"] == -1 and s["tasks"] == ("det", "track")
    for _ in range(20):
        r = RandomCrop(crop_size=16)(sample())
        assert r["img"].shape == (16, 16, 3)
        assert (
            len(
                {
                    len(r[k])
                    for k in ("gt_bboxes", "gt_labels", "gt_instance_ids", "gt_visibility", "gt_ignore")
                }
            )
            == 1
        )
        assert np.all(r["gt_bboxes"] >= 0) and np.all(r["gt_bboxes"][:, [0, 2]] <= 16)


def test_pack():
    out = PackMultiTaskInputs()(RandomFlip(prob=1.0)(sample()))
    assert out["inputs"].shape == (3, 20, 40) and out["inputs"].dtype == torch.uint8
    ds = out["data_samples"]
    assert isinstance(ds, MultiTaskDataSample)
    assert ds.gt_instances.bboxes.dtype == torch.float32 and ds.gt_instances.labels.dtype == torch.long
    assert ds.gt_instances.instance_ids.tolist() == [7, 9] and ds.gt_instances.ignore.dtype == torch.bool
    assert ds.gt_label.shape == () and int(ds.gt_label) == 3 and ds.has_cls_label
    assert ds.flip is True and ds.img_shape == (20, 40) and ds.tasks == ("cls", "det", "track")


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Resize(scale=0), "scale must be positive, got 0"),
        (lambda: Letterbox(size="big"), "size must be an int or a"),
        (lambda: RandomFlip(prob=1.5), "prob must be in"),
        (lambda: RandomFlip(direction="diagonal"), "direction must be"),
        (lambda: ColorJitter(hue=0.9), "hue must be in"),
        (lambda: RandomCrop(crop_size=(4, 4), min_boxes=-1), "min_boxes must be >= 0, got -1"),
    ],
)
def test_transform_validation(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_pipeline_from_config_dicts():
    ds = CocoDetDataset(
        ann_file="instances.json",
        data_root=str(FIX / "coco"),
        pipeline=[dict(type="Resize", scale=(64, 48)), dict(type="PackMultiTaskInputs")],
    )
    out = ds[0]
    assert out["inputs"].shape == (3, 48, 64)
    np.testing.assert_allclose(out["data_samples"].gt_instances.bboxes[0].numpy(), [4, 8, 24, 24])
    with pytest.raises(TypeError, match="pipeline must be a list"):
        CocoDetDataset(
            ann_file="instances.json", data_root=str(FIX / "coco"), pipeline=dict(type="Resize", scale=4)
        )
