"""Building and running the robustness study from a config and a checkpoint.

:func:`build_study` builds the model with :func:`mtmnv3.apis.init_model`,
loads the config's test split once and builds its evaluator;
``build_study(track=True)`` (``mtmnv3 robustness --track``) plugs in the
config's tracker (:class:`~.tracking.TrackingHook`) and adds ``MOTMetric``, so
MOTA and IDF1 join the tables. :func:`run_study` runs the corruption suite
(and the attacks) and summarises (:mod:`.spec`).

Speed: ``build_study`` folds the model's BatchNorms into its convs
(``fold_bn=False`` keeps them), the suite's ``MOTMetric`` skips HOTA, and
``workers > 1`` runs the conditions in forked CPU processes: the model, HOTA's
threshold sweep and the single-threaded tracker dominate a run's time
(``benchmarks/fold_bn_speed.py`` and ``benchmarks/mot_metrics_speed.py``
measure the first two; each run records its own times under ``timing``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator

from mtmnv3.apis.init import init_model
from mtmnv3.heads.base import EMBEDDING, heads_by_task
from mtmnv3.studies.robustness.spec import (
    DEFAULT_PGD_STEPS,
    RESULTS_VERSION,
    TASK_METRICS,
    TRACK_MODES,
    TRACKING_METRIC_TYPES,
    headline_metrics,
    load_reference,
    summarise,
)
from mtmnv3.studies.robustness.study import RobustnessStudy, SequenceHook, check_workers, collect_batches

__all__ = ["build_study", "run_study"]


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
    """Build the model (:func:`mtmnv3.apis.init_model`), load the test split once, build the evaluator.

    Args:
        cfg: a config loaded from its file (``test_dataloader``, ``test_evaluator``,
            ``model``), options merged; the model is built from its file with
            its (merged) ``model`` entry.
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
            (:func:`~mtmnv3.core.layers.fold_batchnorm`): one conv instead of a
            conv and a normalisation per layer on the CPU (``benchmarks/fold_bn_speed.py``
            measures the gain); outputs equal up to float rounding, which can move
            a metric by a detection or two. ``False`` evaluates the model as
            ``mtmnv3 test`` does, to the last digit.

    The shift suite reports MOTA and IDF1 for tracking; a ``MOTMetric``
    leaves HOTA out unless its config asks for it with ``hota=True``.

    Returns:
        The study and the names of the metric types left out (tracking
        metrics without a hook).

    Raises:
        FileNotFoundError: missing checkpoint.
        ValueError / KeyError: bad config (or one not loaded from a file),
            checkpoint of another model, bad max_samples.
    """
    from mmengine.runner import Runner

    from mtmnv3.core.layers import fold_batchnorm
    from mtmnv3.engine import validate_config

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
    if not cfg.filename or not os.path.isfile(cfg.filename):
        raise ValueError(f"the config must be loaded from a file, got one from {cfg.filename!r}")
    validate_config(cfg)
    # The file's model with the merged ``model`` entry on top: the model the caller's options describe.
    model = init_model(cfg.filename, checkpoint, {"model": cfg.model.to_dict()}, device)
    if fold_bn:
        fold_batchnorm(model)

    metric_cfgs = list(
        cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
    )
    if track:
        from mtmnv3.studies.robustness.tracking import TrackingHook

        tracker_cfg = dict(cfg.get("tracker") or {})
        use_embeddings = track != "iou" and EMBEDDING in heads_by_task(model.heads)
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
    # (a long split runs out of descriptors).
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
        "metrics": headline_metrics(run["clean"]),
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
