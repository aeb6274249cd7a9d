"""Models built from the trunk: the neck and the multi-task perceptor."""

from .neck import FPNLite
from .perceptor import IMAGENET_MEAN, IMAGENET_STD, MultiTaskPerceptor

__all__ = ["FPNLite", "MultiTaskPerceptor", "IMAGENET_MEAN", "IMAGENET_STD"]
