"""The registries under the name mmengine looks for: ``<scope>.registry`` (they live in :mod:`mtmnv3.core.registry`).

mmengine imports ``mtmnv3.registry`` whenever the default scope is
``'mtmnv3'`` (``init_default_scope``, ``Registry.get`` with a scope), as it
imports ``mmdet.registry`` for MMDetection. Nothing in the package imports
this module; it re-exports the registries for mmengine and for users.
"""

from mtmnv3.core.registry import (
    BUDGET_POLICIES,
    DATA_SAMPLERS,
    DATASETS,
    EVALUATOR,
    HOOKS,
    LOSS_WEIGHTINGS,
    METRICS,
    MODELS,
    OPTIM_WRAPPERS,
    TRANSFORMS,
)

__all__ = [
    "BUDGET_POLICIES",
    "DATA_SAMPLERS",
    "DATASETS",
    "EVALUATOR",
    "HOOKS",
    "LOSS_WEIGHTINGS",
    "METRICS",
    "MODELS",
    "OPTIM_WRAPPERS",
    "TRANSFORMS",
]
