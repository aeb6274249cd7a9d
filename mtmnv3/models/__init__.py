"""Models layer: the neck, the multi-task perceptor, its robust-training variant, task-loss weighting."""

from mtmnv3.models.neck import FPNLite
from mtmnv3.models.perceptor import IMAGENET_MEAN, IMAGENET_STD, MultiTaskPerceptor
from mtmnv3.models.robust import RobustMultiTaskPerceptor

__all__ = ["FPNLite", "MultiTaskPerceptor", "RobustMultiTaskPerceptor", "IMAGENET_MEAN", "IMAGENET_STD"]
