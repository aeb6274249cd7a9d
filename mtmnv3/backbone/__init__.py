"""Backbone layer: the MobileNetV3 trunk, its variants, stage plans and complexity counts."""

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk

__all__ = ["MobileNetV3Trunk", "StagePlan", "TRUNK_VARIANTS", "create_trunk"]
