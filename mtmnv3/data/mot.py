"""MOTChallenge sequence folders: write, read, validate.

Layout of one sequence::

    NAME/seqinfo.ini     [Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt
    NAME/img1/000001.jpg ...
    NAME/gt/gt.txt       frame,id,bb_left,bb_top,bb_width,bb_height,consider,class,visibility

``gt.txt`` follows MOTChallenge (MOT16/17): frames are 1-based, ``bb_left`` and
``bb_top`` are 1-based pixel coordinates (the package's 0-based xyxy box
``x1`` is written as ``x1 + 1``), ``consider`` 0 marks a box to ignore,
``class`` is 1-based (-1 = unspecified) and ``visibility`` in [0, 1] (-1 =
unknown). MOT15-style files with only the first 6-7 columns are read too.

MOT16/MOT17 give the ``class`` column its own ids (:data:`MOT17_CLASSES`):
only pedestrians are evaluated, the person-like distractor classes are
ignore regions and every other class (vehicles, occluders) is not used
(:func:`mot17_class_map` builds the mapping :func:`read_mot_gt` applies).
"""

from __future__ import annotations

import configparser
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtmnv3.data.common import DataError, SkipCounter
from mtmnv3.data.mot_io import GT_COLUMNS, MOT_MIN_COLUMNS, format_gt_rows, iter_mot_rows

__all__ = [
    "DROP_CLASS",
    "IGNORE_CLASS",
    "MOT17_CLASSES",
    "MOT17_DISTRACTOR_CLASSES",
    "MOT17_EVAL_CLASSES",
    "MotSequenceInfo",
    "format_mot_rows",
    "mot17_class_map",
    "mot_to_xyxy",
    "read_mot_gt",
    "read_seqinfo",
    "write_seqinfo",
    "xyxy_to_mot",
]

#: MOTChallenge box corners are 1-based pixel coordinates.
MOT_COORD_OFFSET = 1.0
SEQINFO_SECTION = "Sequence"
SEQINFO_REQUIRED = ("seqLength", "imWidth", "imHeight")
UNSPECIFIED = -1

#: The ``class`` column of MOT16/MOT17 ``gt.txt`` (ids 1-12, TrackEval's names).
MOT17_CLASSES: dict[int, str] = {
    1: "pedestrian",
    2: "person_on_vehicle",
    3: "car",
    4: "bicycle",
    5: "motorbike",
    6: "non_mot_vehicle",
    7: "static_person",
    8: "distractor",
    9: "occluder",
    10: "occluder_on_ground",
    11: "occluder_full",
    12: "reflection",
}
#: The classes MOT17 evaluates.
MOT17_EVAL_CLASSES = ("pedestrian",)
#: Person-like classes MOT17 treats as ignore regions: a result on one is neither a hit nor a false positive.
MOT17_DISTRACTOR_CLASSES = ("person_on_vehicle", "static_person", "distractor", "reflection")
#: Class-map value of a class whose boxes are kept as ignore regions (``gt_ignore``, label 0).
IGNORE_CLASS = -1
#: Class-map value of a class whose boxes are not used (counted, not read).
DROP_CLASS = -2


@dataclass(frozen=True)
class MotSequenceInfo:
    """The fields of a ``seqinfo.ini`` the loader uses."""

    name: str
    im_dir: str
    frame_rate: int
    seq_length: int
    width: int
    height: int
    im_ext: str
    extra: tuple[tuple[str, str], ...] = ()

    def frame_path(self, seq_dir: str | os.PathLike, frame: int) -> Path:
        """Image path of a 1-based frame."""
        return Path(seq_dir) / self.im_dir / f"{frame:06d}{self.im_ext}"


def xyxy_to_mot(boxes: np.ndarray) -> np.ndarray:
    """(K, 4) 0-based xyxy -> (K, 4) MOTChallenge (bb_left, bb_top, w, h), 1-based corner."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack(
        [
            boxes[:, 0] + MOT_COORD_OFFSET,
            boxes[:, 1] + MOT_COORD_OFFSET,
            boxes[:, 2] - boxes[:, 0],
            boxes[:, 3] - boxes[:, 1],
        ],
        1,
    )


def mot_to_xyxy(tlwh: np.ndarray) -> np.ndarray:
    """(K, 4) MOTChallenge (bb_left, bb_top, w, h), 1-based corner -> (K, 4) 0-based xyxy."""
    tlwh = np.asarray(tlwh, np.float64).reshape(-1, 4)
    x1 = tlwh[:, 0] - MOT_COORD_OFFSET
    y1 = tlwh[:, 1] - MOT_COORD_OFFSET
    return np.stack([x1, y1, x1 + tlwh[:, 2], y1 + tlwh[:, 3]], 1)


def write_seqinfo(path: str | os.PathLike, info: MotSequenceInfo) -> None:
    """Write ``seqinfo.ini`` (extra keys go in the same section)."""
    cp = configparser.ConfigParser()
    cp.optionxform = str  # keep camelCase keys
    cp[SEQINFO_SECTION] = {
        "name": info.name,
        "imDir": info.im_dir,
        "frameRate": str(info.frame_rate),
        "seqLength": str(info.seq_length),
        "imWidth": str(info.width),
        "imHeight": str(info.height),
        "imExt": info.im_ext,
        **dict(info.extra),
    }
    with open(path, "w", encoding="utf-8") as f:
        cp.write(f)


def read_seqinfo(path: str | os.PathLike) -> MotSequenceInfo:
    """Read and validate a ``seqinfo.ini``.

    Raises:
        FileNotFoundError: missing file.
        DataError: no ``[Sequence]`` section, a missing or non-integer key,
            or ``seqLength`` < 1 (an empty sequence).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"seqinfo.ini not found: {path}")
    cp = configparser.ConfigParser()
    cp.optionxform = str
    try:
        cp.read(path, encoding="utf-8")
    except configparser.Error as e:
        raise DataError(f"{path}: cannot parse: {e}") from e
    if SEQINFO_SECTION not in cp:
        raise DataError(f"{path}: no [{SEQINFO_SECTION}] section")
    sec = cp[SEQINFO_SECTION]
    values = {}
    for key in (*SEQINFO_REQUIRED, "frameRate"):
        if key not in sec:
            if key == "frameRate":
                values[key] = 0
                continue
            raise DataError(f"{path}: missing key {key!r} in [{SEQINFO_SECTION}]")
        try:
            values[key] = int(sec[key])
        except ValueError:
            raise DataError(f"{path}: {key} must be an integer, got {sec[key]!r}") from None
    if values["seqLength"] < 1:
        raise DataError(f"{path}: empty sequence (seqLength={values['seqLength']})")
    if values["imWidth"] < 1 or values["imHeight"] < 1:
        raise DataError(f"{path}: bad image size {values['imWidth']}x{values['imHeight']}")
    known = {"name", "imDir", "imExt", *SEQINFO_REQUIRED, "frameRate"}
    return MotSequenceInfo(
        name=sec.get("name", path.parent.name),
        im_dir=sec.get("imDir", "img1"),
        frame_rate=values["frameRate"],
        seq_length=values["seqLength"],
        width=values["imWidth"],
        height=values["imHeight"],
        im_ext=sec.get("imExt", ".jpg"),
        extra=tuple((k, v) for k, v in sec.items() if k not in known),
    )


def format_mot_rows(frame: int, ids, boxes, consider, classes, visibility) -> list[str]:
    """``gt.txt`` lines of one frame (boxes 0-based xyxy; classes 1-based)."""
    return format_gt_rows(frame, ids, xyxy_to_mot(boxes), consider, classes, visibility)


def mot17_class_map(
    classes: Sequence[str] = MOT17_EVAL_CLASSES, ignore_classes: Sequence[str] = MOT17_DISTRACTOR_CLASSES
) -> dict[int, int]:
    """The MOT17 ``class`` column id -> label map :func:`read_mot_gt` applies.

    Args:
        classes: the MOT17 class names to train and evaluate, in label order
            (the protocol's: ``('pedestrian',)``).
        ignore_classes: MOT17 class names whose boxes become ignore regions
            (the protocol's distractors).

    Returns:
        {class id (1-12): label (0-based), :data:`IGNORE_CLASS` or
        :data:`DROP_CLASS` (every class in neither list)}.

    Raises:
        ValueError: a name that is not a MOT17 class, or a class in both lists.
    """
    ids = {name: k for k, name in MOT17_CLASSES.items()}
    unknown = [c for c in (*classes, *ignore_classes) if c not in ids]
    if unknown:
        raise ValueError(f"not MOT17 class names: {unknown}; the MOT17 classes are {list(ids)}")
    both = sorted(set(classes) & set(ignore_classes))
    if both:
        raise ValueError(f"classes {both} are both trained and ignored; give each to one of the two lists")
    if not classes:
        raise ValueError("classes must name at least one MOT17 class")
    out = dict.fromkeys(MOT17_CLASSES, DROP_CLASS)
    out.update({ids[c]: IGNORE_CLASS for c in ignore_classes})
    out.update({ids[c]: label for label, c in enumerate(classes)})
    return out


def read_mot_gt(
    path: str | os.PathLike,
    info: MotSequenceInfo,
    num_classes: int,
    *,
    class_map: Mapping[int, int] | None = None,
    min_visibility: float = 0.0,
    frames: tuple[int, int] | None = None,
    counts: Counter | None = None,
) -> dict[int, dict[str, np.ndarray]]:
    """Read a ``gt.txt`` into per-frame annotation arrays.

    Boxes partly outside the image are clipped to it; boxes entirely outside
    it or with non-positive size are skipped. Both are counted in one
    warning naming the file and the first line of each kind. A box with
    ``consider`` 0, or visible less than ``min_visibility``, is kept with
    ``gt_ignore`` set.

    Args:
        path: the ``gt.txt``.
        info: the sequence's seqinfo (image size, length).
        num_classes: number of classes; without ``class_map``, class column
            values 1..num_classes map to labels 0..num_classes-1 (-1 =
            unspecified maps to 0 when there is a single class).
        class_map: class column value -> label (0..num_classes-1),
            :data:`IGNORE_CLASS` (an ignore region, label 0) or
            :data:`DROP_CLASS` (not used); e.g. :func:`mot17_class_map`. A
            class the map does not hold is not used either, and counted in a
            warning naming the file and its first line.
        min_visibility: boxes of a trained class visible less than this
            (``visibility`` column) are ignore regions.
        frames: ``(first, last)``: read only these frames (1-based, inclusive).
        counts: when given, gets the number of boxes per outcome added:
            ``('label', k)``, ``('ignore_class', k)``, ``('dropped', k)`` per
            class column value k, ``'consider0'`` and ``'low_visibility'``.

    Returns:
        {frame (1-based): dict of ``gt_bboxes`` (K, 4) float32 xyxy,
        ``gt_labels``, ``gt_instance_ids`` int64, ``gt_visibility`` float32,
        ``gt_ignore`` bool}.

    Raises:
        FileNotFoundError: missing file.
        DataError: a malformed line, a frame outside 1..seqLength, a class
            out of range (without ``class_map``) or an identity repeated
            within a frame (file:line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOTChallenge annotation file not found: {path}")
    skips = SkipCounter(os.fspath(path))
    counts = Counter() if counts is None else counts
    rows: dict[int, list[tuple]] = {}
    seen: dict[tuple[int, int], int] = {}
    for lineno, values in iter_mot_rows(path):
        values = values[: len(GT_COLUMNS)]
        values += [1.0, UNSPECIFIED, UNSPECIFIED][len(values) - MOT_MIN_COLUMNS :]
        frame, ident, left, top, bw, bh, consider, cls, vis = values
        where = f"{path}:{lineno}"
        if frame != int(frame) or not 1 <= frame <= info.seq_length:
            raise DataError(f"{where}: frame {frame:g} outside 1..{info.seq_length} (seqLength)")
        if ident != int(ident):
            raise DataError(f"{where}: identity {ident:g} is not an integer")
        if class_map is None:
            if cls == UNSPECIFIED:
                if num_classes != 1:
                    raise DataError(
                        f"{where}: class -1 (unspecified) is ambiguous with {num_classes} classes"
                    )
                cls = 1
            if cls != int(cls) or not 1 <= cls <= num_classes:
                raise DataError(f"{where}: class {cls:g} outside 1..{num_classes}")
        key = (int(frame), int(ident))
        if key in seen:
            raise DataError(
                f"{where}: identity {int(ident)} repeated in frame {int(frame)} (first at line {seen[key]})"
            )
        seen[key] = lineno
        if frames is not None and not frames[0] <= frame <= frames[1]:
            continue
        if class_map is None:
            label = int(cls) - 1
        else:
            label = class_map.get(int(cls), None) if cls == int(cls) else None
            if label is None:
                skips.add(f"boxes of class {cls:g} (not in the class list) not used", where)
                continue
            if label == DROP_CLASS:
                counts["dropped", int(cls)] += 1
                continue
        if bw <= 0 or bh <= 0:
            skips.add("boxes with non-positive size skipped", where)
            continue
        x1, y1, x2, y2 = mot_to_xyxy(np.array([left, top, bw, bh]))[0]
        cx1, cy1 = min(max(x1, 0.0), info.width), min(max(y1, 0.0), info.height)
        cx2, cy2 = min(max(x2, 0.0), info.width), min(max(y2, 0.0), info.height)
        if cx2 <= cx1 or cy2 <= cy1:
            skips.add("boxes entirely outside the image skipped", where)
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            skips.add("boxes partly outside the image clipped", where)
        vis = 1.0 if vis == UNSPECIFIED else vis
        ignore = consider == 0
        if label == IGNORE_CLASS:
            counts["ignore_class", int(cls)] += 1
            label, ignore = 0, True
        else:
            counts["label", int(cls)] += 1
            if ignore:
                counts["consider0"] += 1
            elif vis < min_visibility:
                counts["low_visibility"] += 1
                ignore = True
        rows.setdefault(int(frame), []).append((cx1, cy1, cx2, cy2, label, int(ident), vis, ignore))
    skips.warn()
    out = {}
    for frame, rs in rows.items():
        arr = list(zip(*rs, strict=True))
        out[frame] = {
            "gt_bboxes": np.array(arr[:4], np.float32).T.reshape(-1, 4),
            "gt_labels": np.array(arr[4], np.int64),
            "gt_instance_ids": np.array(arr[5], np.int64),
            "gt_visibility": np.array(arr[6], np.float32),
            "gt_ignore": np.array(arr[7], bool),
        }
    return out
