"""Robustness study: the shift suite (corruptions), adversarial attacks, robust training.

* :mod:`.corruptions`: eleven corruption families x five severities
  (Hendrycks & Dietterich 2019), consistent across the frames of a video;
* :mod:`.transforms`: ``CorruptFrames``, the pipeline transform (registered
  in ``TRANSFORMS``);
* :mod:`.attacks`: FGSM / PGD in pixel space against one head or the trunk;
* :mod:`.dro`: group DRO weights (Sagawa et al. 2020) and AugMix with its
  Jensen-Shannon consistency loss (Hendrycks et al. 2020).
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
from .dro import AUGMIX_OPS, GroupDROWeights, augmix, group_mean_losses, jensen_shannon_consistency
from .transforms import CorruptFrames, still_image_video_id

__all__ = [
    "AUGMIX_OPS",
    "CORRUPTIONS",
    "CorruptFrames",
    "GroupDROWeights",
    "NUM_SEVERITIES",
    "PER_FRAME_NOISE",
    "PER_VIDEO_RANDOM",
    "SEVERITY_TABLES",
    "TRUNK_TARGET",
    "attack_loss",
    "augmix",
    "corrupt",
    "fgsm_attack",
    "group_mean_losses",
    "jensen_shannon_consistency",
    "pgd_attack",
    "pixels_to_unit",
    "severity_parameter",
    "still_image_video_id",
    "trunk_feature_distance",
    "unit_to_pixels",
]
