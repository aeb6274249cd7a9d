"""COCO and ImageFolder data in their real layouts: JPEGs written with cv2, a COCO json
with crowd boxes and non-contiguous category ids, an ImageFolder tree with
train/ and val/ splits; class subsets, filters and the errors a wrong layout gives."""

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from mtmnv3.data import CocoDetDataset, ImageFolderDataset
from mtmnv3.data.common import DataError, read_image_rgb
from mtmnv3.evaluation import CocoDetMetric

#: COCO's own ids for these names (non-contiguous, as in instances_*.json).
CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]
W, H = 96, 64


def _jpeg(path: Path, seed: int, w: int = W, h: int = H) -> None:
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), rng.integers(60, 200), np.uint8)
    cv2.rectangle(img, (10, 8), (40, 50), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def write_coco(root: Path, split: str = "train2017", num_images: int = 4) -> Path:
    """ROOT/annotations/instances_<split>.json and ROOT/<split>/*.jpg, like COCO 2017.

    Image 1: a person, a car and a crowd of persons (iscrowd=1); image 2: a dog
    and a car; image 3: only a crowd; image 4 and later: no annotation."""
    images, anns = [], []
    for i in range(1, num_images + 1):
        name = f"{i:012d}.jpg"
        _jpeg(root / split / name, seed=i)
        images.append({"id": i, "file_name": name, "width": W, "height": H})

    def ann(img, cat, box, crowd=0):
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": img,
                "category_id": cat,
                "bbox": box,
                "iscrowd": crowd,
                "area": box[2] * box[3],
            }
        )

    ann(1, 1, [10, 8, 30, 42])
    ann(1, 3, [50, 20, 40, 30])
    ann(1, 1, [0, 0, 96, 20], crowd=1)
    ann(2, 18, [5, 5, 20, 20])
    ann(2, 3, [30, 10, 50, 40])
    ann(3, 1, [20, 20, 40, 30], crowd=1)
    path = root / "annotations" / f"instances_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path


def coco(root, split="train2017", **kwargs):
    return CocoDetDataset(
        data_root=str(root),
        ann_file=f"annotations/instances_{split}.json",
        data_prefix=dict(img=f"{split}/"),
        **kwargs,
    )


@pytest.fixture
def coco_root(tmp_path):
    write_coco(tmp_path)
    return tmp_path


def test_coco_layout_all_classes(coco_root):
    ds = coco(coco_root)
    assert ds.metainfo["classes"] == ("person", "car", "dog")  # ids 1, 3, 18 in id order
    assert len(ds) == 4
    s = ds[0]
    assert s["img"].shape == (H, W, 3) and s["img_path"].endswith("train2017/000000000001.jpg")
    np.testing.assert_array_equal(s["gt_labels"], [0, 1, 0])
    np.testing.assert_array_equal(s["gt_ignore"], [False, False, True])  # the crowd is an ignore region
    np.testing.assert_array_equal(s["gt_bboxes"][1], [50, 20, 90, 50])  # xywh -> xyxy
    np.testing.assert_array_equal(ds[1]["gt_labels"], [2, 1])
    assert len(ds[3]["gt_bboxes"]) == 0 and ds[3]["tasks"] == ("det",)


@pytest.mark.parametrize("how", ["classes", "metainfo"])
def test_class_subset_remaps_in_given_order_and_counts_the_dropped(coco_root, how):
    subset = ("car", "person")
    kwargs = {"classes": subset} if how == "classes" else {"metainfo": {"classes": subset}}
    with pytest.warns(UserWarning) as record:
        ds = coco(coco_root, **kwargs)
    msgs = [str(w.message) for w in record]
    assert any(
        "1 annotations of categories not in classes ['car', 'person'] dropped (not merged into a kept class): 'dog' 1"
        in m
        for m in msgs
    ), msgs
    assert ds.metainfo["classes"] == subset
    np.testing.assert_array_equal(ds[0]["gt_labels"], [1, 0, 1])  # person -> 1, car -> 0
    np.testing.assert_array_equal(ds[1]["gt_labels"], [0])  # the dog is gone, not relabelled
    np.testing.assert_array_equal(ds[1]["gt_bboxes"], [[30, 10, 80, 50]])


def test_class_subset_without_dropped_annotations_does_not_warn(coco_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = coco(coco_root, classes=("person", "car", "dog"))
    assert ds.metainfo["classes"] == ("person", "car", "dog")


def test_unknown_class_name_lists_the_datasets_names(coco_root):
    with pytest.raises(
        ValueError,
        match=r"classes \['cat'\] are not categories of .*instances_train2017\.json; "
        r"its categories are \['person', 'car', 'dog'\]",
    ):
        coco(coco_root, classes=("person", "cat"))
    with pytest.raises(TypeError, match="sequence of category names"):
        coco(coco_root, classes="person")


def test_filter_empty_gt_and_min_size_train_only(coco_root):
    ds = coco(coco_root, filter_cfg=dict(filter_empty_gt=True))
    assert [ds.get_data_info(i)["img_id"] for i in range(len(ds))] == [1, 2]  # 3: only a crowd, 4: nothing
    ds = coco(coco_root, filter_cfg=dict(filter_empty_gt=True, min_size=H))
    assert len(ds) == 2
    with pytest.raises(DataError, match="leaves no image"):
        coco(coco_root, filter_cfg=dict(min_size=100))
    ds = coco(coco_root, filter_cfg=dict(filter_empty_gt=True), test_mode=True)
    assert len(ds) == 4
    with pytest.raises(ValueError, match=r"filter_cfg keys \['min_area'\] unknown"):
        coco(coco_root, filter_cfg=dict(min_area=4))


def test_crowd_is_neither_a_miss_nor_a_false_positive(coco_root):
    """Through the letterbox and packing the config uses: detecting only the
    non-crowd objects scores mAP 1; a detection on the crowd costs nothing."""
    pipeline = [dict(type="Letterbox", size=128), dict(type="PackMultiTaskInputs")]
    ds = coco(coco_root, pipeline=pipeline)
    samples = []
    for i in range(3):
        sample = ds[i]["data_samples"]
        gt = sample.gt_instances
        raw = ds.get_data_info(i)
        keep = ~raw["gt_ignore"]
        pred = InstanceData()
        # predictions in original pixels: the non-crowd boxes, plus one on the crowd
        boxes = np.concatenate([raw["gt_bboxes"][keep], raw["gt_bboxes"][~keep]])
        labels = np.concatenate([raw["gt_labels"][keep], raw["gt_labels"][~keep]])
        pred.bboxes = torch.from_numpy(boxes)
        pred.scores = torch.linspace(0.9, 0.5, len(boxes))
        pred.labels = torch.from_numpy(labels)
        sample.pred_instances = pred
        assert gt.ignore.tolist() == raw["gt_ignore"].tolist()
        samples.append(sample)
    evaluator = Evaluator(CocoDetMetric())
    evaluator.process(samples)
    metrics = evaluator.evaluate(len(samples))
    assert metrics["det/mAP"] == pytest.approx(1.0)


def test_missing_annotation_file_names_it_and_the_layout(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"COCO annotation file not found: .*annotations/instances_val2017\.json; "
        r"expected the COCO layout ROOT/annotations/instances_<split>\.json",
    ):
        coco(tmp_path, split="val2017")
    with pytest.raises(FileNotFoundError, match=r"\(data_root does not exist\)"):
        coco(tmp_path / "nowhere")


def test_wrong_image_folder_names_it_and_the_layout(coco_root):
    with pytest.raises(
        FileNotFoundError, match=r"COCO image folder not found: .*images.* expected the COCO layout"
    ):
        CocoDetDataset(
            data_root=str(coco_root),
            ann_file="annotations/instances_train2017.json",
            data_prefix=dict(img="images/"),
        )
    (coco_root / "train2017" / "000000000002.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*train2017/000000000002\.jpg"):
        coco(coco_root)


def test_truncated_jpeg_named_when_read(coco_root):
    path = coco_root / "train2017" / "000000000002.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = coco(coco_root)
    ds[0]  # the other images still read
    with pytest.raises(DataError, match=r"cannot decode image \(truncated JPEG.*train2017/000000000002\.jpg"):
        ds[1]


def test_jpeg_with_data_after_its_end_marker_reads(tmp_path):
    """Phones append data (e.g. a motion photo's video) after the JPEG's end marker."""
    path = tmp_path / "motion.jpg"
    _jpeg(path, seed=0)
    ref = read_image_rgb(path)
    path.write_bytes(path.read_bytes() + b"ftypmp42" + bytes(range(256)) * 8)
    np.testing.assert_array_equal(read_image_rgb(path), ref)


# ---- ImageFolder -----------------------------------------------------------------


def write_imagefolder(root: Path, classes=("cat", "dog", "fox"), per_class=(3, 2)) -> Path:
    """ROOT/train/<class>/*.jpg and ROOT/val/<class>/*.jpg."""
    for split, n in zip(("train", "val"), per_class):
        for c, name in enumerate(classes):
            for i in range(n):
                _jpeg(root / split / name / f"{i:04d}.jpg", seed=100 * c + i, w=48 + 8 * c, h=40)
    return root


@pytest.fixture
def folder_root(tmp_path):
    return write_imagefolder(tmp_path / "pets")


def test_imagefolder_splits_from_one_root(folder_root):
    train = ImageFolderDataset(data_root=str(folder_root), data_prefix=dict(img_path="train"))
    val = ImageFolderDataset(data_root=str(folder_root), data_prefix=dict(img="val"))
    assert train.metainfo["cls_classes"] == ("cat", "dog", "fox") == val.metainfo["cls_classes"]
    assert len(train) == 9 and len(val) == 6
    assert [s["gt_cls_label"] for s in val] == [0, 0, 1, 1, 2, 2]
    s = train[3]
    assert s["img_path"].endswith("train/dog/0000.jpg") and s["img"].shape == (40, 56, 3)
    assert s["tasks"] == ("cls",)


def test_imagefolder_class_subset_in_given_order(folder_root):
    ds = ImageFolderDataset(
        data_root=str(folder_root), data_prefix=dict(img_path="val"), classes=("fox", "cat")
    )
    assert ds.metainfo["cls_classes"] == ("fox", "cat") and len(ds) == 4
    assert [s["gt_cls_label"] for s in ds] == [0, 0, 1, 1]
    with pytest.raises(
        ValueError, match=r"classes \['cow'\] have no folder in .*val; its class folders are "
    ):
        ImageFolderDataset(data_root=str(folder_root), data_prefix=dict(img_path="val"), classes=("cow",))


def test_imagefolder_root_one_level_too_high_names_it_and_the_layout(folder_root):
    with pytest.raises(
        DataError,
        match=r"pets holds the split folders \['train', 'val'\], not class folders; "
        r"point at one split with data_prefix=dict\(img_path='train'\).*expected the ImageFolder layout",
    ):
        ImageFolderDataset(data_root=str(folder_root))


def test_imagefolder_flat_folder_of_images_names_it_and_the_layout(tmp_path):
    for i in range(2):
        _jpeg(tmp_path / "flat" / f"{i}.jpg", seed=i)
    with pytest.raises(
        DataError,
        match=r"flat holds 2 images \(e\.g\. 0\.jpg\) but no class folders; expected the ImageFolder layout .*flat/<class name>/<image>",
    ):
        ImageFolderDataset(data_root=str(tmp_path / "flat"))


def test_imagefolder_missing_split_folder_names_it_and_the_layout(folder_root):
    with pytest.raises(
        FileNotFoundError, match=r"ImageFolder root not found: .*pets/test; expected the ImageFolder layout"
    ):
        ImageFolderDataset(data_root=str(folder_root), data_prefix=dict(img_path="test"))


def test_imagefolder_truncated_jpeg_named_when_read(folder_root):
    path = folder_root / "val" / "dog" / "0001.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    ds = ImageFolderDataset(data_root=str(folder_root), data_prefix=dict(img_path="val"))
    with pytest.raises(DataError, match=r"truncated JPEG.*val/dog/0001\.jpg"):
        ds[3]
