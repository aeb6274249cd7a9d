"""MOTChallenge (MOT16/17/20) benchmark folders as a dataset, with the MOT17 protocol.

Layout (the benchmark's own)::

    ROOT/train/MOT17-02-FRCNN/seqinfo.ini
    ROOT/train/MOT17-02-FRCNN/img1/000001.jpg ...
    ROOT/train/MOT17-02-FRCNN/gt/gt.txt
    ROOT/test/MOT17-01-FRCNN/...              (no gt/)

``split`` picks ``ROOT/<split>``; without it ``data_root`` is the folder
holding the sequence folders.

The MOT17 protocol (``protocol='mot17'``): the ``class`` column holds the
MOT17 class ids 1-12 (:data:`~mtmnv3.data.mot.MOT17_CLASSES`); the classes
named in ``classes`` (``('pedestrian',)``) are trained and evaluated, the
person-like distractors (person on vehicle, static person, distractor,
reflection) are ignore regions, every other class (vehicles, occluders) is not
used. ``consider`` 0 marks an ignore region, and so does a box visible less
than ``min_visibility``. The benchmark ships every MOT17 sequence three times
(``-DPM``, ``-FRCNN``, ``-SDP``: the same frames and ground truth, only the
public detections differ); ``prefer_detector`` keeps one of them.

Identities are numbered across the dataset: the boxes a model trains on get
ids ``0..num_ids-1`` (``metainfo['num_ids']``, the identity classifier size
needed), so identity 1 of two sequences are two training identities; an
identity that is only ever an ignore region gets an id after those. (Files
whose ids already differ across sequences, such as ``mtmnv3 make-synth``'s,
keep them unless ``renumber_ids=True``.)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mmengine.logging import print_log

from mtmnv3.core.registry import DATASETS
from mtmnv3.data.common import DataError, MultiTaskBaseDataset, empty_annotations
from mtmnv3.data.mot import (
    MOT17_CLASSES,
    MOT17_DISTRACTOR_CLASSES,
    MotSequenceInfo,
    mot17_class_map,
    read_mot_gt,
    read_seqinfo,
)

__all__ = [
    "HALVES",
    "MOT_LAYOUT",
    "MOT_PROTOCOLS",
    "MOTChallengeDataset",
    "MotSequence",
    "find_mot_sequences",
    "half_frames",
    "mot_sequences",
]

#: The folder layout a MOTChallenge benchmark has (named in layout errors).
MOT_LAYOUT = "ROOT/{train,test}/SEQ/{seqinfo.ini, img1/000001.jpg ..., gt/gt.txt (train only)}"
#: ``protocol`` values: None (the class column counts 1..len(classes)) or the MOT17 class ids.
MOT_PROTOCOLS = (None, "mot17")
#: ``half`` values: the first half of every sequence (training) or the rest (validation).
HALVES = ("first", "second")
#: The public-detection copies MOT17 ships of every sequence, in default preference order.
MOT17_DETECTORS = ("FRCNN", "SDP", "DPM")
_DETECTOR_COPY = re.compile(r"^(?P<base>.+)-(?P<detector>DPM|FRCNN|SDP)$")


@dataclass(frozen=True)
class MotSequence:
    """One sequence a MOTChallenge dataset reads: its folder, seqinfo and frame range.

    Attributes:
        name: the sequence folder's name.
        seq_dir: the sequence folder.
        info: its ``seqinfo.ini``.
        first_frame: first frame read (1-based).
        last_frame: last frame read (inclusive).
        copies: names of the sibling folders holding the same frames (MOT17's
            other public-detection copies), not read; a result file is
            written for each of them too.
    """

    name: str
    seq_dir: Path
    info: MotSequenceInfo
    first_frame: int = 1
    last_frame: int = 0
    copies: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.last_frame == 0:
            object.__setattr__(self, "last_frame", self.info.seq_length)

    @property
    def frames(self) -> range:
        """The 1-based frame numbers read."""
        return range(self.first_frame, self.last_frame + 1)

    @property
    def gt_file(self) -> Path:
        return self.seq_dir / "gt" / "gt.txt"

    @property
    def has_gt(self) -> bool:
        return self.gt_file.is_file()

    def frame_paths(self) -> list[str]:
        return [os.fspath(self.info.frame_path(self.seq_dir, t)) for t in self.frames]


def _looks_like_sequence(path: Path) -> bool:
    return (path / "img1").is_dir() or (path / "gt").is_dir() or (path / "det").is_dir()


def find_mot_sequences(folder: str | os.PathLike) -> list[Path]:
    """The sequence folders of a MOTChallenge split folder, sorted by name.

    A sub-folder is a sequence when it holds ``seqinfo.ini``; one that looks
    like a sequence (``img1/``, ``gt/`` or ``det/``) without it is an error.

    Raises:
        FileNotFoundError: ``folder`` does not exist, or a sequence folder has
            no ``seqinfo.ini`` (named).
        DataError: ``folder`` is itself a sequence folder, or holds no
            sequences; the message names the layout expected.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"MOTChallenge folder not found: {os.fspath(root)!r} (expected {MOT_LAYOUT})")
    if (root / "seqinfo.ini").is_file():
        raise DataError(
            f"{os.fspath(root)!r} is a sequence folder (it holds seqinfo.ini); give the folder holding the "
            f"sequences (expected {MOT_LAYOUT})"
        )
    seqs = []
    for sub in sorted(root.iterdir()):
        if not sub.is_dir() or sub.name.startswith("."):
            continue
        if (sub / "seqinfo.ini").is_file():
            seqs.append(sub)
        elif _looks_like_sequence(sub):
            raise FileNotFoundError(f"seqinfo.ini not found: {os.fspath(sub / 'seqinfo.ini')}")
    if not seqs:
        splits = [s for s in ("train", "test") if (root / s).is_dir()]
        hint = (
            f"; it holds {'/, '.join(splits)}/: set split={splits[0]!r} (or give {os.fspath(root / splits[0])!r})"
            if splits
            else ""
        )
        raise DataError(
            f"{os.fspath(root)!r}: no sequence folders with a seqinfo.ini{hint} (expected {MOT_LAYOUT})"
        )
    return seqs


def half_frames(seq_length: int, half: str | None) -> tuple[int, int]:
    """The 1-based inclusive frame range of ``half`` of a sequence.

    ``'first'`` is frames ``1..n//2+1``, ``'second'`` the rest: the split of
    FairMOT/CenterTrack/ByteTrack's ``train_half``/``val_half``.
    """
    if half is None:
        return 1, seq_length
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES} or None, got {half!r}")
    cut = seq_length // 2 + 1
    if half == "first":
        return 1, min(cut, seq_length)
    if cut >= seq_length:
        raise DataError(f"sequence of {seq_length} frames has no second half")
    return cut + 1, seq_length


def _detector_order(prefer: str | Sequence[str]) -> tuple[str, ...]:
    order = (prefer,) if isinstance(prefer, str) else tuple(prefer)
    unknown = [d for d in order if d not in MOT17_DETECTORS]
    if unknown or not order:
        raise ValueError(f"prefer_detector must name detectors from {MOT17_DETECTORS}, got {prefer!r}")
    return order + tuple(d for d in MOT17_DETECTORS if d not in order)


def _one_copy_each(names: list[str], prefer: str | Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``[(kept name, other copies)]``: one folder per group of ``BASE-{DPM,FRCNN,SDP}``."""
    order = _detector_order(prefer)
    groups: dict[str, dict[str, str]] = {}
    for name in names:
        m = _DETECTOR_COPY.match(name)
        key, det = (m["base"], m["detector"]) if m else (name, "")
        groups.setdefault(key, {})[det] = name
    out = []
    for name in names:
        m = _DETECTOR_COPY.match(name)
        group = groups[m["base"] if m else name]
        kept = next((group[d] for d in (*order, "") if d in group), name)
        if kept == name:
            out.append((name, tuple(sorted(n for n in group.values() if n != name))))
    return out


def mot_sequences(
    data_root: str | os.PathLike,
    split: str | None = None,
    seq_names: Sequence[str] | None = None,
    prefer_detector: str | Sequence[str] | None = None,
    half: str | None = None,
) -> list[MotSequence]:
    """The sequences (folder, seqinfo, frame range) a MOTChallenge dataset reads.

    Args:
        data_root: the benchmark root (with ``split``) or a split folder.
        split: sub-folder of ``data_root`` (``'train'``, ``'test'``).
        seq_names: sequences to read (default all, sorted).
        prefer_detector: keep one of MOT17's ``-DPM``/``-FRCNN``/``-SDP``
            copies of a sequence: this detector's (a name or an order of
            preference); None keeps every folder.
        half: ``'first'``/``'second'``: that half of every sequence's frames.

    Raises:
        FileNotFoundError: a missing folder or ``seqinfo.ini`` (named).
        DataError: a wrong layout (the message names the layout expected),
            a bad ``seqinfo.ini``, or copies of different lengths.
    """
    root = Path(data_root)
    if split is not None:
        if not isinstance(split, str) or not split or "/" in split:
            raise ValueError(f"split must be a folder name such as 'train' or 'test', got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(
                f"MOTChallenge root not found: {os.fspath(root)!r} (expected {MOT_LAYOUT})"
            )
        if not (root / split).is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise FileNotFoundError(
                f"MOTChallenge split folder not found: {os.fspath(root / split)!r} (expected {MOT_LAYOUT}; "
                f"{os.fspath(root)!r} holds {found})"
            )
        root = root / split
    found = find_mot_sequences(root)
    names = [p.name for p in found]
    if seq_names is not None:
        missing = [n for n in seq_names if n not in names]
        if missing:
            raise FileNotFoundError(
                f"sequence folder(s) not found under {os.fspath(root)!r}: {missing} (present: {names})"
            )
        names = list(seq_names)
    picked = (
        _one_copy_each(names, prefer_detector) if prefer_detector is not None else [(n, ()) for n in names]
    )
    out = []
    for name, copies in picked:
        seq_dir = root / name
        info = read_seqinfo(seq_dir / "seqinfo.ini")
        for other in copies:
            length = read_seqinfo(root / other / "seqinfo.ini").seq_length
            if length != info.seq_length:
                raise DataError(
                    f"{os.fspath(root / other)!r} has {length} frames but {os.fspath(seq_dir)!r} "
                    f"has {info.seq_length}: they are not copies of one sequence"
                )
        first, last = half_frames(info.seq_length, half)
        out.append(MotSequence(name, seq_dir, info, first, last, copies))
    return out


def _check_files_exist(paths: list[str], what: str) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{what}: image file not found: {missing[0]}{more}")


@DATASETS.register_module()
class MOTChallengeDataset(MultiTaskBaseDataset):
    """Detection and tracking frames from MOTChallenge sequence folders.

    Args:
        data_root: the benchmark root holding ``train/`` and ``test/`` (with
            ``split``), or the folder holding the sequence folders.
        split: the split folder under ``data_root`` (``'train'``, ``'test'``).
        seq_names: sequences to load (default: every sub-folder with a
            ``seqinfo.ini``, sorted). Video ids are 1-based in this order.
        classes: class names, in label order. Without ``protocol`` the
            ``class`` column value k (1-based) is ``classes[k-1]``; with
            ``protocol='mot17'`` they are MOT17 class names
            (``('pedestrian',)``).
        protocol: None, or ``'mot17'``: the ``class`` column holds MOT17's
            ids; classes neither trained nor in ``ignore_classes`` are not
            used (counted in the log).
        ignore_classes: with ``'mot17'``: MOT17 class names whose boxes are
            ignore regions (default the protocol's distractors).
        min_visibility: a box of a trained class visible less than this is an
            ignore region (0: every box counts).
        prefer_detector: keep one of MOT17's ``-DPM``/``-FRCNN``/``-SDP``
            copies of each sequence, this detector's (or a preference
            order); None reads every folder.
        half: ``'first'``: frames ``1..n//2+1`` of every sequence; ``'second'``:
            the rest (FairMOT/ByteTrack's half split of the training set).
        with_gt: read ``gt/gt.txt`` (True), not (False), or (None) read it
            when every sequence has one and load frames without annotations
            when none has (a test split).
        renumber_ids: number identities across the dataset (True), keep the
            file's ids (False), or (None) renumber with a ``protocol`` or when
            two sequences share an id (or an id is negative), else keep them.
        num_ids: when given, the size of the embedding head's identity
            classifier: loading fails when the dataset needs a larger one
            (``metainfo['num_ids']``).
        pipeline: transforms.
        **kwargs: forwarded to mmengine's ``BaseDataset``.
    """

    def __init__(
        self,
        data_root: str,
        split: str | None = None,
        seq_names: list[str] | None = None,
        classes: tuple[str, ...] = ("object",),
        protocol: str | None = None,
        ignore_classes: Sequence[str] | None = None,
        min_visibility: float = 0.0,
        prefer_detector: str | Sequence[str] | None = None,
        half: str | None = None,
        with_gt: bool | None = True,
        renumber_ids: bool | None = None,
        num_ids: int | None = None,
        pipeline: list | None = None,
        **kwargs,
    ) -> None:
        if not classes:
            raise ValueError(f"classes must be a non-empty sequence of names, got {classes!r}")
        if protocol not in MOT_PROTOCOLS:
            raise ValueError(f"protocol must be one of {MOT_PROTOCOLS}, got {protocol!r}")
        if protocol is None and ignore_classes:
            raise ValueError("ignore_classes needs protocol='mot17' (class names of the MOT17 class ids)")
        if half is not None and half not in HALVES:
            raise ValueError(f"half must be one of {HALVES} or None, got {half!r}")
        if not 0.0 <= float(min_visibility) <= 1.0:
            raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility!r}")
        if num_ids is not None and (not isinstance(num_ids, int) or num_ids < 1):
            raise ValueError(f"num_ids must be a positive int or None, got {num_ids!r}")
        if with_gt not in (True, False, None):
            raise ValueError(f"with_gt must be True, False or None, got {with_gt!r}")
        self.split = split
        self.seq_names = list(seq_names) if seq_names is not None else None
        self.protocol = protocol
        ignore = MOT17_DISTRACTOR_CLASSES if ignore_classes is None else tuple(ignore_classes)
        self.class_map = mot17_class_map(tuple(classes), ignore) if protocol == "mot17" else None
        self.min_visibility = float(min_visibility)
        self.prefer_detector = prefer_detector
        self.half = half
        self.with_gt = with_gt
        if renumber_ids not in (True, False, None):
            raise ValueError(f"renumber_ids must be True, False or None, got {renumber_ids!r}")
        self.renumber_ids = renumber_ids
        self.num_ids = num_ids
        self.sequences: list[MotSequence] = []
        self.has_gt = bool(with_gt)
        metainfo = dict(kwargs.pop("metainfo", None) or {})
        metainfo.setdefault("classes", tuple(classes))
        metainfo.setdefault("cls_classes", ())
        super().__init__(data_root=data_root, pipeline=pipeline, metainfo=metainfo, **kwargs)

    def _resolve_gt(self, seqs: list[MotSequence]) -> bool:
        if self.with_gt is not None:
            return self.with_gt
        without = [s.name for s in seqs if not s.has_gt]
        if len(without) == len(seqs):
            return False
        if without:
            raise DataError(
                f"sequences {without} have no gt/gt.txt but the others of {os.fspath(seqs[0].seq_dir.parent)!r} "
                "do; give with_gt=True (and the files) or with_gt=False"
            )
        return True

    def load_data_list(self) -> list[dict]:
        seqs = mot_sequences(self.data_root, self.split, self.seq_names, self.prefer_detector, self.half)
        self.has_gt = self._resolve_gt(seqs)
        if self.half is not None and not self.has_gt:
            raise DataError(
                f"half={self.half!r} splits sequences with ground truth into training and validation "
                "frames; these have no gt/gt.txt (a test split: set half=None)"
            )
        self.sequences = seqs
        self._metainfo["videos"] = tuple(s.name for s in seqs)
        num_classes = len(self._metainfo["classes"])
        counts: Counter = Counter()
        per_seq = []
        for seq in seqs:
            frames = seq.frame_paths()
            _check_files_exist(frames, os.fspath(seq.seq_dir / "seqinfo.ini"))
            gt = {}
            if self.has_gt:
                gt = read_mot_gt(
                    seq.gt_file,
                    seq.info,
                    num_classes,
                    class_map=self.class_map,
                    min_visibility=self.min_visibility,
                    frames=(seq.first_frame, seq.last_frame),
                    counts=counts,
                )
            per_seq.append((seq, frames, gt))
        num_ids = self._number_identities([gt for _, _, gt in per_seq])
        self._metainfo["num_ids"] = num_ids
        if self.has_gt:
            self._log_summary(seqs, counts, num_ids)
        if self.num_ids is not None and num_ids > self.num_ids:
            raise DataError(
                f"{self._where(seqs)}: {num_ids} training identities but num_ids={self.num_ids}; "
                f"set the embedding head's num_ids (and this dataset's) to at least {num_ids}"
            )
        tasks = ("det", "track") if self.has_gt else ()
        data = []
        for video_index, (seq, frames, gt) in enumerate(per_seq):
            for t, img_path in zip(seq.frames, frames, strict=True):
                data.append(
                    {
                        "img_path": img_path,
                        "img_id": len(data),
                        "video_id": video_index + 1,
                        "frame_id": t,
                        **gt.get(t, empty_annotations()),
                        "tasks": tasks,
                    }
                )
        return data

    def _number_identities(self, per_seq_gt: list[dict[int, dict[str, np.ndarray]]]) -> int:
        """Make identities unique across sequences (in place); the identity classifier size needed.

        Renumbered, identities with a box that is not ignored get ``0..N-1``
        (sequence order, then their id in the file) and identities that are
        only ever ignore regions ``N, N+1, ...``; the size is N. Kept, the
        size is the largest trained id + 1.
        """
        trained: set[tuple[int, int]] = set()
        every: set[tuple[int, int]] = set()
        for v, gt in enumerate(per_seq_gt):
            for anns in gt.values():
                ids = anns["gt_instance_ids"].tolist()
                every.update((v, i) for i in ids)
                trained.update(
                    (v, i) for i, ign in zip(ids, anns["gt_ignore"].tolist(), strict=True) if not ign
                )
        renumber = self.renumber_ids
        if renumber is None:  # the file's ids are kept only when they already tell identities apart
            raw = [i for _, i in every]
            renumber = self.protocol is not None or len(set(raw)) != len(raw) or any(i < 0 for i in raw)
        if not renumber:
            return max((i for _, i in trained), default=-1) + 1
        order = sorted(trained) + sorted(every - trained)
        new_id = {key: n for n, key in enumerate(order)}
        for v, gt in enumerate(per_seq_gt):
            for anns in gt.values():
                anns["gt_instance_ids"] = np.array(
                    [new_id[v, i] for i in anns["gt_instance_ids"].tolist()], np.int64
                )
        return len(trained)

    def _where(self, seqs: list[MotSequence]) -> str:
        return os.fspath(seqs[0].seq_dir.parent) if seqs else os.fspath(self.data_root)

    def _log_summary(self, seqs: list[MotSequence], counts: Counter, num_ids: int) -> None:
        """One log line: boxes per class and outcome, ignore regions, identities."""
        name = (lambda k: MOT17_CLASSES.get(k, str(k))) if self.protocol == "mot17" else str
        parts = [
            f"{sum(len(s.frames) for s in seqs)} frames of {len(seqs)} sequences",
            f"{num_ids} training identities",
        ]
        for kind, text in (
            ("label", "boxes trained"),
            ("ignore_class", "ignore regions"),
            ("dropped", "boxes not used"),
        ):
            per = sorted((k[1], n) for k, n in counts.items() if isinstance(k, tuple) and k[0] == kind)
            if per:
                parts.append(f"{text}: " + ", ".join(f"{name(k)} {n}" for k, n in per))
        if counts["consider0"]:
            parts.append(f"{counts['consider0']} boxes with consider=0 ignored")
        if counts["low_visibility"]:
            parts.append(f"{counts['low_visibility']} boxes visible < {self.min_visibility:g} ignored")
        print_log(f"MOTChallenge {self._where(seqs)}: " + "; ".join(parts), logger="current")
