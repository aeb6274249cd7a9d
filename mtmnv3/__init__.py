"""mtmnv3: multi-task perception on edge devices with a shared MobileNetV3 trunk.

The package is layered; each folder is one layer and imports only point down:

    core -> data -> backbone -> heads -> models -> tracking -> evaluation
    -> engine -> runtime -> apis -> studies -> cli

``tests/test_layers.py`` holds this order and fails on an upward import or a
circle. This top-level module re-exports the trunk's public names; no module
of the package imports from it.
"""

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk
from mtmnv3.core.specs import LARGE_SPECS, SMALL_SPECS, BlockSpec
from mtmnv3.core.version import __version__

__all__ = [
    "BlockSpec",
    "LARGE_SPECS",
    "SMALL_SPECS",
    "MobileNetV3Trunk",
    "StagePlan",
    "TRUNK_VARIANTS",
    "create_trunk",
    "__version__",
]
