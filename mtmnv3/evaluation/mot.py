"""Multi-object tracking metrics on MOTChallenge-format boxes.

MOTA, IDF1, ID switches, MOTP, FP and FN come from :mod:`.clear_mot` (the
default ``backend='numpy'``: motmetrics' rules counted while walking the
frames, without its per-event tables; ``benchmarks/mot_metrics_speed.py`` times
both) or from motmetrics itself
(``backend='motmetrics'``); the tests hold the two equal. HOTA (with DetA and
AssA) comes from trackeval's ``HOTA.eval_sequence`` fed directly with the
per-frame id and similarity arrays it expects, so no file-format dataset class
is involved. The IoU matrices are computed here (motmetrics' own
``iou_matrix`` uses ``np.asfarray``, which NumPy 2 removed).

All of them see the same preprocessed data, following the MOTChallenge
protocol: ground-truth boxes whose mark column (index 6) is 0 are not
evaluated, and result boxes that match such a box (IoU >= 0.5, one-to-one) are
dropped. Evaluation is class-agnostic.

``protocol='mot17'`` reads the class column (index 7) as TrackEval's
MOTChallenge preprocessing does for MOT16/17: result boxes are matched
one-to-one to every ground-truth box, those matched to a distractor class
(person on vehicle, static person, distractor, reflection) are dropped, and
only pedestrian boxes with a non-zero mark are evaluated.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import motmetrics as mm
import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.structures import BaseDataElement
from scipy.optimize import linear_sum_assignment
from trackeval.metrics import HOTA

from mtmnv3.core.registry import METRICS
from mtmnv3.data.mot import MOT17_CLASSES, MOT17_DISTRACTOR_CLASSES, MOT17_EVAL_CLASSES, xyxy_to_mot
from mtmnv3.data.mot_io import (
    COL_CONF,
    COL_FRAME,
    COL_ID,
    MOT_MIN_COLUMNS,
    MOT_RESULT_COLUMNS,
    MOT_UNUSED,
    load_mot_txt,
    write_mot_txt,
)
from mtmnv3.evaluation._sample import boxes_to_original, get_field, has_field, sample_tasks, to_numpy
from mtmnv3.evaluation.clear_mot import MOTCounts, clear_mot_counts

__all__ = [
    "MOTMetric",
    "evaluate_mot",
    "evaluate_mot_files",
    "MOT_METRIC_KEYS",
    "MOT_BACKENDS",
    "MOT_EVAL_PROTOCOLS",
]

#: Where MOTA, IDF1, IDSW, MOTP, FP and FN come from (HOTA is trackeval's either way).
MOT_BACKENDS = ("numpy", "motmetrics")

#: IoU at or above which a result box can match a ground-truth box (MOTChallenge's CLEAR/ID threshold).
MATCH_IOU_THRESHOLD = 0.5
#: Ground-truth mark (column 6) value of a box that is not evaluated.
GT_IGNORE_MARK = 0
#: Ground-truth class column (MOT16/17).
GT_CLASS_COLUMN = 7
_MOT17_IDS = {name: k for k, name in MOT17_CLASSES.items()}
#: protocol -> (evaluated class ids, distractor class ids); None: class-agnostic, mark 0 ignored.
MOT_EVAL_PROTOCOLS: dict[str | None, tuple[tuple[int, ...], tuple[int, ...]] | None] = {
    None: None,
    "mot17": (
        tuple(_MOT17_IDS[c] for c in MOT17_EVAL_CLASSES),
        tuple(_MOT17_IDS[c] for c in MOT17_DISTRACTOR_CLASSES),
    ),
}
#: Tolerance of the IoU threshold comparisons (as in trackeval).
IOU_EPS = float(np.finfo(float).eps)
#: Keys of :func:`evaluate_mot`'s result, in table order.
MOT_METRIC_KEYS = ("MOTA", "IDF1", "HOTA", "IDSW", "MOTP", "FP", "FN", "DetA", "AssA")
#: motmetrics metric names -> our keys.
_MOTMETRICS_NAMES = {
    "mota": "MOTA",
    "idf1": "IDF1",
    "num_switches": "IDSW",
    "motp": "MOTP",
    "num_false_positives": "FP",
    "num_misses": "FN",
}
_INTEGER_KEYS = ("IDSW", "FP", "FN")


@dataclass(frozen=True)
class _Frame:
    """One frame after preprocessing: ids, xyxy boxes and their IoU (gt x result)."""

    frame: int
    gt_ids: np.ndarray
    result_ids: np.ndarray
    iou: np.ndarray


def _check_rows(rows: Any, what: str) -> np.ndarray:
    array = np.asarray(rows, np.float64)
    if array.size == 0:
        return array.reshape(0, MOT_RESULT_COLUMNS)
    if array.ndim != 2 or array.shape[1] < MOT_MIN_COLUMNS:
        raise ValueError(f"{what} must be an (N, >={MOT_MIN_COLUMNS}) MOTChallenge array, got {array.shape}")
    return array


def _xywh_to_xyxy(rows: np.ndarray) -> np.ndarray:
    boxes = np.asarray(rows[:, 2:6], np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def _iou(gt_rows: np.ndarray, result_rows: np.ndarray) -> np.ndarray:
    """IoU of ``(left, top, width, height)`` boxes, gt x result (as ``torchvision.ops.box_iou``)."""
    if len(gt_rows) == 0 or len(result_rows) == 0:
        return np.zeros((len(gt_rows), len(result_rows)))
    a, b = _xywh_to_xyxy(gt_rows), _xywh_to_xyxy(result_rows)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None
    )
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _check_unique_ids(rows: np.ndarray, seq: str, what: str) -> None:
    """Fail on an id that repeats within a frame (naming the first such frame)."""
    pairs, counts = np.unique(rows[:, [COL_FRAME, COL_ID]], axis=0, return_counts=True)
    if np.any(counts > 1):
        frame = pairs[counts > 1][0, 0]
        repeated = pairs[(counts > 1) & (pairs[:, 0] == frame), 1]
        raise ValueError(f"sequence {seq!r}, frame {int(frame)}: {what} id(s) {repeated.tolist()} repeat")


def _by_frame(rows: np.ndarray, frames: list[int]) -> dict[int, np.ndarray]:
    """Rows grouped by frame number (in their order), one empty array for a frame without rows."""
    rows = rows[np.argsort(rows[:, COL_FRAME], kind="stable")]
    numbers = rows[:, COL_FRAME].astype(np.int64)
    starts = np.searchsorted(numbers, frames, side="left")
    ends = np.searchsorted(numbers, frames, side="right")
    return {f: rows[a:b] for f, a, b in zip(frames, starts, ends)}


def _preprocess_sequence(
    seq: str, gt: np.ndarray, results: np.ndarray, protocol: str | None = None
) -> list[_Frame]:
    """Split a sequence into frames, drop ignored gt and the results that match them.

    Without a protocol, gt boxes with mark 0 are ignore regions. With one,
    results matched to a distractor-class box are dropped and only boxes of
    the evaluated classes with a non-zero mark are evaluated.
    """
    classes = MOT_EVAL_PROTOCOLS[protocol]
    if classes is not None and len(gt) and gt.shape[1] <= GT_CLASS_COLUMN:
        raise ValueError(
            f"sequence {seq!r}: protocol {protocol!r} needs the ground truth's class column "
            f"(column {GT_CLASS_COLUMN + 1}); the rows have {gt.shape[1]} columns"
        )
    _check_unique_ids(gt, seq, "ground-truth")
    _check_unique_ids(results, seq, "result")
    frames = sorted({int(f) for f in gt[:, COL_FRAME]} | {int(f) for f in results[:, COL_FRAME]})
    gt_by_frame = _by_frame(gt, frames)
    res_by_frame = _by_frame(results, frames)
    out = []
    for f in frames:
        g, r = gt_by_frame[f], res_by_frame[f]
        iou = _iou(g, r)
        marked = g[:, COL_CONF] == GT_IGNORE_MARK if g.shape[1] > COL_CONF else np.zeros(len(g), bool)
        if classes is None:
            ignored, keep_gt = marked, ~marked
        else:
            evaluated, distractors = classes
            ignored = np.isin(g[:, GT_CLASS_COLUMN], distractors)
            keep_gt = ~marked & np.isin(g[:, GT_CLASS_COLUMN], evaluated)
        keep_res = np.ones(len(r), bool)
        if ignored.any() and len(r):
            # Step 1: one-to-one match of results to all gt at the match threshold.
            scores = np.where(iou >= MATCH_IOU_THRESHOLD - IOU_EPS, iou, 0.0)
            rows, cols = linear_sum_assignment(-scores)
            matched = scores[rows, cols] > IOU_EPS
            # Step 2: results matched to an ignored gt box are neither TP nor FP.
            keep_res[cols[matched & ignored[rows]]] = False
        out.append(
            _Frame(
                frame=f,
                gt_ids=g[keep_gt, COL_ID].astype(np.int64),
                result_ids=r[keep_res, COL_ID].astype(np.int64),
                iou=iou[np.ix_(keep_gt, keep_res)],
            )
        )
    return out


def _distances(fr: _Frame) -> np.ndarray:
    """``1 - IoU``, NaN where the pair cannot match."""
    dist = 1.0 - fr.iou
    dist[fr.iou < MATCH_IOU_THRESHOLD - IOU_EPS] = np.nan
    return dist


def _accumulate(frames: Sequence[_Frame]) -> mm.MOTAccumulator:
    acc = mm.MOTAccumulator(auto_id=False)
    for fr in frames:
        acc.update(fr.gt_ids.tolist(), fr.result_ids.tolist(), _distances(fr), frameid=fr.frame)
    return acc


def _motmetrics_summary(accumulators: list[mm.MOTAccumulator], names: list[str]) -> dict[str, float | int]:
    handler = mm.metrics.create()
    summary = handler.compute_many(
        accumulators, metrics=list(_MOTMETRICS_NAMES), names=names, generate_overall=True
    )
    overall = summary.loc["OVERALL"]
    return {key: float(overall[name]) for name, key in _MOTMETRICS_NAMES.items()}


def _hota_data(frames: Sequence[_Frame]) -> dict[str, Any]:
    """The data dict trackeval's ``HOTA.eval_sequence`` expects (ids remapped to 0..n-1)."""
    gt_unique = np.unique(np.concatenate([fr.gt_ids for fr in frames] + [np.zeros(0, np.int64)]))
    res_unique = np.unique(np.concatenate([fr.result_ids for fr in frames] + [np.zeros(0, np.int64)]))
    return {
        "num_timesteps": len(frames),
        "num_gt_ids": len(gt_unique),
        "num_tracker_ids": len(res_unique),
        "num_gt_dets": sum(len(fr.gt_ids) for fr in frames),
        "num_tracker_dets": sum(len(fr.result_ids) for fr in frames),
        "gt_ids": [np.searchsorted(gt_unique, fr.gt_ids) for fr in frames],
        "tracker_ids": [np.searchsorted(res_unique, fr.result_ids) for fr in frames],
        "similarity_scores": [fr.iou for fr in frames],
    }


def evaluate_mot(
    gt: Mapping[str, np.ndarray],
    results: Mapping[str, np.ndarray],
    backend: str = "numpy",
    hota: bool = True,
    protocol: str | None = None,
) -> dict[str, float | int]:
    """MOTA, IDF1, HOTA and friends over sequences of MOTChallenge-format rows.

    Args:
        gt: Sequence name -> (N, >=6) array ``frame, id, left, top, width,
            height[, mark, class, visibility]``; rows with ``mark == 0`` are
            not evaluated.
        results: Sequence name -> (M, >=6) array ``frame, id, left, top,
            width, height[, conf, ...]``. Must cover exactly the sequences of
            ``gt``.
        backend: ``'numpy'`` (:mod:`.clear_mot`, the default) or
            ``'motmetrics'``: what counts MOTA, IDF1, IDSW, MOTP, FP and FN.
        hota: also compute HOTA, DetA and AssA (trackeval; the slowest part);
            ``False`` leaves these three keys out.
        protocol: None (class-agnostic; ``mark == 0`` boxes are ignore
            regions) or ``'mot17'`` (the class column decides, as TrackEval
            does for MOT16/17: see the module docstring).

    Returns:
        Over all sequences combined: ``MOTA``, ``IDF1``, ``HOTA``, ``MOTP``
        (mean IoU of matched pairs), ``DetA``, ``AssA`` as floats and
        ``IDSW``, ``FP``, ``FN`` as ints. Undefined ratios (e.g. MOTA without
        ground truth) are NaN.

    Raises:
        TypeError: If ``gt`` or ``results`` is not a mapping.
        ValueError: If the sequences differ, an array is malformed, an id
            repeats within a frame or the backend is unknown.
    """
    if backend not in MOT_BACKENDS:
        raise ValueError(f"MOT metrics backend must be one of {MOT_BACKENDS}, got {backend!r}")
    if protocol not in MOT_EVAL_PROTOCOLS:
        raise ValueError(
            f"MOT evaluation protocol must be one of {list(MOT_EVAL_PROTOCOLS)}, got {protocol!r}"
        )
    if not isinstance(gt, Mapping) or not isinstance(results, Mapping):
        raise TypeError(
            f"gt and results must map sequence names to arrays, got {type(gt).__name__} "
            f"and {type(results).__name__}"
        )
    if set(gt) != set(results):
        raise ValueError(
            f"gt and results must cover the same sequences; only in gt: {sorted(set(gt) - set(results))}, "
            f"only in results: {sorted(set(results) - set(gt))}"
        )
    if not gt:
        raise ValueError("evaluate_mot needs at least one sequence, got none")
    names = sorted(gt, key=str)
    accumulators, counts, hota_results, num_gt_dets = [], MOTCounts(), {}, 0
    hota_metric = HOTA()
    for name in names:
        frames = _preprocess_sequence(
            str(name),
            _check_rows(gt[name], f"gt[{name!r}]"),
            _check_rows(results[name], f"results[{name!r}]"),
            protocol,
        )
        if backend == "numpy":
            counts += clear_mot_counts((fr.gt_ids, fr.result_ids, _distances(fr)) for fr in frames)
        else:
            accumulators.append(_accumulate(frames))
        num_gt_dets += sum(len(fr.gt_ids) for fr in frames)
        if hota:
            hota_results[str(name)] = hota_metric.eval_sequence(_hota_data(frames))

    if backend == "numpy":
        metrics: dict[str, float | int] = dict(counts.summary())
    else:
        metrics = _motmetrics_summary(accumulators, [str(n) for n in names])
    metrics["MOTP"] = 1.0 - metrics["MOTP"]  # both report the mean distance 1 - IoU
    for key in _INTEGER_KEYS:
        metrics[key] = int(metrics[key])
    if hota:
        with contextlib.redirect_stdout(io.StringIO()):
            combined = (
                hota_metric.combine_sequences(hota_results)
                if len(hota_results) > 1
                else hota_results[str(names[0])]
            )
        for key in ("HOTA", "DetA", "AssA"):
            metrics[key] = float(np.mean(combined[key]))
    if num_gt_dets == 0:
        metrics["MOTA"] = math.nan  # 1 - errors / 0 ground-truth boxes
    return {key: metrics[key] for key in MOT_METRIC_KEYS if key in metrics}


def _sequence_name(path: Path) -> str:
    """``<seq>/gt/gt.txt`` -> ``<seq>``; any other file -> its stem."""
    if path.name == "gt.txt" and path.parent.name == "gt":
        return path.parent.parent.name
    return path.stem


def _named_files(files: str | os.PathLike | Mapping[str, Any] | Iterable[Any], what: str) -> dict[str, Path]:
    if isinstance(files, Mapping):
        return {str(k): Path(v) for k, v in files.items()}
    if isinstance(files, (str, os.PathLike)):
        path = Path(files)
        if path.is_file():
            return {_sequence_name(path): path}
        if not path.is_dir():
            raise FileNotFoundError(f"{what} does not exist: {os.fspath(path)!r}")
        challenge = sorted(path.glob("*/gt/gt.txt"))
        found = challenge if challenge else sorted(path.glob("*.txt"))
        if not found:
            raise FileNotFoundError(
                f"{what} {os.fspath(path)!r} holds neither <seq>/gt/gt.txt nor *.txt files"
            )
        return {_sequence_name(p): p for p in found}
    named: dict[str, Path] = {}
    for item in files:
        path = Path(item)
        name = _sequence_name(path)
        if name in named:
            raise ValueError(f"{what}: two files for sequence {name!r}: {named[name]} and {path}")
        named[name] = path
    return named


def evaluate_mot_files(
    gt_dir_or_files: str | os.PathLike | Mapping[str, Any] | Iterable[Any],
    result_files: str | os.PathLike | Mapping[str, Any] | Iterable[Any],
    backend: str = "numpy",
    protocol: str | None = None,
) -> dict[str, float | int]:
    """:func:`evaluate_mot` on MOTChallenge text files.

    Args:
        gt_dir_or_files: A MOTChallenge split folder (``<seq>/gt/gt.txt``), a
            folder of ``<seq>.txt`` files, one file, a list of files
            (``<seq>/gt/gt.txt`` is named ``<seq>``, other files by their
            stem) or a mapping sequence name -> file.
        result_files: Result files in any of the same forms; a folder is
            read as ``<folder>/<seq>.txt``. Every ground-truth sequence needs
            a result file.
        backend: See :func:`evaluate_mot`.
        protocol: See :func:`evaluate_mot`.

    Returns:
        The metrics of :func:`evaluate_mot`.

    Raises:
        FileNotFoundError: If a folder or file is missing.
        ValueError: If sequences do not correspond, or a file is malformed
            (:class:`~mtmnv3.data.mot_io.MOTFormatError`, naming file and line).
    """
    gt_files = _named_files(gt_dir_or_files, "gt_dir_or_files")
    if isinstance(result_files, (str, os.PathLike)) and Path(result_files).is_dir():
        folder = Path(result_files)
        res_files = {name: folder / f"{name}.txt" for name in gt_files}
        missing = sorted(name for name, p in res_files.items() if not p.is_file())
        if missing:
            raise FileNotFoundError(
                f"result folder {os.fspath(folder)!r} has no file for sequence(s) {missing}"
            )
    else:
        res_files = _named_files(result_files, "result_files")
    if set(gt_files) != set(res_files):
        raise ValueError(
            f"ground truth and results name different sequences; only in gt: "
            f"{sorted(set(gt_files) - set(res_files))}, only in results: {sorted(set(res_files) - set(gt_files))}"
        )
    gt = {name: load_mot_txt(p) for name, p in gt_files.items()}
    results = {name: load_mot_txt(p) for name, p in res_files.items()}
    return evaluate_mot(gt, results, backend=backend, protocol=protocol)


def _instance_rows(
    instances: Any, frame: int, sample: Any, what: str, img_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """MOTChallenge ``frame, id, left, top, width, height`` rows (1-based corner) and ids
    from InstanceData fields (0-based ``x1, y1, x2, y2`` boxes).

    With ``sample`` given, boxes are mapped from input-image to original pixels.
    """
    boxes = to_numpy(get_field(instances, "bboxes"), np.float64).reshape(-1, 4)
    if sample is not None:
        boxes = boxes_to_original(boxes, sample)
    ids = to_numpy(get_field(instances, "instance_ids"), np.int64).reshape(-1)
    if len(ids) != len(boxes):
        raise ValueError(f"{what} of img_id={img_id}: {len(boxes)} boxes but {len(ids)} instance_ids")
    rows = np.zeros((len(boxes), 6))
    rows[:, COL_FRAME] = frame
    rows[:, COL_ID] = ids
    rows[:, 2:6] = xyxy_to_mot(boxes)  # MOTChallenge's 1-based corner, as result files need
    return rows, ids


@METRICS.register_module()
class MOTMetric(BaseMetric):
    """MOTA, IDF1, HOTA, ID switches (and MOTP, FP, FN, DetA, AssA) per run.

    Samples count when their ``tasks`` metainfo includes ``'track'`` (or,
    without ``tasks``, when they carry ``pred_track_instances``). They are
    grouped by ``video_id`` and ordered by ``frame_id``. Ground truth is
    ``gt_instances`` (``bboxes`` in input-image pixels, mapped back to
    original pixels by removing ``pad_param`` and dividing by
    ``scale_factor``; ``instance_ids``; ``ignore`` boxes and boxes with
    unknown id (-1) are not evaluated). Predictions are
    ``pred_track_instances`` (``bboxes`` in original-image pixels,
    ``instance_ids``, ``scores``).

    With the default prefix ``'mot'`` the keys returned by ``evaluate`` are
    ``mot/MOTA``, ``mot/IDF1``, ``mot/HOTA``, ``mot/IDSW``, ``mot/MOTP``,
    ``mot/FP``, ``mot/FN``, ``mot/DetA`` and ``mot/AssA`` (see
    :func:`evaluate_mot`).

    Args:
        out_dir: When set, the tracks are also written there as MOTChallenge
            result files ``video_<video_id>.txt``.
        collect_device: ``'cpu'`` or ``'gpu'``.
        prefix: Key prefix; defaults to ``'mot'``.
        backend: ``'numpy'`` (the default) or ``'motmetrics'``; see
            :func:`evaluate_mot`.
        hota: also compute HOTA, DetA and AssA (``False``: faster, the
            three keys are left out).
    """

    default_prefix = "mot"

    def __init__(
        self,
        out_dir: str | os.PathLike | None = None,
        collect_device: str = "cpu",
        prefix: str | None = None,
        backend: str = "numpy",
        hota: bool = True,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if backend not in MOT_BACKENDS:
            raise ValueError(f"MOTMetric backend must be one of {MOT_BACKENDS}, got {backend!r}")
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.backend = backend
        self.hota = bool(hota)

    def process(self, data_batch: Any, data_samples: Sequence[Mapping | BaseDataElement]) -> None:
        """Turn each tracking sample into MOTChallenge gt and result rows.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples: The model's outputs, as dicts or data elements.
        """
        for sample in data_samples:
            tasks = sample_tasks(sample)
            if (tasks is not None and "track" not in tasks) or (
                tasks is None and not has_field(sample, "pred_track_instances")
            ):
                continue
            img_id = int(get_field(sample, "img_id", -1))
            video_id, frame = int(get_field(sample, "video_id")), int(get_field(sample, "frame_id"))
            if video_id < 0 or frame < 1:
                raise ValueError(
                    f"tracking sample img_id={img_id} needs video_id >= 0 and frame_id >= 1, "
                    f"got video_id={video_id}, frame_id={frame}"
                )
            if not has_field(sample, "pred_track_instances"):
                raise KeyError(f"MOTMetric needs pred_track_instances in tracking sample img_id={img_id}")
            gt = get_field(sample, "gt_instances")
            gt_rows, gt_ids = _instance_rows(gt, frame, sample, "gt_instances", img_id)
            ignore = get_field(gt, "ignore", None)
            ignore = np.zeros(len(gt_rows), bool) if ignore is None else to_numpy(ignore, bool).reshape(-1)
            mark = np.where(ignore | (gt_ids < 0), GT_IGNORE_MARK, 1)
            pred = get_field(sample, "pred_track_instances")
            pred_rows, _ = _instance_rows(pred, frame, None, "pred_track_instances", img_id)
            scores = get_field(pred, "scores", None)
            conf = np.ones(len(pred_rows)) if scores is None else to_numpy(scores, np.float64).reshape(-1)
            self.results.append(
                {
                    "video_id": video_id,
                    "frame_id": frame,
                    "gt": np.column_stack([gt_rows, mark]),
                    "pred": np.column_stack(
                        [pred_rows, conf, np.full((len(pred_rows), 3), float(MOT_UNUSED))]
                    ),
                }
            )

    def compute_metrics(self, results: list[dict[str, Any]]) -> dict[str, float | int]:
        """Evaluate every video together (see :func:`evaluate_mot`).

        Args:
            results: Per-frame rows collected by :meth:`process`.

        Returns:
            The metrics of :func:`evaluate_mot`, unprefixed; NaN for every
            metric when no tracking sample was seen.
        """
        if not results:
            return {key: math.nan for key in MOT_METRIC_KEYS}
        frames = {(r["video_id"], r["frame_id"]): r for r in results}  # drop padding duplicates
        gt: dict[str, list[np.ndarray]] = {}
        preds: dict[str, list[np.ndarray]] = {}
        for (video_id, _), r in sorted(frames.items()):
            name = f"video_{video_id}"
            gt.setdefault(name, []).append(r["gt"].reshape(-1, MOT_MIN_COLUMNS + 1))
            preds.setdefault(name, []).append(r["pred"].reshape(-1, MOT_RESULT_COLUMNS))
        gt_arrays = {name: np.concatenate(rows) for name, rows in gt.items()}
        pred_arrays = {name: np.concatenate(rows) for name, rows in preds.items()}
        if self.out_dir is not None:
            for name, rows in pred_arrays.items():
                write_mot_txt(self.out_dir / f"{name}.txt", rows)
        return evaluate_mot(gt_arrays, pred_arrays, backend=self.backend, hota=self.hota)
