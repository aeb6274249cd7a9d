"""The robustness study: every task's metric under the shift suite and under attacks.

Corruption suite (Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR 2019). The model and
the test dataloader are built from the config **once**; the test batches are
loaded once and kept in memory, and each (corruption, severity) condition
corrupts the collated uint8 batch with the vectorised :func:`corrupt` before
the model's own ``test_step``. Each image's corruption stream is keyed by its
``video_id`` / ``frame_id`` metainfo (still images: :func:`still_image_video_id`),
exactly as the ``CorruptFrames`` pipeline transform does, so a video sees one
camera fault and the result does not depend on batching.

Summary numbers per headline metric ``m`` (error ``E = 1 - m``; see
:data:`TASK_METRICS`):

* corruption error ``CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}`` and
  ``mCE = mean_c CE_c`` against a reference model's results (ImageNet-C's
  AlexNet normalisation); without a reference, the unnormalised mean error
  ``CE_c = mean_s E_{s,c}``;
* relative CE ``sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``
  (with a reference);
* relative robustness: clean metric minus corrupted metric, per condition and
  averaged.

Attack mode: FGSM (Goodfellow et al., ICLR 2015) and PGD (Madry et al., ICLR
2018) at each eps against each head's loss and against the shared trunk's
features (:mod:`.attacks`); every task's metric is measured under every attack,
giving a cross-task transfer table (rows: attack target, columns: task metric).

Tracking (MOT) metrics need a tracker run over each video in frame order.
They are left out unless :class:`RobustnessStudy` gets a
``sequence_hook_factory``: a callable returning, for each condition, a fresh
callback that receives every predicted batch in dataloader order and writes
``pred_track_instances`` onto the samples. ``build_study(track=True)``
(``tools/robustness.py --track``) plugs in the config's tracker
(:class:`~.tracking.TrackingHook`) and adds ``MOTMetric``, so MOTA and IDF1
join the tables.

Speed: ``build_study`` folds the model's BatchNorms into its convs
(``fold_bn=False`` keeps them), the suite's ``MOTMetric`` skips HOTA,
and ``workers > 1`` runs the conditions in forked CPU processes; together they
bring the whole suite with tracking on the default 2880-frame split from ~19
to 8-9 minutes on 2 cores.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.model import ImgDataPreprocessor
from torch import Tensor, nn
from tqdm import tqdm

from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.corrupt_transforms import still_image_video_id
from mtmnv3.data.corruptions import CORRUPTIONS, NUM_SEVERITIES, corrupt
from mtmnv3.studies.robustness.attacks import TRUNK_TARGET, fgsm_attack, pgd_attack, pixels_to_unit

__all__ = [
    "ATTACK_METHODS",
    "RESULTS_VERSION",
    "TASK_METRICS",
    "TRACKING_METRIC_TYPES",
    "TRACK_MODES",
    "RobustnessStudy",
    "WorkerError",
    "build_study",
    "check_workers",
    "collect_batches",
    "corrupt_batch",
    "corruption_ids",
    "format_markdown",
    "load_reference",
    "mean_corruption_error",
    "parse_corruptions",
    "parse_eps",
    "parse_severities",
    "plot_severity_curves",
    "relative_corruption_error",
    "run_study",
    "summarise",
    "write_outputs",
]

#: Version of the results JSON layout.
RESULTS_VERSION = 1
#: Headline metrics per task (higher is better, error = 1 - metric) that mCE is computed for.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cls": ("cls/top1",),
    "det": ("det/mAP", "det/mAP_50"),
    "mot": ("mot/MOTA", "mot/IDF1"),
}
#: Metric types that need a tracker over each video (see ``sequence_hook_factory``).
TRACKING_METRIC_TYPES = frozenset({"MOTMetric"})
#: ``build_study(track=...)``: off, the config's tracker with embeddings, or IoU-only association.
TRACK_MODES = (False, True, "embeddings", "iou")
#: Attack methods of attack mode.
ATTACK_METHODS = ("fgsm", "pgd")
#: Default PGD steps (Madry et al. use 7-40; 10 is the common evaluation setting).
DEFAULT_PGD_STEPS = 10
#: File names written by :func:`write_outputs`.
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "robustness.json", "robustness.md", "severity_curves.png"

Batch = tuple[list[Tensor], list[MultiTaskDataSample]]
SequenceHook = Callable[[Sequence[MultiTaskDataSample]], None]


# ---- argument parsing ------------------------------------------------------------------------
def parse_corruptions(spec: str | Sequence[str]) -> list[str]:
    """``'all'`` or comma-separated family names -> the list of families (suite order).

    Raises:
        ValueError: an unknown or repeated name, or an empty list.
    """
    if isinstance(spec, str):
        if spec.strip() == "all":
            return list(CORRUPTIONS)
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; known: all, {', '.join(CORRUPTIONS)}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"corruptions must be a non-empty list of distinct names, got {spec!r}")
    return names


def parse_severities(spec: str | Sequence[int]) -> list[int]:
    """``'1,2,3'`` -> ``[1, 2, 3]`` (sorted).

    Raises:
        ValueError: a value that is not an integer in 1..5, a repeat, or an empty list.
    """
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            value = None
        if (
            value is None
            or isinstance(item, bool)
            or str(value) != str(item).strip()
            or not 1 <= value <= NUM_SEVERITIES
        ):
            raise ValueError(f"severities must be integers in 1..{NUM_SEVERITIES}, got {item!r} in {spec!r}")
        out.append(value)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"severities must be a non-empty list of distinct values, got {spec!r}")
    return sorted(out)


def parse_eps(spec: str | Sequence[float]) -> list[tuple[str, float]]:
    """``'2/255,4/255'`` (or decimals) -> ``[('2/255', 0.00784...), ...]``.

    Raises:
        ValueError: a value that is not a number or fraction in (0, 1].
    """
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            value = float(Fraction(str(item)))
        except (ValueError, ZeroDivisionError):
            value = math.nan
        if not 0 < value <= 1:
            raise ValueError(
                f"eps must be numbers in (0, 1] in [0, 1] pixel units (e.g. 4/255), got {item!r}"
            )
        out.append((str(item), value))
    if not out or len({v for _, v in out}) != len(out):
        raise ValueError(f"eps must be a non-empty list of distinct values, got {spec!r}")
    return out


# ---- corrupting a collated batch ----------------------------------------------------------------
def corruption_ids(data_samples: Sequence[MultiTaskDataSample]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(video_ids, frame_ids)`` streams of a batch, as ``CorruptFrames`` keys them.

    Frames of a video (``video_id >= 0``) use ``(video_id, frame_id)``; a still
    image uses ``(still_image_video_id(img_id), 0)``.
    """
    vids, fids = [], []
    for sample in data_samples:
        meta = sample.metainfo
        vid = int(meta.get("video_id", -1))
        if vid >= 0:
            vids.append(vid)
            fids.append(int(meta.get("frame_id", 0)))
        else:
            vids.append(still_image_video_id(meta.get("img_id", 0)))
            fids.append(0)
    return np.asarray(vids, np.int64), np.asarray(fids, np.int64)


class WorkerError(RuntimeError):
    """A forked robustness worker failed or died; the message carries its traceback."""


class _QueueBar:
    """The two progress-bar calls :meth:`RobustnessStudy._run` makes, sent to the parent."""

    def __init__(self, messages: Any) -> None:
        self.messages = messages

    def update(self, n: int = 1) -> None:
        self.messages.put(("step", n))

    def set_postfix_str(self, text: str) -> None:
        self.messages.put(("postfix", text))


def check_workers(workers: Any, device: torch.device | str) -> int:
    """``workers`` as a positive int; more than one needs the CPU and the fork start method."""
    import multiprocessing as mp

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if workers > 1:
        if torch.device(device).type != "cpu":
            raise ValueError(f"workers > 1 runs forked CPU processes; got device {str(device)!r}")
        if "fork" not in mp.get_all_start_methods():
            raise ValueError("workers > 1 needs the 'fork' start method, which this platform lacks")
    return workers


def corrupt_batch(
    inputs: Sequence[Tensor],
    data_samples: Sequence[MultiTaskDataSample],
    name: str,
    severity: int,
    seed: int = 0,
) -> list[Tensor]:
    """Corrupt a collated batch (``pseudo_collate``'s list of uint8 ``(3, H, W)``).

    Images of one size are corrupted together with one vectorised call.

    Args:
        inputs: uint8 ``(3, H, W)`` images (any device).
        data_samples: their samples (``video_id``, ``frame_id``, ``img_id`` metainfo).
        name: corruption family.
        severity: 1..5.
        seed: base seed of the corruption streams.

    Returns:
        The corrupted images, same order, shapes and device.
    """
    if len(inputs) != len(data_samples):
        raise ValueError(f"got {len(inputs)} images but {len(data_samples)} data samples")
    vids, fids = corruption_ids(data_samples)
    out: list[Tensor | None] = [None] * len(inputs)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(inputs):
        by_shape.setdefault(tuple(img.shape), []).append(i)
    for idx in by_shape.values():
        batch = torch.stack([inputs[i] for i in idx])
        shifted = corrupt(batch, name, severity, seed, video_ids=vids[idx], frame_ids=fids[idx])
        for j, i in enumerate(idx):
            out[i] = shifted[j]
    return out  # type: ignore[return-value]


# ---- mCE arithmetic --------------------------------------------------------------------------------
def mean_corruption_error(
    errors: Mapping[str, Mapping[int, float]],
    reference: Mapping[str, Mapping[int, float]] | None = None,
) -> tuple[dict[str, float | None], float | None]:
    """Corruption errors and their mean (Hendrycks & Dietterich 2019, Sec. 3).

    Args:
        errors: ``{corruption: {severity: error}}`` of the model.
        reference: the same for the reference model (must hold every
            corruption and severity of ``errors``); None for unnormalised errors.

    Returns:
        ``({corruption: CE_c}, mCE)``. With a reference ``CE_c = sum_s E_{s,c} /
        sum_s E^ref_{s,c}`` (None when the reference's sum is 0); without one
        ``CE_c = mean_s E_{s,c}``. ``mCE`` is the mean of the defined ``CE_c``.
    """
    ce: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        total = sum(per_sev.values())
        if reference is None:
            ce[name] = total / len(per_sev)
            continue
        ref_total = sum(reference[name][s] for s in per_sev)
        ce[name] = total / ref_total if ref_total > 0 else None
    defined = [v for v in ce.values() if v is not None]
    return ce, (sum(defined) / len(defined) if defined else None)


def relative_corruption_error(
    errors: Mapping[str, Mapping[int, float]],
    clean_error: float,
    reference: Mapping[str, Mapping[int, float]],
    reference_clean_error: float,
) -> tuple[dict[str, float | None], float | None]:
    """Relative corruption errors (Hendrycks & Dietterich 2019, Sec. 3).

    ``rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``
    (None when the reference's degradation is not positive); returns
    ``({corruption: rCE_c}, mean of the defined rCE_c)``.
    """
    rce: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        num = sum(e - clean_error for e in per_sev.values())
        den = sum(reference[name][s] - reference_clean_error for s in per_sev)
        rce[name] = num / den if den > 0 else None
    defined = [v for v in rce.values() if v is not None]
    return rce, (sum(defined) / len(defined) if defined else None)


def _errors(results: Mapping[str, Any], metric: str) -> dict[str, dict[int, float]]:
    return {
        name: {int(s): 1.0 - float(m[metric]) for s, m in per_sev.items()}
        for name, per_sev in results["corruptions"].items()
    }


def load_reference(
    path: str | os.PathLike,
    corruptions: Iterable[str],
    severities: Iterable[int],
    metrics: Iterable[str] = (),
) -> dict[str, Any]:
    """Read a reference model's results JSON (written by this study) and check that it
    holds every (corruption, severity) condition and every headline metric asked for.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a results JSON, or conditions/metrics missing (named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference JSON not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            ref = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"reference {path} is not valid JSON: {e}") from e
    if not isinstance(ref, dict) or not isinstance(ref.get("corruptions"), dict) or "clean" not in ref:
        raise ValueError(
            f"reference {path} is not a robustness results JSON (needs 'clean' and 'corruptions')"
        )
    metrics = list(metrics)
    missing = [f"clean:{m}" for m in metrics if m not in ref["clean"]]
    for name in corruptions:
        for s in severities:
            cond = ref["corruptions"].get(name, {}).get(str(s))
            if cond is None:
                missing.append(f"{name}@{s}")
            else:
                missing += [f"{name}@{s}:{m}" for m in metrics if m not in cond]
    if missing:
        raise ValueError(
            f"reference {path} lacks {len(missing)} of the evaluated conditions/metrics, e.g. {missing[:5]}; "
            "run the reference with the same --corruptions and --severities"
        )
    return ref


def summarise(
    results: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
    unseen: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per headline metric: clean value, mean corrupted value, relative robustness, CE and mCE.

    Args:
        results: ``{'metrics': [...], 'clean': {...}, 'corruptions': {name: {'1': {...}}}}``.
        reference: a reference model's results (same layout) for normalised
            (r)CE; None for unnormalised mean errors.
        unseen: corruption families not used in training (e.g. held out of
            AugMix); adds ``mCE_unseen`` / ``mCE_seen`` over those subsets.

    Returns:
        ``{metric: {'clean', 'mean_corrupted', 'relative_robustness', 'CE',
        'mCE', 'normalised', ['relative_CE', 'relative_mCE'], ['mCE_unseen',
        'mCE_seen']}}``.
    """
    unseen = None if unseen is None else set(unseen)
    out: dict[str, dict[str, Any]] = {}
    for metric in results["metrics"]:
        clean = float(results["clean"][metric])
        values = [float(m[metric]) for per_sev in results["corruptions"].values() for m in per_sev.values()]
        errors = _errors(results, metric)
        ref_errors = None if reference is None else _errors(reference, metric)
        ce, mce = mean_corruption_error(errors, ref_errors)
        entry: dict[str, Any] = {
            "clean": clean,
            "mean_corrupted": sum(values) / len(values) if values else None,
            "relative_robustness": clean - sum(values) / len(values) if values else None,
            "CE": ce,
            "mCE": mce,
            "normalised": reference is not None,
        }
        if reference is not None:
            rce, rmce = relative_corruption_error(
                errors, 1.0 - clean, ref_errors, 1.0 - float(reference["clean"][metric])
            )
            entry["relative_CE"], entry["relative_mCE"] = rce, rmce
        if unseen is not None:
            for key, keep in (("mCE_unseen", True), ("mCE_seen", False)):
                subset = [v for n, v in ce.items() if (n in unseen) == keep and v is not None]
                entry[key] = sum(subset) / len(subset) if subset else None
        out[metric] = entry
    return out


# ---- the study -------------------------------------------------------------------------------------
def collect_batches(
    dataloader: Iterable[dict], max_samples: int | None = None, whole_videos: bool = False
) -> list[Batch]:
    """Load the test batches once (``pseudo_collate`` dicts) and keep them in memory.

    With ``max_samples``, keep that many samples spread evenly over the split
    (every k-th), so a quick run still sees every video and domain. With
    ``whole_videos`` (tracking needs every frame of a video), keep whole
    videos instead, spread evenly over the split, as many as fit in
    ``max_samples`` frames (at least one).
    """
    batches = [(list(b["inputs"]), list(b["data_samples"])) for b in dataloader]
    if max_samples is None:
        return batches
    samples = [s for _, ss in batches for s in ss]
    total = len(samples)
    if whole_videos:
        videos = [int(s.metainfo.get("video_id", -1)) for s in samples]
        order = list(dict.fromkeys(videos))  # videos in split order
        sizes = Counter(videos)
        wanted = max(1, min(len(order), int(max_samples // (total / len(order)))))
        chosen: set[int] = set()
        budget = max_samples
        for k in np.unique(np.linspace(0, len(order) - 1, wanted).round().astype(int)):
            if not chosen or sizes[order[k]] <= budget:
                chosen.add(order[k])
                budget -= sizes[order[k]]
        keep = {i for i, v in enumerate(videos) if v in chosen}
    else:
        keep = set(np.unique(np.linspace(0, total - 1, min(max_samples, total)).round().astype(int)).tolist())
    out, i = [], 0
    for inputs, samples in batches:
        sel = [j for j in range(len(samples)) if i + j in keep]
        i += len(samples)
        if sel:
            out.append(([inputs[j] for j in sel], [samples[j] for j in sel]))
    return out


@dataclass
class RobustnessStudy:
    """Evaluate one model on cached test batches under corruptions and attacks.

    Args:
        model: a ``MultiTaskPerceptor`` (weights loaded; evaluated in eval mode).
        batches: the test batches (:func:`collect_batches`).
        evaluator: mmengine ``Evaluator`` of the config's test metrics (its
            ``dataset_meta`` set to the dataset's metainfo).
        seed: base seed of the corruption streams and the PGD random starts.
        sequence_hook_factory: for tracking metrics: returns a fresh callback
            per condition, called with each predicted batch in order (see the
            module docstring).
        progress: show a tqdm progress bar.
        workers: corruption conditions run in this many forked processes, each
            with its share of torch's threads (CPU only). The tracker, the
            metrics and the decoding are single-threaded Python; two processes
            on two cores keep both busy (see :meth:`run_corruptions`).
    """

    model: nn.Module
    batches: list[Batch]
    evaluator: Evaluator
    seed: int = 0
    sequence_hook_factory: Callable[[], SequenceHook] | None = None
    progress: bool = True
    workers: int = 1

    def __post_init__(self) -> None:
        check_workers(self.workers, self._device())

    @property
    def num_samples(self) -> int:
        return sum(len(s) for _, s in self.batches)

    def _run(
        self, name: str, transform: Callable[[int, list[Tensor], list[MultiTaskDataSample]], Any], bar: tqdm
    ) -> dict[str, float]:
        """Predict every batch (inputs from ``transform``) and evaluate all metrics."""
        self.model.eval()
        hook = self.sequence_hook_factory() if self.sequence_hook_factory is not None else None
        bar.set_postfix_str(name)
        for b, (inputs, samples) in enumerate(self.batches):
            samples = [s.clone() for s in samples]  # predictions never leak between conditions
            batch_inputs = transform(b, inputs, samples)
            with torch.no_grad():
                outputs = self._predict(batch_inputs, samples)
            if hook is not None:
                hook(outputs)
            self.evaluator.process(data_samples=outputs, data_batch=dict(inputs=batch_inputs))
            bar.update(1)
        return {k: float(v) for k, v in self.evaluator.evaluate(self.num_samples).items()}

    def _predict(self, inputs: list[Tensor] | Tensor, samples: list[MultiTaskDataSample]) -> list:
        """``model.test_step``; with a plain ``ImgDataPreprocessor`` on the CPU, only the
        images go through it (its ``cast_data`` would rebuild every sample to move it
        nowhere: ~2 s per pass over a 2880-frame split)."""
        pre = getattr(self.model, "data_preprocessor", None)
        if self._device().type == "cpu" and type(pre) is ImgDataPreprocessor:
            data = pre(dict(inputs=inputs), False)
            return self.model(data["inputs"], samples, mode="predict")
        return self.model.test_step(dict(inputs=inputs, data_samples=samples))

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def run_corruptions(self, corruptions: Sequence[str], severities: Sequence[int]) -> dict[str, Any]:
        """Clean and per (corruption, severity) metrics, with timing.

        With ``workers > 1`` forked worker processes (which share the cached
        batches copy-on-write) take the conditions one at a time from a shared
        queue, each as soon as it is free. A condition's metrics equal one
        process's at the same number of torch threads; at another thread count
        the convs round differently (on the default split: mCE within 3e-5, a
        condition's MOTA within half a point).

        Returns:
            ``{'clean': {...}, 'corruptions': {name: {str(severity): {...}}},
            'timing': {'clean_s', 'corruptions_s', 'per_condition_s', 'wall_s',
            'workers'}}``; per-condition times are each condition's own
            (in its worker), ``wall_s`` the whole run's.
        """
        conditions: list[tuple[str, str | None, int | None]] = [("clean", None, None)]
        conditions += [(f"{name}@{sev}", name, sev) for name in corruptions for sev in severities]
        bar = tqdm(
            total=len(self.batches) * len(conditions),
            desc="robustness",
            unit="batch",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()
        try:
            if self.workers > 1 and len(conditions) > 1:
                done = self._run_in_workers(conditions, bar)
            else:
                done = {c[0]: self._run_condition(*c, bar) for c in conditions}
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        results: dict[str, dict[str, dict[str, float]]] = {}
        for key, name, sev in conditions[1:]:
            results.setdefault(name, {})[str(sev)] = done[key][0]
        per_condition = {key: done[key][1] for key, _, _ in conditions}
        return dict(
            clean=done["clean"][0],
            corruptions=results,
            timing=dict(
                clean_s=per_condition["clean"],
                corruptions_s=sum(v for k, v in per_condition.items() if k != "clean"),
                per_condition_s=per_condition,
                wall_s=wall,
                workers=min(self.workers, len(conditions)),
            ),
        )

    def _run_condition(
        self, key: str, name: str | None, severity: int | None, bar: Any
    ) -> tuple[dict[str, float], float]:
        """One condition's metrics (clean when ``name`` is None) and its seconds."""
        t = time.perf_counter()
        if name is None:
            metrics = self._run(key, lambda b, x, s: x, bar)
        else:
            device = self._device()

            def shift(b: int, x: list[Tensor], s: list) -> list[Tensor]:
                return corrupt_batch([i.to(device) for i in x], s, name, severity, self.seed)

            metrics = self._run(key, shift, bar)
        return metrics, time.perf_counter() - t

    def _run_in_workers(
        self, conditions: list[tuple[str, str | None, int | None]], bar: Any
    ) -> dict[str, tuple[dict[str, float], float]]:
        """Run the conditions in forked processes; progress and results come back on a queue."""
        import multiprocessing as mp
        import queue as queue_mod

        ctx = mp.get_context("fork")
        messages, tasks = ctx.Queue(), ctx.Queue()
        workers = min(self.workers, len(conditions))
        threads = max(1, torch.get_num_threads() // workers)
        # A shared task queue: each worker takes the next condition when it is free, so a slow
        # family (shot noise, defocus blur) does not leave one worker running alone at the end.
        for condition in conditions:
            tasks.put(condition)
        for _ in range(workers):
            tasks.put(None)
        procs = [
            ctx.Process(target=self._worker, args=(tasks, messages, threads), daemon=True)
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        done: dict[str, tuple[dict[str, float], float]] = {}
        finished, failure = 0, None
        try:
            while finished < workers:
                try:
                    kind, *payload = messages.get(timeout=1.0)
                except queue_mod.Empty:
                    dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                    if dead and messages.empty():
                        raise WorkerError(
                            f"a robustness worker died (exit code {dead[0].exitcode}; out of memory?)"
                        ) from None
                    continue
                if kind == "step":
                    bar.update(payload[0])
                elif kind == "postfix":
                    bar.set_postfix_str(payload[0])
                elif kind == "result":
                    done[payload[0]] = (payload[1], payload[2])
                elif kind == "error":
                    failure = payload[0]
                    break  # the other workers' conditions are of no use now
                elif kind == "done":
                    finished += 1
        finally:
            for proc in procs:  # all said "done" unless something failed: then stop the rest
                proc.join(timeout=5 if finished == workers else 0)
                if proc.is_alive():
                    proc.terminate()
                    proc.join()
        if failure is not None:
            raise WorkerError(f"a robustness worker failed: {failure}")
        return done

    def _worker(self, tasks: Any, messages: Any, threads: int) -> None:
        """Body of one forked worker: run conditions from ``tasks`` until its ``None``, report over ``messages``."""
        import traceback

        try:
            torch.set_num_threads(threads)
            bar = _QueueBar(messages)
            for condition in iter(tasks.get, None):
                metrics, seconds = self._run_condition(*condition, bar)
                messages.put(("result", condition[0], metrics, seconds))
        except BaseException as e:  # reported to the parent, which raises
            messages.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
        finally:
            messages.put(("done",))

    def run_attacks(
        self,
        eps: Sequence[tuple[str, float]],
        methods: Sequence[str] = ATTACK_METHODS,
        targets: Sequence[str] | None = None,
        pgd_steps: int = DEFAULT_PGD_STEPS,
    ) -> dict[str, Any]:
        """Every task's metric under FGSM / PGD against each head and the trunk.

        The adversarial images are fed to the model as float pixels (no
        re-quantisation to uint8), so the L-infinity budget is exact.

        Returns:
            ``{method: {eps_label: {target: {metric: value}}}, 'eps': {label: value},
            'pgd_steps': n, 'targets': [...]}`` (clean metrics are the corruption run's).
        """
        unknown = [m for m in methods if m not in ATTACK_METHODS]
        if unknown:
            raise ValueError(f"unknown attack method(s) {unknown}; known: {list(ATTACK_METHODS)}")
        targets = [*self.model.heads, TRUNK_TARGET] if targets is None else list(targets)
        device = self._device()
        steps = len(self.batches) * len(eps) * len(methods) * len(targets)
        bar = tqdm(total=steps, desc="attacks", unit="batch", disable=not self.progress, dynamic_ncols=True)
        out: dict[str, Any] = {m: {} for m in methods}
        try:
            for method in methods:
                for label, value in eps:
                    for target in targets:

                        def attack(
                            b: int,
                            x: list[Tensor],
                            s: list,
                            method: str = method,
                            value: float = value,
                            target: str = target,
                        ) -> Tensor:
                            if len({tuple(i.shape) for i in x}) != 1:
                                raise ValueError("attack mode needs the images of a batch to share one size")
                            x01 = pixels_to_unit(torch.stack(x).to(device))
                            if method == "fgsm" and target == TRUNK_TARGET:
                                # The feature distance has zero gradient at the clean image, so the trunk
                                # FGSM starts at a random point of the ball (R+FGSM, Tramer et al., ICLR 2018).
                                adv = pgd_attack(
                                    self.model,
                                    x01,
                                    s,
                                    target=target,
                                    eps=value,
                                    alpha=value,
                                    steps=1,
                                    seed=self.seed + b,
                                )
                            elif method == "fgsm":
                                adv = fgsm_attack(self.model, x01, s, target=target, eps=value)
                            else:
                                adv = pgd_attack(
                                    self.model,
                                    x01,
                                    s,
                                    target=target,
                                    eps=value,
                                    steps=pgd_steps,
                                    seed=self.seed + b,
                                )
                            return adv * 255.0

                        out[method].setdefault(label, {})[target] = self._run(
                            f"{method} {label} -> {target}", attack, bar
                        )
        finally:
            bar.close()
        out.update(eps={label: value for label, value in eps}, pgd_steps=pgd_steps, targets=targets)
        return out


def _headline_metrics(clean: Mapping[str, float]) -> list[str]:
    return [m for metrics in TASK_METRICS.values() for m in metrics if m in clean]


def build_study(
    cfg: Config,
    checkpoint: str | os.PathLike,
    max_samples: int | None = None,
    device: str | None = None,
    seed: int = 0,
    sequence_hook_factory: Callable[[], SequenceHook] | None = None,
    progress: bool = True,
    track: bool | str = False,
    workers: int = 1,
    fold_bn: bool = True,
) -> tuple[RobustnessStudy, list[str]]:
    """Build the model, load the checkpoint, load the test split once, build the evaluator.

    Args:
        cfg: a loaded config (``test_dataloader``, ``test_evaluator``, ``model``).
        checkpoint: mmengine checkpoint of that model.
        max_samples: evaluate at most this many test samples (spread evenly).
        device: ``'cpu'``, ``'cuda'``, ...; default CUDA when available.
        seed: corruption / attack seed.
        sequence_hook_factory: tracker hook (enables tracking metrics).
        progress: tqdm progress bars.
        track: ``True`` (or ``'embeddings'``): track every video with the
            config's ``tracker`` (:class:`~.tracking.TrackingHook`) and add
            ``MOTMetric`` when the config's test metrics lack it; ``'iou'``:
            the same with IoU-only association. ``max_samples`` then keeps
            whole videos.
        workers: run the corruption conditions in this many forked CPU
            processes (see :class:`RobustnessStudy`).
        fold_bn: fold the BatchNorms into the convs
            (:func:`~mtmnv3.core.layers.fold_batchnorm`; ~30% less model time on
            the CPU; outputs equal up to float rounding, which can move a
            metric by a detection or two). ``False`` evaluates the model as
            ``tools/test.py`` does, to the last digit.

    The shift suite reports MOTA and IDF1 for tracking; a ``MOTMetric``
    leaves HOTA out unless its config asks for it with ``hota=True``.

    Returns:
        The study and the names of the metric types left out (tracking
        metrics without a hook).

    Raises:
        FileNotFoundError: missing checkpoint.
        ValueError / KeyError: bad config, checkpoint of another model, bad max_samples.
    """
    from mmengine.runner import Runner

    from mtmnv3.core.registry import MODELS
    from mtmnv3.engine import allow_mmengine_checkpoint_globals, load_model_checkpoint, validate_config

    if max_samples is not None and (
        isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}")
    if track not in TRACK_MODES:
        raise ValueError(f"track must be one of {TRACK_MODES}, got {track!r}")
    if track and sequence_hook_factory is not None:
        raise ValueError("give either track or sequence_hook_factory, not both")
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    check_workers(workers, device)  # before the split loads, not after
    for key in ("test_dataloader", "test_evaluator", "model"):
        if not cfg.get(key):
            raise ValueError(f"the config has no {key}")
    validate_config(cfg)
    allow_mmengine_checkpoint_globals()
    model = MODELS.build(cfg.model)
    load_model_checkpoint(model, checkpoint)
    model.to(device).eval()
    if fold_bn:
        from mtmnv3.core.layers import fold_batchnorm

        fold_batchnorm(model)

    metric_cfgs = list(
        cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
    )
    if track:
        from mtmnv3.studies.robustness.tracking import TrackingHook

        tracker_cfg = dict(cfg.get("tracker") or {})
        use_embeddings = track != "iou" and "emb" in getattr(model, "heads", {})
        TrackingHook(tracker_cfg, use_embeddings)  # a bad tracker config fails before the data loads

        def sequence_hook_factory() -> SequenceHook:
            return TrackingHook(tracker_cfg, use_embeddings)

        if not any(m.get("type") in TRACKING_METRIC_TYPES for m in metric_cfgs):
            metric_cfgs.append(dict(type="MOTMetric"))
    kept, skipped = [], []
    for m in metric_cfgs:
        if m.get("type") in TRACKING_METRIC_TYPES and sequence_hook_factory is None:
            skipped.append(m["type"])
        elif m.get("type") == "MOTMetric":
            kept.append({"hota": False, **m})
        else:
            kept.append(m)
    if not kept:
        raise ValueError(f"no metric to evaluate: the config's test metrics {skipped} need a tracker hook")
    evaluator = Evaluator(kept)
    # Load in this process: the study keeps every batch in memory, and each
    # tensor a worker process hands over holds a file descriptor while it lives
    # (a 2880-frame split ran out of descriptors).
    loader_cfg = {**cfg.test_dataloader, "num_workers": 0, "persistent_workers": False}
    loader = Runner.build_dataloader(loader_cfg)
    evaluator.dataset_meta = getattr(loader.dataset, "metainfo", None)
    batches = collect_batches(loader, max_samples, whole_videos=sequence_hook_factory is not None)
    study = RobustnessStudy(model, batches, evaluator, seed, sequence_hook_factory, progress, workers)
    return study, skipped


def run_study(
    study: RobustnessStudy,
    corruptions: Sequence[str],
    severities: Sequence[int],
    reference: str | os.PathLike | None = None,
    attack_eps: Sequence[tuple[str, float]] | None = None,
    pgd_steps: int = DEFAULT_PGD_STEPS,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the corruption suite (and attacks), then summarise; returns the results dict."""
    if reference is not None:  # fail before the long run, not after it
        load_reference(reference, corruptions, severities)
    t0 = time.perf_counter()
    run = study.run_corruptions(corruptions, severities)
    results: dict[str, Any] = {
        "version": RESULTS_VERSION,
        **dict(meta or {}),
        "num_samples": study.num_samples,
        "seed": study.seed,
        "severities": list(severities),
        "metrics": _headline_metrics(run["clean"]),
        "clean": run["clean"],
        "corruptions": run["corruptions"],
        "reference": None if reference is None else str(reference),
    }
    if not results["metrics"]:
        raise ValueError(f"none of the headline metrics {TASK_METRICS} among {sorted(run['clean'])}")
    ref = (
        None if reference is None else load_reference(reference, corruptions, severities, results["metrics"])
    )
    results["relative_robustness"] = {
        metric: {
            name: {s: results["clean"][metric] - m[metric] for s, m in per_sev.items()}
            for name, per_sev in results["corruptions"].items()
        }
        for metric in results["metrics"]
    }
    training_ops = getattr(study.model, "augmix_ops", None)
    unseen = None
    if training_ops is not None:
        results["augmix_ops"] = list(training_ops)
        unseen = [n for n in corruptions if n not in training_ops]
    results["summary"] = summarise(results, ref, unseen)
    timing = dict(run["timing"])
    if attack_eps:
        t = time.perf_counter()
        results["attacks"] = study.run_attacks(attack_eps, pgd_steps=pgd_steps)
        timing["attacks_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    results["timing"] = timing
    return results


# ---- reporting -------------------------------------------------------------------------------------
def _fmt(value: Any, precision: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{precision}f}" if isinstance(value, (int, float)) else str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def format_markdown(results: Mapping[str, Any]) -> str:
    """Markdown report: summary, per-metric corruption x severity tables, attack transfer tables."""
    summary = results["summary"]
    norm = any(v["normalised"] for v in summary.values())
    lines = [
        "# Robustness study",
        "",
        f"{results.get('config', '')} / {results.get('checkpoint', '')}: {results['num_samples']} test samples, "
        f"seed {results['seed']}. Error = 1 - metric; "
        + (
            f"CE normalised by the reference {results['reference']} (Hendrycks & Dietterich 2019)."
            if norm
            else "no reference, so CE is the unnormalised mean error over severities."
        ),
        "",
        "## Summary",
        "",
    ]
    extra = [k for k in ("relative_mCE", "mCE_seen", "mCE_unseen") if any(k in v for v in summary.values())]
    lines += _table(
        ["metric", "clean", "mean corrupted", "relative robustness (clean - corrupted)", "mCE", *extra],
        [
            [
                m,
                v["clean"],
                v["mean_corrupted"],
                v["relative_robustness"],
                v["mCE"],
                *(v.get(k) for k in extra),
            ]
            for m, v in summary.items()
        ],
    )
    sevs = [str(s) for s in results["severities"]]
    for metric in results["metrics"]:
        lines += ["", f"## {metric} per corruption and severity", ""]
        rows: list[list[Any]] = [
            ["clean", *[results["clean"][metric]] * len(sevs), results["clean"][metric], "-"]
        ]
        for name, per_sev in results["corruptions"].items():
            vals = [per_sev[s][metric] for s in sevs]
            rows.append([name, *vals, sum(vals) / len(vals), summary[metric]["CE"][name]])
        lines += _table(["corruption", *[f"s{s}" for s in sevs], "mean", "CE"], rows)
    attacks = results.get("attacks")
    if attacks:
        metrics = [m for m in results["metrics"]]
        lines += ["", "## Adversarial transfer (rows: attack target, columns: task metric under attack)", ""]
        for method in ATTACK_METHODS:
            for label in attacks.get(method, {}):
                steps = f", {attacks['pgd_steps']} steps" if method == "pgd" else ""
                lines += [f"### {method.upper()} eps={label}{steps}", ""]
                rows = [["(clean)", *[results["clean"][m] for m in metrics]]]
                rows += [[t, *[r[m] for m in metrics]] for t, r in attacks[method][label].items()]
                lines += [*_table(["target", *metrics], rows), ""]
    timing = results.get("timing", {})
    if timing:
        lines += [
            "",
            f"Time: {_fmt(timing.get('total_s'), 1)} s in total "
            f"(clean {_fmt(timing.get('clean_s'), 1)} s, corruptions {_fmt(timing.get('corruptions_s'), 1)} s"
            + (f", attacks {_fmt(timing['attacks_s'], 1)} s" if "attacks_s" in timing else "")
            + (
                f"; the conditions ran in {timing['workers']} processes, {_fmt(timing['wall_s'], 1)} s"
                " of wall time"
                if timing.get("workers", 1) > 1
                else ""
            )
            + ").",
        ]
    return "\n".join(lines) + "\n"


def plot_severity_curves(results: Mapping[str, Any]) -> bytes:
    """PNG of metric vs severity (0 = clean) per corruption, one panel per headline
    task metric (matplotlib's Agg canvas; the global backend is untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = results["metrics"]
    sevs = [0, *results["severities"]]
    fig = Figure(figsize=(4.2 * len(metrics) + 2.0, 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        clean = results["clean"][metric]
        for name, per_sev in results["corruptions"].items():
            ax.plot(sevs, [clean, *[per_sev[str(s)][metric] for s in sevs[1:]]], marker="o", ms=3, label=name)
        task, _, short = metric.partition("/")
        ax.set_title(f"{task}: {short}")
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(sevs)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_outputs(results: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``robustness.json``, ``robustness.md`` and ``severity_curves.png`` atomically."""
    out = Path(out_dir)
    paths = {"json": out / JSON_NAME, "markdown": out / MARKDOWN_NAME, "plot": out / PLOT_NAME}
    atomic_write_json(paths["json"], results)
    with atomic_open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(format_markdown(results))
    png = plot_severity_curves(results)
    with atomic_open(paths["plot"], "wb") as f:
        f.write(png)
    return paths
