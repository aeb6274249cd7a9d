"""Inference over MOTChallenge sequences: detections computed once, tracked and scored as often as needed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtmnv3.heads.base import DETECTION, EMBEDDING, heads_by_task
from mtmnv3.runtime.deployed import FramePrediction
from mtmnv3.runtime.frame_runner import ExportedFrameRunner, TorchFrameRunner


def mot_sequence_dirs(root: str | os.PathLike) -> list[Path]:
    """Sequence folders (with ``seqinfo.ini``) of a MOTChallenge split folder, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MOTChallenge folder not found: {os.fspath(root)!r}")
    seqs = sorted(p for p in root.iterdir() if (p / "seqinfo.ini").is_file())
    if not seqs:
        raise FileNotFoundError(f"no sequences (folders with seqinfo.ini) under {os.fspath(root)!r}")
    return seqs


@dataclass
class SequenceDetections:
    """One MOTChallenge sequence's per-frame predictions, computed once and tracked many times.

    Attributes:
        seq_dir: the sequence folder (``seqinfo.ini``, ``gt/gt.txt``).
        frame_rate: frames per second from ``seqinfo.ini`` (30 when it has none).
        num_frames: frames predicted (``seqLength``, or fewer with ``max_frames``).
        seq_length: the sequence's ``seqLength``.
        predictions: one :class:`~mtmnv3.runtime.ort_runtime.FramePrediction` per frame, frame 1 first.
    """

    seq_dir: Path
    frame_rate: float
    num_frames: int
    seq_length: int
    predictions: list[FramePrediction]


def detect_mot_sequences(
    runner: TorchFrameRunner | ExportedFrameRunner,
    seq_root: str | os.PathLike,
    embeddings: bool = True,
    input_size: int | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict[str, SequenceDetections]:
    """Run the detection (and embedding) heads once over every frame of a MOTChallenge split.

    The heads are found by the task they declare, whatever their names.

    The result feeds :func:`track_detections` as often as needed: tracker
    settings can then be compared on exactly the same detections, at the
    cost of the tracker alone.

    Raises:
        FileNotFoundError: no sequences under ``seq_root``, or a frame that cannot be read.
        ValueError: the model has no detection head (or two heads of one task).
    """
    import cv2
    from tqdm import tqdm

    from mtmnv3.data.mot import read_seqinfo

    by_task = heads_by_task(runner.model.heads, required=(DETECTION,))
    heads = [by_task[DETECTION]]
    if embeddings and EMBEDDING in by_task:
        heads.append(by_task[EMBEDDING])
    out: dict[str, SequenceDetections] = {}
    for seq in mot_sequence_dirs(seq_root):
        info = read_seqinfo(seq / "seqinfo.ini")
        n = info.seq_length if max_frames is None else min(info.seq_length, max_frames)
        preds = []
        for frame_id in tqdm(range(1, n + 1), desc=seq.name, disable=not progress, leave=False):
            bgr = cv2.imread(str(info.frame_path(seq, frame_id)), cv2.IMREAD_COLOR)
            if bgr is None:
                raise FileNotFoundError(f"cannot read frame {frame_id} of {os.fspath(seq)!r}")
            preds.append(
                runner.predict(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), heads=heads, input_size=input_size)
            )
        out[seq.name] = SequenceDetections(seq, float(info.frame_rate or 30), n, info.seq_length, preds)
    return out


def track_detections(
    detections: Mapping[str, SequenceDetections],
    out_dir: str | os.PathLike,
    tracker_cfg: dict | None = None,
    per_sequence: bool = False,
    hota: bool = True,
) -> dict[str, float | int] | tuple[dict[str, float | int], dict[str, dict[str, float | int]]]:
    """Track cached detections with a fresh tracker per sequence, write and score the results.

    Each sequence gets a tracker built from ``tracker_cfg`` (default
    :class:`~mtmnv3.tracking.EmbeddingTracker` at the sequence's frame rate;
    ``use_embeddings=False`` ignores the embeddings); results are written as
    ``out_dir/<seq>.txt`` (atomically) and scored against ``<seq>/gt/gt.txt``
    (only the frames that were predicted).

    Returns:
        The metrics over all sequences (MOTA, IDF1, HOTA, IDSW, ...); with
        ``per_sequence`` also ``{sequence: metrics}``. ``hota=False`` leaves
        HOTA, DetA and AssA out: HOTA's sweep over localisation thresholds
        dominates the scoring time (``benchmarks/mot_metrics_speed.py`` measures it).
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
        rows = [
            tracks_to_mot_rows(
                i, tracker.update(p.bboxes, p.scores, p.labels, p.embeddings if use_emb else None, frame_id=i)
            )
            for i, p in enumerate(seq.predictions, start=1)
        ]
        res_file = out_dir / f"{name}.txt"
        write_mot_txt(res_file, np.concatenate(rows) if rows else np.zeros((0, 10)))
        res_rows[name] = load_mot_txt(res_file)  # scored as written (the file rounds coordinates)
        gt = load_mot_txt(seq.seq_dir / "gt" / "gt.txt")
        gt_rows[name] = gt[gt[:, 0] <= seq.num_frames]
    overall = evaluate_mot(gt_rows, res_rows, hota=hota)
    if not per_sequence:
        return overall
    return overall, {n: evaluate_mot({n: gt_rows[n]}, {n: res_rows[n]}, hota=hota) for n in gt_rows}


def track_mot_sequences(
    runner: TorchFrameRunner | ExportedFrameRunner,
    seq_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    tracker_cfg: dict | None = None,
    input_size: int | None = None,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict[str, float | int]:
    """Track every sequence of a MOTChallenge split folder and score it.

    Each sequence's frames go through ``runner`` (detection + embedding
    heads; detection only with ``use_embeddings=False``) and a fresh tracker
    built from ``tracker_cfg`` (:func:`detect_mot_sequences`, then
    :func:`track_detections`); results are written as ``out_dir/<seq>.txt``
    and scored against ``<seq>/gt/gt.txt`` (MOTA, IDF1, HOTA, IDSW, ...).
    """
    use_emb = (tracker_cfg or {}).get("use_embeddings", True)
    dets = detect_mot_sequences(runner, seq_root, use_emb, input_size, max_frames, progress)
    return track_detections(dets, out_dir, tracker_cfg)
