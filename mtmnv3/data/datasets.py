"""Loaders for the formats users bring: ImageFolder, image lists, COCO, MOTChallenge.

Every dataset is an mmengine ``BaseDataset`` registered in the package's
DATASETS registry and yields the raw sample dict of
:mod:`mtmnv3.data.common` through its pipeline.

Bad data policy (never a silent wrong label):

* a missing annotation or image file raises ``FileNotFoundError`` naming it
  (image files are checked when the dataset is built);
* a corrupt image raises ``DataError`` naming it when the sample is read;
* a malformed annotation (line, field, class or frame out of range) raises
  ``DataError`` naming the file and line (or annotation id);
* boxes partly outside the image are clipped, boxes entirely outside it or
  with non-positive size are skipped; one ``UserWarning`` per file counts them;
* an empty sequence or a dataset without samples raises ``DataError``;
* a folder that is not in the layout a loader reads raises naming the folder
  and the layout expected;
* with a COCO class subset, annotations of the other categories are dropped
  and counted per class in one ``UserWarning``, never merged into a kept class.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtmnv3.core.registry import DATASETS
from mtmnv3.data.common import (
    IMAGE_EXTENSIONS,
    SCENE_META_KEYS,
    TASKS,
    DataError,
    MultiTaskBaseDataset,
    SkipCounter,
    empty_annotations,
)
from mtmnv3.data.motchallenge import MOTChallengeDataset

__all__ = [
    "ClassificationListDataset",
    "CocoDetDataset",
    "ImageFolderDataset",
    "MOTChallengeDataset",
    "MultiTaskDataset",
]


def _check_files_exist(paths: list[str], what: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}: image file not found: {missing[0]}{more}")


@DATASETS.register_module()
class ImageFolderDataset(MultiTaskBaseDataset):
    """Classification from ``<folder>/<class name>/<image>`` folders (torchvision's ImageFolder layout).

    ``<folder>`` is ``data_root`` joined with ``data_prefix['img_path']``
    (``'img'`` is accepted too, mmdet's name), so one root serves every
    split the mmdet way: ``data_root='ROOT', data_prefix=dict(img_path='train')``
    reads ``ROOT/train/<class>/*.jpg``. Classes are the sorted sub-folder
    names (hidden folders such as ``.ipynb_checkpoints`` left out), or
    ``classes``. Files whose extension is not an image extension are skipped
    with a counting warning.

    Args:
        data_root: the dataset root (the folder of class folders when
            ``data_prefix`` is not given).
        classes: class names to use, in label order (each must be a
            sub-folder); default all, sorted.
        data_prefix: ``dict(img_path=SPLIT)``: the split's folder under ``data_root``.
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.

    Raises:
        FileNotFoundError: the folder does not exist.
        DataError: the folder is not in the ImageFolder layout (images but no
            class folders, split folders one level up, no images); the
            message names the folder and the layout expected.
    """

    def __init__(
        self,
        data_root: str,
        classes: Sequence[str] | None = None,
        data_prefix: dict | None = None,
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        data_prefix = dict(data_prefix or {})
        if "img" in data_prefix and "img_path" not in data_prefix:
            data_prefix["img_path"] = data_prefix.pop("img")
        data_prefix.setdefault("img_path", "")
        folder = Path(data_root) / data_prefix["img_path"]
        layout = _imagefolder_layout(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"ImageFolder root not found: {folder}; {layout}")
        found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        _check_imagefolder_layout(folder, found, layout)
        if classes is None:
            classes = tuple(found)
        else:
            if isinstance(classes, str):
                raise TypeError(f"classes must be a sequence of folder names, got the string {classes!r}")
            missing = [c for c in classes if c not in found]
            if missing:
                raise ValueError(
                    f"classes {missing} have no folder in {folder}; its class folders are {found}"
                )
            classes = tuple(classes)
        if not classes:
            raise DataError(f"{folder}: no class folders; {layout}")
        self.img_folder = os.fspath(folder)
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", classes)
        metainfo.setdefault("cls_classes", classes)
        super().__init__(
            data_root=data_root, data_prefix=data_prefix, pipeline=pipeline, metainfo=metainfo, **kwargs
        )

    def load_data_list(self) -> list[dict]:
        skips = SkipCounter(self.img_folder)
        data = []
        for label, name in enumerate(self.metainfo["cls_classes"]):
            for path in sorted((Path(self.img_folder) / name).rglob("*")):
                if not path.is_file():
                    continue
                if path.suffix.lower() not in IMAGE_EXTENSIONS:
                    skips.add("files without an image extension skipped", os.fspath(path))
                    continue
                data.append(
                    {
                        "img_path": os.fspath(path),
                        "img_id": len(data),
                        "gt_cls_label": label,
                        "tasks": ("cls",),
                    }
                )
        skips.warn()
        if not data:
            raise DataError(
                f"{self.img_folder}: no images in the class folders {list(self.metainfo['cls_classes'])}; "
                f"{_imagefolder_layout(Path(self.img_folder))}"
            )
        return data


#: Folder names that are splits, not classes (a root pointed one level too high).
_SPLIT_NAMES = frozenset({"train", "val", "valid", "validation", "test"})


def _imagefolder_layout(folder: Path) -> str:
    return (
        f"expected the ImageFolder layout {folder}/<class name>/<image> "
        "(e.g. data_root=ROOT with data_prefix=dict(img_path='train') reads ROOT/train/cat/0001.jpg)"
    )


def _check_imagefolder_layout(folder: Path, found: list[str], layout: str) -> None:
    """Refuse the usual wrong roots: a folder of images, or one holding the split folders."""
    if not found:
        images = [p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if images:
            raise DataError(
                f"{folder} holds {len(images)} images (e.g. {images[0]}) but no class folders; {layout}"
            )
    elif set(found) <= _SPLIT_NAMES and all(
        any(c.is_dir() for c in (folder / name).iterdir()) for name in found
    ):
        raise DataError(
            f"{folder} holds the split folders {found}, not class folders; point at one split with "
            f"data_prefix=dict(img_path='{found[0]}') (or data_root={folder / found[0]}); {layout}"
        )


@DATASETS.register_module()
class ClassificationListDataset(MultiTaskBaseDataset):
    """Classification from a list file of ``<relative image path> <label>`` lines.

    This is the format of the synthetic dataset's ``annotations/classification.txt``
    (and of mmpretrain's ``CustomDataset`` annotation files).

    Args:
        ann_file: the list file (joined with ``data_root``).
        classes: class names; label values must be in ``0..len(classes)-1``.
        data_root: folder image paths are relative to.
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    def __init__(
        self,
        ann_file: str,
        classes: tuple[str, ...],
        data_root: str = "",
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        if not classes:
            raise ValueError(f"classes must be a non-empty sequence of names, got {classes!r}")
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", tuple(classes))
        metainfo.setdefault("cls_classes", tuple(classes))
        super().__init__(
            ann_file=ann_file, data_root=data_root, pipeline=pipeline, metainfo=metainfo, **kwargs
        )

    def load_data_list(self) -> list[dict]:
        path = Path(self.ann_file)
        if not path.is_file():
            raise FileNotFoundError(f"classification list not found: {path}")
        n = len(self.metainfo["cls_classes"])
        prefix = self.data_prefix.get("img_path", "") or self.data_root
        data = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.rsplit(maxsplit=1)
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise DataError(f"{path}:{lineno}: expected '<image path> <integer label>', got {line!r}")
                label = int(parts[1])
                if not 0 <= label < n:
                    raise DataError(f"{path}:{lineno}: label {label} outside 0..{n - 1}")
                data.append(
                    {
                        "img_path": os.path.join(prefix, parts[0]),
                        "img_id": len(data),
                        "gt_cls_label": label,
                        "tasks": ("cls",),
                    }
                )
        if not data:
            raise DataError(f"{path}: no entries")
        _check_files_exist([d["img_path"] for d in data], os.fspath(path))
        return data


@DATASETS.register_module()
class CocoDetDataset(MultiTaskBaseDataset):
    """Detection from a COCO json (read with pycocotools).

    The COCO layout (mmdet's ``CocoDataset`` arguments)::

        ROOT/annotations/instances_train2017.json   ann_file='annotations/instances_train2017.json'
        ROOT/train2017/000000000009.jpg ...         data_prefix=dict(img='train2017/')

    with ``data_root=ROOT``; ``file_name`` is joined with the image folder
    ``data_prefix['img_path']`` (or ``'img'``, mmdet's name; default
    ``data_root``). Category ids map to contiguous labels in increasing id
    order, or, with ``classes`` (or mmdet's ``metainfo=dict(classes=...)``),
    to ``0..K-1`` in the order given: annotations of the other categories
    are dropped (one ``UserWarning`` counts them per class, they are never
    merged into a kept class); a name the json does not have raises,
    listing the json's names. An annotation with ``iscrowd`` or ``ignore``
    set is kept with ``gt_ignore=True``: an ignore region, neither a
    positive in training nor a miss in evaluation.

    ``filter_cfg=dict(filter_empty_gt=True, min_size=32)`` (mmdet's
    convention, training splits only) leaves out images without a
    non-ignored box and images smaller than ``min_size`` pixels.

    Args:
        ann_file: COCO json (joined with ``data_root``).
        data_root: dataset root.
        data_prefix: ``dict(img_path=...)`` (or ``dict(img=...)``) image folder.
        classes: category names to keep, in label order (default: all).
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    #: Tasks every image of this dataset has labels for.
    TASKS: tuple[str, ...] = ("det",)

    def __init__(
        self,
        ann_file: str,
        data_root: str = "",
        data_prefix: dict | None = None,
        classes: Sequence[str] | None = None,
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        data_prefix = dict(data_prefix or {})
        if "img" in data_prefix and "img_path" not in data_prefix:
            data_prefix["img_path"] = data_prefix.pop("img")
        data_prefix.setdefault("img_path", "")
        if classes is not None:
            if isinstance(classes, str) or not classes:
                raise TypeError(f"classes must be a non-empty sequence of category names, got {classes!r}")
            metainfo = dict(kwargs.pop("metainfo", None) or {})
            if "classes" in metainfo and tuple(metainfo["classes"]) != tuple(classes):
                raise ValueError(
                    f"classes {tuple(classes)} and metainfo classes {tuple(metainfo['classes'])} differ; give one"
                )
            metainfo["classes"] = tuple(classes)
            kwargs["metainfo"] = metainfo
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            **kwargs,
        )

    def _layout(self) -> str:
        return (
            "expected the COCO layout ROOT/annotations/instances_<split>.json with the images under "
            "ROOT/<split>/ (data_root=ROOT, ann_file='annotations/instances_train2017.json', "
            f"data_prefix=dict(img='train2017/')); got data_root={self.data_root!r}"
        )

    def _load_coco(self):
        from pycocotools.coco import COCO

        path = Path(self.ann_file)
        if not path.is_file():
            where = (
                "" if not self.data_root or Path(self.data_root).is_dir() else " (data_root does not exist)"
            )
            raise FileNotFoundError(f"COCO annotation file not found: {path}{where}; {self._layout()}")
        try:
            with open(path, encoding="utf-8") as f:
                dataset = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
        if not isinstance(dataset, dict):
            raise DataError(f"{path}: expected a COCO json object, got a {type(dataset).__name__}")
        for key in ("images", "annotations", "categories"):
            if not isinstance(dataset.get(key), list):
                raise DataError(f"{path}: missing or non-list '{key}'")
        coco = COCO()
        coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def _image_extras(self, coco, img: dict) -> dict:
        """Dataset-specific per-image fields (overridden by MultiTaskDataset)."""
        return {"tasks": self.TASKS}

    def _class_map(self, coco) -> tuple[dict[int, int], tuple[str, ...]]:
        """Category id -> label for the kept categories, and the class names in label order."""
        path = self.ann_file
        cat_ids = sorted(coco.getCatIds())
        if not cat_ids:
            raise DataError(f"{path}: no categories")
        names = {c: str(coco.cats[c].get("name", c)) for c in cat_ids}
        wanted = self._metainfo.get("classes")
        if wanted is None:
            return {c: i for i, c in enumerate(cat_ids)}, tuple(names[c] for c in cat_ids)
        wanted = tuple(str(w) for w in wanted)
        dupes = sorted({w for w in wanted if wanted.count(w) > 1})
        if dupes:
            raise ValueError(f"classes {list(wanted)} name {dupes} more than once")
        by_name: dict[str, list[int]] = {}
        for c in cat_ids:
            by_name.setdefault(names[c], []).append(c)
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            raise ValueError(
                f"classes {unknown} are not categories of {path}; its categories are "
                f"{[names[c] for c in cat_ids]}"
            )
        ambiguous = [w for w in wanted if len(by_name[w]) > 1]
        if ambiguous:
            raise DataError(f"{path}: category names {ambiguous} belong to several category ids")
        return {by_name[w][0]: i for i, w in enumerate(wanted)}, wanted

    def load_data_list(self) -> list[dict]:
        coco = self._load_coco()
        path = self.ann_file
        cat_to_label, classes = self._class_map(coco)
        self._metainfo["classes"] = classes
        self._coco_extra_meta(coco)
        prefix = self.data_prefix.get("img_path", "") or self.data_root
        skips = SkipCounter(path)
        dropped: Counter[str] = Counter()
        self._image_sizes: dict[int, tuple[float, float]] = {}  # img_id -> (w, h), for filter_cfg
        data = []
        for img_id in sorted(coco.imgs):
            img = coco.imgs[img_id]
            for key in ("file_name", "width", "height"):
                if key not in img:
                    raise DataError(f"{path}: image id {img_id} has no '{key}'")
            w, h = float(img["width"]), float(img["height"])
            self._image_sizes[int(img_id)] = (w, h)
            rows = []
            for ann in coco.imgToAnns.get(img_id, []):
                where = f"{path} (annotation id {ann.get('id')})"
                bbox = ann.get("bbox")
                if (
                    not isinstance(bbox, list)
                    or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) for v in bbox)
                ):
                    raise DataError(f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox!r}")
                cat = ann.get("category_id")
                if cat not in cat_to_label:
                    if cat not in coco.cats:
                        raise DataError(f"{where}: unknown category_id {cat!r}")
                    dropped[str(coco.cats[cat].get("name", cat))] += 1
                    continue
                x, y, bw, bh = (float(v) for v in bbox)
                if bw <= 0 or bh <= 0:
                    skips.add("boxes with non-positive size skipped", where)
                    continue
                x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)
                if x2 <= x1 or y2 <= y1:
                    skips.add("boxes entirely outside the image skipped", where)
                    continue
                if (x1, y1, x2, y2) != (x, y, x + bw, y + bh):
                    skips.add("boxes partly outside the image clipped", where)
                rows.append(
                    (
                        (x1, y1, x2, y2),
                        cat_to_label[cat],
                        int(ann.get("instance_id", -1)),
                        float(ann.get("visibility", 1.0)),
                        bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0)),
                    )
                )
            anns = empty_annotations()
            if rows:
                anns = {
                    "gt_bboxes": np.array([r[0] for r in rows], np.float32),
                    "gt_labels": np.array([r[1] for r in rows], np.int64),
                    "gt_instance_ids": np.array([r[2] for r in rows], np.int64),
                    "gt_visibility": np.array([r[3] for r in rows], np.float32),
                    "gt_ignore": np.array([r[4] for r in rows], bool),
                }
            data.append(
                {
                    "img_path": os.path.join(prefix, img["file_name"]),
                    "img_id": int(img_id),
                    **anns,
                    **self._image_extras(coco, img),
                }
            )
        skips.warn()
        if dropped:
            counts = ", ".join(f"{name!r} {n}" for name, n in dropped.most_common(10))
            more = f", ... ({len(dropped)} classes)" if len(dropped) > 10 else ""
            warnings.warn(
                f"{path}: {sum(dropped.values())} annotations of categories not in classes {list(classes)} "
                f"dropped (not merged into a kept class): {counts}{more}",
                UserWarning,
                stacklevel=2,
            )
        if not data:
            raise DataError(f"{path}: no images")
        folder = Path(prefix)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"COCO image folder not found: {folder} (the images of {path} are read from it); "
                f"{self._layout()}"
            )
        _check_files_exist([d["img_path"] for d in data], os.fspath(path))
        return data

    def filter_data(self) -> list[dict]:
        """mmdet's ``filter_cfg``: ``filter_empty_gt`` drops images without a
        non-ignored box, ``min_size`` images whose width or height is smaller
        (never in ``test_mode``)."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        unknown = set(self.filter_cfg) - {"filter_empty_gt", "min_size"}
        if unknown:
            raise ValueError(f"filter_cfg keys {sorted(unknown)} unknown; use filter_empty_gt and min_size")
        empty = bool(self.filter_cfg.get("filter_empty_gt", False))
        min_size = float(self.filter_cfg.get("min_size", 0))
        kept = [
            d
            for d in self.data_list
            if not (empty and not np.any(~d["gt_ignore"]))
            and min(self._image_sizes.get(d["img_id"], (min_size, min_size))) >= min_size
        ]
        if not kept:
            raise DataError(f"{self.ann_file}: filter_cfg {dict(self.filter_cfg)} leaves no image")
        return kept

    def _coco_extra_meta(self, coco) -> None:
        """Hook for subclasses to read dataset-level metainfo."""


@DATASETS.register_module()
class MultiTaskDataset(CocoDetDataset):
    """Every label an image has, from a COCO json with video extensions.

    Reads the COCO-video layout (mmdet's ``CocoVideoDataset`` convention,
    written by ``mtmnv3 make-synth``): ``videos`` list; per image
    ``video_id`` and ``frame_id`` (0-based; ``mot_frame_id`` 1-based wins
    when present) and optional ``cls_label``; per annotation ``instance_id``,
    ``visibility``, ``iscrowd``/``ignore``; a top-level ``cls_categories``
    list (``{'id': index, 'name': ...}``) names the classification classes.
    Scene knobs stored on a video (``domain``, ``brightness``, ...) are copied
    into each of its samples.

    Tasks of a sample: ``'det'`` always; ``'track'`` when the image belongs
    to a video and all its boxes have an ``instance_id``; ``'cls'`` when it
    has a classification label (``cls_label`` >= 0 in the json or an entry in
    ``cls_ann_file``).

    Args:
        ann_file: COCO json.
        cls_ann_file: optional ``<path> <label>`` list overriding ``cls_label``
            (paths relative to the image prefix).
        cls_classes: classification class names when the json has no
            ``cls_categories``.
        tasks: keep only these of each sample's tasks (e.g. ``('cls', 'det')``
            to use videos as plain labelled frames, leaving the identity
            labels out); default all of them.
        **kwargs: as :class:`CocoDetDataset`.
    """

    def __init__(
        self,
        ann_file: str,
        cls_ann_file: str | None = None,
        cls_classes: tuple[str, ...] | None = None,
        tasks: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        if tasks is not None:
            if isinstance(tasks, str) or not tasks or any(t not in TASKS for t in tasks):
                raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks!r}")
        self.keep_tasks = None if tasks is None else tuple(tasks)
        self.cls_ann_file = cls_ann_file
        self._cls_classes_arg = tuple(cls_classes) if cls_classes else None
        self._cls_from_list: dict[str, int] = {}
        self._videos: dict[int, dict] = {}
        super().__init__(ann_file=ann_file, **kwargs)

    def _coco_extra_meta(self, coco) -> None:
        path = self.ann_file
        cls_cats = coco.dataset.get("cls_categories")
        if cls_cats is not None:
            try:
                names = tuple(c["name"] for c in sorted(cls_cats, key=lambda c: int(c["id"])))
                ids = sorted(int(c["id"]) for c in cls_cats)
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{path}: cls_categories must be a list of {{'id', 'name'}}") from None
            if ids != list(range(len(ids))):
                raise DataError(f"{path}: cls_categories ids must be 0..N-1, got {ids}")
            self._metainfo.setdefault("cls_classes", names)
        elif self._cls_classes_arg:
            self._metainfo.setdefault("cls_classes", self._cls_classes_arg)
        else:
            self._metainfo.setdefault("cls_classes", ())
        self._videos = {int(v["id"]): v for v in coco.dataset.get("videos", [])}
        self._metainfo.setdefault(
            "videos", tuple(v.get("name", str(i)) for i, v in sorted(self._videos.items()))
        )
        if self.cls_ann_file:
            self._cls_from_list = self._read_cls_list(Path(self.cls_ann_file))

    def _read_cls_list(self, path: Path) -> dict[str, int]:
        if not path.is_file():
            raise FileNotFoundError(f"classification list not found: {path}")
        out = {}
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                parts = line.strip().rsplit(maxsplit=1)
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                    raise DataError(
                        f"{path}:{lineno}: expected '<image path> <integer label>', got {line.strip()!r}"
                    )
                out[parts[0]] = int(parts[1])
        return out

    def _image_extras(self, coco, img: dict) -> dict:
        path = self.ann_file
        # self._metainfo, not the metainfo property: the property deep-copies
        # the whole metainfo (which lists every video), once per image.
        n_cls = len(self._metainfo["cls_classes"])
        cls = self._cls_from_list.get(img["file_name"], img.get("cls_label", -1))
        if cls is None:
            cls = -1
        if not isinstance(cls, int) or cls < -1 or (cls >= 0 and cls >= n_cls):
            raise DataError(f"{path}: image id {img['id']} has cls_label {cls!r} outside -1..{n_cls - 1}")
        extras: dict = {"gt_cls_label": cls}
        tasks = ["det"]
        video_id = img.get("video_id")
        if video_id is not None:
            video_id = int(video_id)
            if self._videos and video_id not in self._videos:
                raise DataError(f"{path}: image id {img['id']} refers to unknown video_id {video_id}")
            frame = img.get("mot_frame_id")
            frame = int(frame) if frame is not None else int(img.get("frame_id", -2)) + 1
            if frame < 1:
                raise DataError(f"{path}: image id {img['id']} in video {video_id} has no valid frame_id")
            extras.update(video_id=video_id, frame_id=frame)
            anns = coco.imgToAnns.get(img["id"], [])
            if all("instance_id" in a for a in anns):
                tasks.append("track")
            video = self._videos.get(video_id, {})
            extras.update({k: video[k] for k in SCENE_META_KEYS if k in video})
        if cls >= 0:
            tasks.insert(0, "cls")
        if self.keep_tasks is not None:
            tasks = [t for t in tasks if t in self.keep_tasks]
        extras["tasks"] = tuple(tasks)
        return extras
