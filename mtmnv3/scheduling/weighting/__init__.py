"""Task-loss balancing methods (one small file each), registered in LOSS_WEIGHTINGS.

Select one in the model config, e.g.
``model = dict(type='MultiTaskPerceptor', ..., loss_weighting=dict(type='FAMO'))``.
"""

from .base import (
    DEFAULT_MIN_WEIGHT,
    GradientWeighting,
    LossWeighting,
    build_loss_weighting,
    floor_weights,
    rank_mean_losses,
    task_gradients,
)
from .cagrad import CAGrad, cagrad_coefficients
from .dwa import DWA
from .famo import FAMO
from .gradnorm import GradNorm
from .pcgrad import PCGrad, project_conflicting
from .static import EqualWeighting, StaticWeighting
from .uncertainty import UncertaintyWeighting

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
