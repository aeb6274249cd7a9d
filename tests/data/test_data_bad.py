"""Bad data gives a clear error naming the file (and line), or a counted skip warning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtmnv3.data import (
    ClassificationListDataset,
    CocoDetDataset,
    DataError,
    FashionMNISTDataset,
    ImageFolderDataset,
    MOTChallengeDataset,
    read_idx,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"


@pytest.fixture
def mot(tmp_path):
    root = tmp_path / "mot"
    shutil.copytree(FIX / "mot", root)
    return root


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(FIX / "coco", root)
    return root


def _gt(mot, text):
    (mot / "seq-a" / "gt" / "gt.txt").write_text(text)


def _load_mot(mot):
    return MOTChallengeDataset(data_root=str(mot), classes=("circle", "square"))


@pytest.mark.parametrize(
    "text, match",
    [
        ("1,1,3,5,10,8,1,1,1.0\n1,2,abc,5,10,8\n", r"gt\.txt:2: non-numeric value"),
        ("1,1,3,5\n", r"gt\.txt:1: expected at least 6 comma-separated values"),
        ("4,1,3,5,10,8,1,1,1.0\n", r"gt\.txt:1: frame 4 outside 1\.\.3"),
        ("0,1,3,5,10,8,1,1,1.0\n", r"gt\.txt:1: frame 0 outside"),
        ("1,1,3,5,10,8,1,3,1.0\n", r"gt\.txt:1: class 3 outside 1\.\.2"),
        (
            "1,1,3,5,10,8,1,1,1.0\n\n1,1,4,5,10,8,1,1,1.0\n",
            r"gt\.txt:3: identity 1 repeated in frame 1 \(first at line 1\)",
        ),
        ("1,1,3,5,10,8,1,-1,1.0\n", r"gt\.txt:1: class -1 \(unspecified\) is ambiguous"),
    ],
)
def test_mot_malformed_lines_name_file_and_line(mot, text, match):
    _gt(mot, text)
    with pytest.raises(DataError, match=match):
        _load_mot(mot)


def test_mot_boxes_outside_are_skipped_and_counted(mot):
    _gt(mot, "1,1,40,5,10,8,1,1,1.0\n1,2,3,5,0,8,1,1,1.0\n2,3,50,50,4,4,1,1,1.0\n3,4,3,5,10,8,1,1,1.0\n")
    with pytest.warns(UserWarning) as rec:
        ds = _load_mot(mot)
    msg = str(rec[0].message)
    assert "2 boxes entirely outside the image skipped (first at" in msg and "gt.txt:1)" in msg
    assert "1 boxes with non-positive size skipped" in msg and "gt.txt:2" in msg
    assert len(ds[0]["gt_bboxes"]) == 0 and ds[2]["gt_instance_ids"].tolist() == [4]


def test_mot_missing_frame_image(mot):
    (mot / "seq-a" / "img1" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"seqinfo\.ini: image file not found: .*img1/000002\.png"):
        _load_mot(mot)


def test_mot_missing_gt(mot):
    (mot / "seq-a" / "gt" / "gt.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: .*gt\.txt"):
        _load_mot(mot)
    assert len(MOTChallengeDataset(data_root=str(mot), with_gt=False)) == 3


def test_mot_empty_sequence(mot, tmp_path):
    ini = mot / "seq-a" / "seqinfo.ini"
    ini.write_text(ini.read_text().replace("seqLength=3", "seqLength=0"))
    with pytest.raises(DataError, match=r"seqinfo\.ini: empty sequence \(seqLength=0\)"):
        _load_mot(mot)
    ini.write_text(ini.read_text().replace("seqLength=0", "seqLength=three"))
    with pytest.raises(DataError, match=r"seqinfo\.ini: seqLength must be an integer, got 'three'"):
        _load_mot(mot)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no sequence folders with a seqinfo.ini"):
        MOTChallengeDataset(data_root=str(tmp_path / "none"))


def test_corrupt_image_named_when_read(mot):
    (mot / "seq-a" / "img1" / "000003.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(UserWarning, match="clipped"):  # the fixture's frame-3 box crosses the border
        ds = _load_mot(mot)
    assert ds[0]["img"].shape == (24, 32, 3)  # building the dataset does not decode images
    with pytest.raises(DataError, match=r"cannot decode image .*000003\.png"):
        ds[2]


def _coco_edit(coco, fn):
    data = json.loads((coco / "instances.json").read_text())
    fn(data)
    (coco / "instances.json").write_text(json.dumps(data, indent=1))
    return CocoDetDataset(ann_file="instances.json", data_root=str(coco))


def test_coco_bad_cases(coco):
    (coco / "instances.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"instances\.json:2: malformed JSON"):
        CocoDetDataset(ann_file="instances.json", data_root=str(coco))
    (coco / "instances.json").write_text((FIX / "coco" / "instances.json").read_text())
    with pytest.raises(DataError, match=r"annotation id 2\): unknown category_id 9"):
        _coco_edit(coco, lambda d: d["annotations"][1].update(category_id=9))
    (coco / "instances.json").write_text((FIX / "coco" / "instances.json").read_text())
    with pytest.raises(DataError, match=r"annotation id 1\): bbox must be 4 numbers"):
        _coco_edit(coco, lambda d: d["annotations"][0].update(bbox=[1, 2, 3]))
    (coco / "instances.json").write_text((FIX / "coco" / "instances.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*images/zzz\.png"):
        _coco_edit(coco, lambda d: d["images"][1].update(file_name="images/zzz.png"))
    with pytest.raises(FileNotFoundError, match="COCO annotation file not found"):
        CocoDetDataset(ann_file="nope.json", data_root=str(coco))


def test_coco_box_outside_skipped_with_count(coco):
    def edit(d):
        d["annotations"][0]["bbox"] = [40, 30, 5, 5]
        d["annotations"][2]["bbox"] = [-4, 0, 10, 10]

    with pytest.warns(
        UserWarning, match=r"1 boxes entirely outside the image skipped \(first at .*annotation id 1\)"
    ):
        ds = _coco_edit(coco, edit)
    assert ds[0]["gt_labels"].tolist() == [1]
    assert ds[1]["gt_bboxes"].tolist() == [[0, 0, 6, 10]]


def test_classification_list_bad_lines(tmp_path):
    (tmp_path / "a.png").write_bytes((FIX / "imagefolder" / "circle" / "c1.png").read_bytes())
    (tmp_path / "list.txt").write_text("a.png 0\na.png\n")
    with pytest.raises(DataError, match=r"list\.txt:2: expected '<image path> <integer label>'"):
        ClassificationListDataset(ann_file="list.txt", data_root=str(tmp_path), classes=("a", "b"))
    (tmp_path / "list.txt").write_text("a.png 0\na.png 5\n")
    with pytest.raises(DataError, match=r"list\.txt:2: label 5 outside 0\.\.1"):
        ClassificationListDataset(ann_file="list.txt", data_root=str(tmp_path), classes=("a", "b"))
    (tmp_path / "list.txt").write_text("b.png 0\n")
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*b\.png"):
        ClassificationListDataset(ann_file="list.txt", data_root=str(tmp_path), classes=("a", "b"))


def test_imagefolder_bad(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageFolder root not found"):
        ImageFolderDataset(data_root=str(tmp_path / "missing"))
    (tmp_path / "cat").mkdir()
    with pytest.raises(DataError, match="no images in the class folders"):
        ImageFolderDataset(data_root=str(tmp_path))
    with pytest.raises(ValueError, match=r"classes \['dog'\] have no folder"):
        ImageFolderDataset(data_root=str(tmp_path), classes=("dog",))


def test_idx_bad(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match=r"holds 3 bytes of data, expected 5"):
        read_idx(tmp_path / "short")
    (tmp_path / "lab").write_bytes(b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x0c")
    (tmp_path / "img").write_bytes(
        b"\x00\x00\x08\x03" + b"".join((v).to_bytes(4, "big") for v in (1, 2, 2)) + bytes(4)
    )
    with pytest.raises(DataError, match=r"label 12 at index 0 is out of range for 10 classes"):
        FashionMNISTDataset(images_file=str(tmp_path / "img"), labels_file=str(tmp_path / "lab"))
    with pytest.raises(FileNotFoundError, match="idx file not found"):
        read_idx(tmp_path / "none")
