"""Robustness study: the shift suite (corruptions), adversarial attacks, robust training.

* :mod:`mtmnv3.data.corruptions`: eleven corruption families x five severities
  (Hendrycks & Dietterich 2019), consistent across the frames of a video;
* :mod:`mtmnv3.data.corrupt_transforms`: ``CorruptFrames``, the pipeline transform (registered
  in ``TRANSFORMS``);
* :mod:`.attacks`: FGSM / PGD in pixel space against one head or the trunk;
* :mod:`mtmnv3.models.dro`: group DRO weights (Sagawa et al. 2020) and AugMix with its
  Jensen-Shannon consistency loss (Hendrycks et al. 2020);
* :mod:`.spec`: the study's arguments, headline metrics and mCE arithmetic;
* :mod:`.study`: :class:`RobustnessStudy`, every task's metric clean, per
  corruption x severity and under attacks (cross-task transfer);
* :mod:`.runner`: :func:`build_study` (model via :func:`mtmnv3.apis.init_model`,
  test split, evaluator) and :func:`run_study`; ``mtmnv3 robustness`` is their command line;
* :mod:`.report`: markdown tables, severity curves, the output files;
* :mod:`.tracking`: the tracker hook that adds MOT metrics;
* :mod:`mtmnv3.models.robust`: ``RobustMultiTaskPerceptor`` (registered in
  ``MODELS``), training with AugMix consistency and/or group DRO.
"""

from mtmnv3.studies.robustness.attacks import (
    TRUNK_TARGET,
    attack_loss,
    fgsm_attack,
    pgd_attack,
    pixels_to_unit,
    trunk_feature_distance,
    unit_to_pixels,
)
from mtmnv3.studies.robustness.report import (
    JSON_NAME,
    MARKDOWN_NAME,
    PLOT_NAME,
    format_markdown,
    plot_severity_curves,
    write_outputs,
)
from mtmnv3.studies.robustness.runner import build_study, run_study
from mtmnv3.studies.robustness.spec import (
    ATTACK_METHODS,
    DEFAULT_PGD_STEPS,
    RESULTS_VERSION,
    TASK_METRICS,
    TRACK_MODES,
    TRACKING_METRIC_TYPES,
    headline_metrics,
    load_reference,
    mean_corruption_error,
    parse_corruptions,
    parse_eps,
    parse_severities,
    relative_corruption_error,
    summarise,
)
from mtmnv3.studies.robustness.study import (
    RobustnessStudy,
    WorkerError,
    check_workers,
    collect_batches,
    corrupt_batch,
    corruption_ids,
)
from mtmnv3.studies.robustness.tracking import TrackingHook

__all__ = [
    "ATTACK_METHODS",
    "DEFAULT_PGD_STEPS",
    "JSON_NAME",
    "MARKDOWN_NAME",
    "PLOT_NAME",
    "RESULTS_VERSION",
    "TASK_METRICS",
    "TRACKING_METRIC_TYPES",
    "TRACK_MODES",
    "TRUNK_TARGET",
    "RobustnessStudy",
    "TrackingHook",
    "WorkerError",
    "attack_loss",
    "build_study",
    "check_workers",
    "collect_batches",
    "corrupt_batch",
    "corruption_ids",
    "fgsm_attack",
    "format_markdown",
    "headline_metrics",
    "load_reference",
    "mean_corruption_error",
    "parse_corruptions",
    "parse_eps",
    "parse_severities",
    "pgd_attack",
    "pixels_to_unit",
    "plot_severity_curves",
    "relative_corruption_error",
    "run_study",
    "summarise",
    "trunk_feature_distance",
    "unit_to_pixels",
    "write_outputs",
]
