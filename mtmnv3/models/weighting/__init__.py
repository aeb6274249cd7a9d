"""Task-loss balancing methods (one small file each), registered in LOSS_WEIGHTINGS.

Select one in the model config, e.g.
``model = dict(type='MultiTaskPerceptor', ..., loss_weighting=dict(type='FAMO'))``.
"""

from mtmnv3.models.weighting.base import (
    DEFAULT_MIN_WEIGHT,
    GradientWeighting,
    LossWeighting,
    build_loss_weighting,
    floor_weights,
    rank_mean_losses,
    task_gradients,
)
from mtmnv3.models.weighting.cagrad import CAGrad, cagrad_coefficients
from mtmnv3.models.weighting.dwa import DWA
from mtmnv3.models.weighting.famo import FAMO
from mtmnv3.models.weighting.gradnorm import GradNorm
from mtmnv3.models.weighting.pcgrad import PCGrad, project_conflicting
from mtmnv3.models.weighting.static import EqualWeighting, StaticWeighting
from mtmnv3.models.weighting.uncertainty import UncertaintyWeighting

__all__ = [
    "DEFAULT_MIN_WEIGHT",
    "LossWeighting",
    "GradientWeighting",
    "build_loss_weighting",
    "floor_weights",
    "rank_mean_losses",
    "task_gradients",
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "DWA",
    "GradNorm",
    "PCGrad",
    "project_conflicting",
    "CAGrad",
    "cagrad_coefficients",
    "FAMO",
]
