"""The package's mmengine registries (scope ``mtmnv3``).

Every plug-in of the package (trunk, heads, necks, datasets, transforms,
metrics, loss-weighting methods, budget policies) is registered here by name
and built from a config dict. Each registry is a child of mmengine's root
registry of the same kind, so mmengine's Runner finds our components when a
config sets ``default_scope='mtmnv3'``. Registering a name twice raises
``KeyError`` (mmengine's behaviour without ``force=True``).
"""

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

__all__ = [
    "MODELS",
    "DATASETS",
    "DATA_SAMPLERS",
    "TRANSFORMS",
    "METRICS",
    "EVALUATOR",
    "HOOKS",
    "OPTIM_WRAPPERS",
    "LOSS_WEIGHTINGS",
    "BUDGET_POLICIES",
]

MODELS = Registry(
    "model",
    parent=MMENGINE_MODELS,
    scope="mtmnv3",
    locations=["mtmnv3.backbone", "mtmnv3.heads", "mtmnv3.models"],
)
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, scope="mtmnv3", locations=["mtmnv3.data"])
DATA_SAMPLERS = Registry(
    "data sampler", parent=MMENGINE_DATA_SAMPLERS, scope="mtmnv3", locations=["mtmnv3.data"]
)
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, scope="mtmnv3", locations=["mtmnv3.data"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, scope="mtmnv3", locations=["mtmnv3.evaluation"])
EVALUATOR = Registry("evaluator", parent=MMENGINE_EVALUATOR, scope="mtmnv3", locations=["mtmnv3.evaluation"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, scope="mtmnv3", locations=["mtmnv3.engine"])
OPTIM_WRAPPERS = Registry(
    "optim wrapper", parent=MMENGINE_OPTIM_WRAPPERS, scope="mtmnv3", locations=["mtmnv3.engine"]
)
# Package-only registries (no mmengine parent).
LOSS_WEIGHTINGS = Registry("loss weighting", scope="mtmnv3", locations=["mtmnv3.models.weighting"])
BUDGET_POLICIES = Registry("budget policy", scope="mtmnv3", locations=["mtmnv3.runtime.budget"])
