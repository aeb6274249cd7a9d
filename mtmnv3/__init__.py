"""mtmnv3: multi-task perception on edge devices with a shared MobileNetV3 trunk."""

from .plan import StagePlan
from .specs import LARGE_SPECS, SMALL_SPECS, BlockSpec
from .trunk import MobileNetV3Trunk
from .variants import TRUNK_VARIANTS, create_trunk

__version__ = "0.1.0"

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
