"""Named trunk variants: the paper's models and the deployment-minded ones.

Every variant is a set of :class:`~mtmnv3.backbone.trunk.MobileNetV3Trunk` arguments;
tests run over all of them and ``make demo`` prints a table of them.
"""

from __future__ import annotations

from typing import Any

from mtmnv3.backbone.trunk import MobileNetV3Trunk

__all__ = ["TRUNK_VARIANTS", "create_trunk"]

TRUNK_VARIANTS: dict[str, dict[str, Any]] = {
    "large": dict(arch="large"),
    "small": dict(arch="small"),
    "large_minimal": dict(arch="large", minimalistic=True),
    "small_minimal": dict(arch="small", minimalistic=True),
    # Deployment variants (SE and hard-swish study).
    "large_no_se": dict(arch="large", se="none"),
    "small_no_se": dict(arch="small", se="none"),
    "small_late_se": dict(arch="small", se="late"),
    "large_relu6": dict(arch="large", activation="relu6"),
    "small_relu": dict(arch="small", activation="relu"),
    # Quantization-friendly: no SE multiply, no hard-swish.
    "small_qfriendly": dict(arch="small", se="none", activation="relu6"),
    "small_075": dict(arch="small", width_mult=0.75),
    # A tiny variant for fast tests.
    "tiny": dict(arch="small", width_mult=0.25),
}


def create_trunk(variant: str, **overrides: Any) -> MobileNetV3Trunk:
    """Build a named variant, with any trunk argument overridden."""
    if variant not in TRUNK_VARIANTS:
        raise ValueError(f"unknown trunk variant {variant!r}; expected one of {sorted(TRUNK_VARIANTS)}")
    return MobileNetV3Trunk(**{**TRUNK_VARIANTS[variant], **overrides})
