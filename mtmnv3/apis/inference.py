"""Inference over MOTChallenge sequences: detections computed once, tracked and scored as often as needed.

Sequences come from a MOTChallenge split folder or from a dataset's
:class:`~mtmnv3.data.motchallenge.MotSequence` list (its frame range, e.g. the
validation half, and the MOT17 detector copies it stands for). Every sequence
gets a MOTChallenge result file, ``OUT_DIR/<seq>.txt`` (the submission
layout; a file per copy too); sequences with ``gt/gt.txt`` are scored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtmnv3.data.common import DataError
from mtmnv3.data.motchallenge import MotSequence, find_mot_sequences, mot_sequences
from mtmnv3.heads.base import DETECTION, EMBEDDING, heads_by_task
from mtmnv3.runtime.deployed import FramePrediction
from mtmnv3.runtime.frame_runner import ExportedFrameRunner, TorchFrameRunner


def mot_sequence_dirs(root: str | os.PathLike) -> list[Path]:
    """Sequence folders (with ``seqinfo.ini``) of a MOTChallenge split folder, sorted.

    Raises:
        FileNotFoundError: no such folder, no sequences in it (the message
            names the layout expected), or a sequence folder without
            ``seqinfo.ini``.
    """
    try:
        return find_mot_sequences(root)
    except DataError as e:
        raise FileNotFoundError(str(e)) from None


def _as_sequences(seq_root: str | os.PathLike | Sequence[MotSequence]) -> list[MotSequence]:
    if isinstance(seq_root, (str, os.PathLike)):
        mot_sequence_dirs(seq_root)  # the folder's layout errors as FileNotFoundError
        return mot_sequences(seq_root)
    seqs = list(seq_root)
    if not seqs or not all(isinstance(s, MotSequence) for s in seqs):
        raise ValueError("seq_root must be a MOTChallenge split folder or a non-empty list of MotSequence")
    return seqs


def _frame_reader(seq_dir: Path):
    """``frame_id -> RGB frame`` of a MOTChallenge sequence folder."""
    import cv2

    from mtmnv3.data.mot import read_seqinfo

    info = read_seqinfo(Path(seq_dir) / "seqinfo.ini")

    def read(frame_id: int) -> np.ndarray:
        path = info.frame_path(seq_dir, frame_id)
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"cannot read frame {frame_id} of {os.fspath(seq_dir)!r}: {path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    return read


@dataclass
class SequenceDetections:
    """One MOTChallenge sequence's per-frame predictions, computed once and tracked many times.

    Attributes:
        seq_dir: the sequence folder (``seqinfo.ini``, ``gt/gt.txt``).
        frame_rate: frames per second from ``seqinfo.ini`` (30 when it has none).
        num_frames: frames predicted (``seqLength``, or fewer with ``max_frames``).
        seq_length: the sequence's ``seqLength``.
        predictions: one :class:`~mtmnv3.runtime.ort_runtime.FramePrediction` per frame,
            frame ``first_frame`` first.
        first_frame: the first frame predicted (1-based; > 1 for a validation half).
        copies: other sequence names with the same frames (MOT17's detector copies):
            they get the same result file.
    """

    seq_dir: Path
    frame_rate: float
    num_frames: int
    seq_length: int
    predictions: list[FramePrediction]
    first_frame: int = 1
    copies: tuple[str, ...] = ()

    @property
    def gt_file(self) -> Path:
        return self.seq_dir / "gt" / "gt.txt"

    @property
    def frame_ids(self) -> range:
        """The 1-based frame numbers predicted."""
        return range(self.first_frame, self.first_frame + self.num_frames)


def detect_mot_sequences(
    runner: TorchFrameRunner | ExportedFrameRunner,
    seq_root: str | os.PathLike | Sequence[MotSequence],
    embeddings: bool = True,
    input_size: int | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict[str, SequenceDetections]:
    """Run the detection (and embedding) heads once over every frame of a MOTChallenge split.

    The heads are found by the task they declare, whatever their names.
    ``seq_root`` is a MOTChallenge split folder (every frame of every
    sequence) or a dataset's sequences (their frame ranges);
    ``max_frames`` keeps the first frames of each.

    The result feeds :func:`track_detections` as often as needed: tracker
    settings can then be compared on exactly the same detections, at the
    cost of the tracker alone.

    Raises:
        FileNotFoundError: no sequences under ``seq_root``, or a frame that
            cannot be read (named).
        ValueError: the model has no detection head (or two heads of one task).
    """
    import cv2
    from tqdm import tqdm

    seqs = _as_sequences(seq_root)
    by_task = heads_by_task(runner.model.heads, required=(DETECTION,))
    heads = [by_task[DETECTION]]
    if embeddings and EMBEDDING in by_task:
        heads.append(by_task[EMBEDDING])
    out: dict[str, SequenceDetections] = {}
    for seq in seqs:
        frames = list(seq.frames)[:max_frames]
        preds = []
        for frame_id in tqdm(frames, desc=seq.name, disable=not progress, leave=False):
            path = seq.info.frame_path(seq.seq_dir, frame_id)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read frame {frame_id} of {os.fspath(seq.seq_dir)!r}: {path}")
            preds.append(
                runner.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), heads=heads, input_size=input_size)
            )
        out[seq.name] = SequenceDetections(
            seq.seq_dir,
            float(seq.info.frame_rate or 30),
            len(frames),
            seq.info.seq_length,
            preds,
            first_frame=seq.first_frame,
            copies=seq.copies,
        )
    return out


def track_detections(
    detections: Mapping[str, SequenceDetections],
    out_dir: str | os.PathLike,
    tracker_cfg: dict | None = None,
    per_sequence: bool = False,
    hota: bool = True,
    protocol: str | None = None,
) -> dict[str, float | int] | tuple[dict[str, float | int], dict[str, dict[str, float | int]]]:
    """Track cached detections with a fresh tracker per sequence, write and score the results.

    Each sequence gets a tracker built from ``tracker_cfg`` (default
    :class:`~mtmnv3.tracking.EmbeddingTracker` at the sequence's frame rate;
    ``use_embeddings=False`` ignores the embeddings); results are written as
    ``out_dir/<seq>.txt`` (atomically; the same file for each of its
    ``copies``) and, where ``<seq>/gt/gt.txt`` exists, scored against it
    (only the frames that were predicted) with the evaluation ``protocol``
    (:func:`~mtmnv3.evaluation.evaluate_mot`; ``'mot17'`` for MOT16/17).

    Returns:
        The metrics over the sequences with ground truth (MOTA, IDF1, HOTA,
        IDSW, ...; empty when none has any); with ``per_sequence`` also
        ``{sequence: metrics}``. ``hota=False`` leaves HOTA, DetA and AssA
        out: HOTA's sweep over localisation thresholds dominates the scoring
        time (``benchmarks/mot_metrics_speed.py`` measures it).
    """
    from mtmnv3.data.mot_io import load_mot_txt, write_mot_txt
    from mtmnv3.evaluation import evaluate_mot
    from mtmnv3.tracking import build_tracker, tracks_to_mot_rows

    use_emb = (tracker_cfg or {}).get("use_embeddings", True)
    out_dir = Path(out_dir)
    gt_rows, res_rows = {}, {}
    for name, seq in detections.items():
        tracker = build_tracker(
            {"type": "EmbeddingTracker", "frame_rate": seq.frame_rate, **(tracker_cfg or {})}
        )
        # camera-motion compensation (and BoxMOT's BoT-SORT) read the frames; other trackers never load them
        frames = _frame_reader(seq.seq_dir) if getattr(tracker, "uses_frames", False) else None
        rows = [
            tracks_to_mot_rows(
                i,
                tracker.update(
                    p.bboxes,
                    p.scores,
                    p.labels,
                    p.embeddings if use_emb else None,
                    frame_id=i,
                    frame=None if frames is None else frames(i),
                ),
            )
            for i, p in zip(seq.frame_ids, seq.predictions, strict=True)
        ]
        rows = np.concatenate(rows) if rows else np.zeros((0, 10))
        for out_name in (name, *seq.copies):
            write_mot_txt(out_dir / f"{out_name}.txt", rows)
        if not seq.gt_file.is_file():
            continue
        res_rows[name] = load_mot_txt(
            out_dir / f"{name}.txt"
        )  # scored as written (the file rounds coordinates)
        gt = load_mot_txt(seq.gt_file)
        gt_rows[name] = gt[(gt[:, 0] >= seq.first_frame) & (gt[:, 0] < seq.first_frame + seq.num_frames)]
    if not gt_rows:
        return ({}, {}) if per_sequence else {}
    overall = evaluate_mot(gt_rows, res_rows, hota=hota, protocol=protocol)
    if not per_sequence:
        return overall
    return overall, {
        n: evaluate_mot({n: gt_rows[n]}, {n: res_rows[n]}, hota=hota, protocol=protocol) for n in gt_rows
    }


def track_mot_sequences(
    runner: TorchFrameRunner | ExportedFrameRunner,
    seq_root: str | os.PathLike | Sequence[MotSequence],
    out_dir: str | os.PathLike,
    tracker_cfg: dict | None = None,
    input_size: int | None = None,
    max_frames: int | None = None,
    progress: bool = True,
    protocol: str | None = None,
) -> dict[str, float | int]:
    """Track every sequence of a MOTChallenge split folder (or a dataset's sequences) and score it.

    Each sequence's frames go through ``runner`` (detection + embedding
    heads; detection only with ``use_embeddings=False``) and a fresh tracker
    built from ``tracker_cfg`` (:func:`detect_mot_sequences`, then
    :func:`track_detections`); results are written as ``out_dir/<seq>.txt``
    (boxes in the frames' own pixels) and, where ``<seq>/gt/gt.txt`` exists,
    scored against it (MOTA, IDF1, HOTA, IDSW, ...; an empty dict when no
    sequence has ground truth, as a test split).
    """
    use_emb = (tracker_cfg or {}).get("use_embeddings", True)
    dets = detect_mot_sequences(runner, seq_root, use_emb, input_size, max_frames, progress)
    return track_detections(dets, out_dir, tracker_cfg, protocol=protocol)
