"""Named trunk variants: the paper's models, the deployment-minded ones and timm's successors.

Every ``TRUNK_VARIANTS`` entry is a set of :class:`~mtmnv3.backbone.trunk.MobileNetV3Trunk`
arguments; tests run over all of them and ``make demo`` prints a table of them.
``TIMM_VARIANTS`` are :class:`~mtmnv3.backbone.timm_trunk.TimmTrunk` arguments, one
per tested timm model (``'timm_' + name``, e.g. ``timm_mobilenetv4_conv_small``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mtmnv3.backbone.timm_trunk import TESTED_TIMM_TRUNKS, TIMM_PREFIX, TimmTrunk
from mtmnv3.backbone.trunk import MobileNetV3Trunk

__all__ = ["TIMM_VARIANTS", "TRUNK_VARIANTS", "create_trunk", "trunk_config"]

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


#: The successor trunks from timm (and timm's MobileNetV3-Small as a cross-check):
#: ``TimmTrunk`` arguments by variant name ``'timm_' + timm name``.
TIMM_VARIANTS: dict[str, dict[str, Any]] = {
    TIMM_PREFIX + name: dict(name=name) for name in TESTED_TIMM_TRUNKS
}


def trunk_config(variant: str, **overrides: Any) -> dict[str, Any]:
    """A named variant as a trunk config (``model.trunk``): ``dict(type=..., **arguments)``."""
    if variant in TRUNK_VARIANTS:
        return dict(type="MobileNetV3Trunk", **{**TRUNK_VARIANTS[variant], **overrides})
    if variant in TIMM_VARIANTS:
        return dict(type="TimmTrunk", **{**TIMM_VARIANTS[variant], **overrides})
    raise ValueError(
        f"unknown trunk variant {variant!r}; expected one of {sorted(TRUNK_VARIANTS)} "
        f"or a timm successor {sorted(TIMM_VARIANTS)}"
    )


def create_trunk(variant: str, **overrides: Any) -> nn.Module:
    """Build a named variant (MobileNetV3 or timm successor), with any trunk argument overridden."""
    cfg = trunk_config(variant, **overrides)
    cls = MobileNetV3Trunk if cfg.pop("type") == "MobileNetV3Trunk" else TimmTrunk
    return cls(**cfg)
