"""The scheduler: task-loss balancing in training (``weighting``) and the
per-frame compute budget at run time (``budget``)."""

from . import budget, weighting

__all__ = ["budget", "weighting"]
