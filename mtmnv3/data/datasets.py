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
* an empty sequence or a dataset without samples raises ``DataError``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
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
    """Classification from ``data_root/<class name>/<image>`` folders.

    Classes are the sorted sub-folder names (or ``classes``). Files whose
    extension is not an image extension are skipped with a counting warning.

    Args:
        data_root: the folder of class folders.
        classes: class names to use (each must be a sub-folder); default all.
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    def __init__(
        self, data_root: str, classes: tuple[str, ...] | None = None, pipeline: list | None = None, **kwargs
    ) -> None:
        root = Path(data_root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolder root not found: {data_root}")
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        if classes is None:
            classes = tuple(found)
        else:
            missing = [c for c in classes if c not in found]
            if missing:
                raise ValueError(f"classes {missing} have no folder in {data_root}")
            classes = tuple(classes)
        if not classes:
            raise DataError(f"{data_root}: no class folders")
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", classes)
        metainfo.setdefault("cls_classes", classes)
        super().__init__(data_root=data_root, pipeline=pipeline, metainfo=metainfo, **kwargs)

    def load_data_list(self) -> list[dict]:
        skips = SkipCounter(self.data_root)
        data = []
        for label, name in enumerate(self.metainfo["cls_classes"]):
            for path in sorted((Path(self.data_root) / name).rglob("*")):
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
                f"{self.data_root}: no images in the class folders {list(self.metainfo['cls_classes'])}"
            )
        return data


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

    Category ids map to contiguous labels in increasing id order. An
    annotation with ``iscrowd`` or ``ignore`` set is kept with
    ``gt_ignore=True``. ``file_name`` is joined with
    ``data_prefix['img_path']`` (default ``data_root``).

    Args:
        ann_file: COCO json (joined with ``data_root``).
        data_root: dataset root.
        data_prefix: ``dict(img_path=...)`` image folder.
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
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix or {"img_path": ""},
            pipeline=pipeline,
            **kwargs,
        )

    def _load_coco(self):
        from pycocotools.coco import COCO

        path = Path(self.ann_file)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                dataset = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
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

    def load_data_list(self) -> list[dict]:
        coco = self._load_coco()
        path = self.ann_file
        cat_ids = sorted(coco.getCatIds())
        if not cat_ids:
            raise DataError(f"{path}: no categories")
        cat_to_label = {c: i for i, c in enumerate(cat_ids)}
        classes = tuple(coco.cats[c].get("name", str(c)) for c in cat_ids)
        self._metainfo.setdefault("classes", classes)
        self._coco_extra_meta(coco)
        prefix = self.data_prefix.get("img_path", "") or self.data_root
        skips = SkipCounter(path)
        data = []
        for img_id in sorted(coco.imgs):
            img = coco.imgs[img_id]
            for key in ("file_name", "width", "height"):
                if key not in img:
                    raise DataError(f"{path}: image id {img_id} has no '{key}'")
            w, h = float(img["width"]), float(img["height"])
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
                if ann.get("category_id") not in cat_to_label:
                    raise DataError(f"{where}: unknown category_id {ann.get('category_id')!r}")
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
                        cat_to_label[ann["category_id"]],
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
        if not data:
            raise DataError(f"{path}: no images")
        _check_files_exist([d["img_path"] for d in data], os.fspath(path))
        return data

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
