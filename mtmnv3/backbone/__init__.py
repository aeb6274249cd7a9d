"""Backbone layer: the MobileNetV3 trunk, timm successor trunks, variants, stage plans and complexity counts."""

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.timm_trunk import SUCCESSOR_TRUNKS, TimmTrunk
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import TIMM_VARIANTS, TRUNK_VARIANTS, create_trunk

__all__ = [
    "MobileNetV3Trunk",
    "StagePlan",
    "SUCCESSOR_TRUNKS",
    "TIMM_VARIANTS",
    "TRUNK_VARIANTS",
    "TimmTrunk",
    "create_trunk",
]
