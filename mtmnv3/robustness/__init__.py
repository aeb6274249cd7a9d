"""Robustness study: the shift suite (corruptions), adversarial attacks, robust training.

* :mod:`.corruptions`: eleven corruption families x five severities
  (Hendrycks & Dietterich 2019), consistent across the frames of a video;
* :mod:`.transforms`: ``CorruptFrames``, the pipeline transform (registered
  in ``TRANSFORMS``);
* :mod:`.attacks`: FGSM / PGD in pixel space against one head or the trunk;
* :mod:`.dro`: group DRO weights (Sagawa et al. 2020) and AugMix with its
  Jensen-Shannon consistency loss (Hendrycks et al. 2020);
* :mod:`.evaluate`: the study: every task's metric clean, per corruption x
  severity (mCE, relative robustness) and under attacks (cross-task transfer);
  ``tools/robustness.py`` is its command line;
* :mod:`.robust_model`: ``RobustMultiTaskPerceptor`` (registered in
  ``MODELS``), training with AugMix consistency and/or group DRO.
"""

from .attacks import (
    TRUNK_TARGET,
    attack_loss,
    fgsm_attack,
    pgd_attack,
    pixels_to_unit,
    trunk_feature_distance,
    unit_to_pixels,
)
from .corruptions import (
    CORRUPTIONS,
    NUM_SEVERITIES,
    PER_FRAME_NOISE,
    PER_VIDEO_RANDOM,
    SEVERITY_TABLES,
    corrupt,
    severity_parameter,
)
from .dro import (
    AUGMIX_EXTRA_OPS,
    AUGMIX_OPS,
    GroupDROWeights,
    augmentation_op,
    augmix,
    group_mean_losses,
    jensen_shannon_consistency,
)
from .evaluate import (
    TASK_METRICS,
    RobustnessStudy,
    build_study,
    corrupt_batch,
    format_markdown,
    mean_corruption_error,
    parse_corruptions,
    parse_eps,
    parse_severities,
    relative_corruption_error,
    run_study,
    summarise,
    write_outputs,
)
from .robust_model import (
    AUGMIX_HELD_OUT,
    AUGMIX_TRAIN_OPS,
    CONSISTENCY_ANCHORS,
    RobustMultiTaskPerceptor,
    bernoulli_js_consistency,
    clean_anchored_consistency,
)
from .tracking import TrackingHook
from .transforms import CorruptFrames, still_image_video_id

__all__ = [
    "AUGMIX_EXTRA_OPS",
    "AUGMIX_HELD_OUT",
    "AUGMIX_OPS",
    "AUGMIX_TRAIN_OPS",
    "CONSISTENCY_ANCHORS",
    "CORRUPTIONS",
    "CorruptFrames",
    "GroupDROWeights",
    "NUM_SEVERITIES",
    "PER_FRAME_NOISE",
    "PER_VIDEO_RANDOM",
    "RobustMultiTaskPerceptor",
    "RobustnessStudy",
    "SEVERITY_TABLES",
    "TASK_METRICS",
    "TRUNK_TARGET",
    "TrackingHook",
    "attack_loss",
    "augmentation_op",
    "augmix",
    "bernoulli_js_consistency",
    "build_study",
    "clean_anchored_consistency",
    "corrupt",
    "corrupt_batch",
    "fgsm_attack",
    "format_markdown",
    "group_mean_losses",
    "jensen_shannon_consistency",
    "mean_corruption_error",
    "parse_corruptions",
    "parse_eps",
    "parse_severities",
    "pgd_attack",
    "pixels_to_unit",
    "relative_corruption_error",
    "run_study",
    "severity_parameter",
    "still_image_video_id",
    "summarise",
    "trunk_feature_distance",
    "unit_to_pixels",
    "write_outputs",
]
