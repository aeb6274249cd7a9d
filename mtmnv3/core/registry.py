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
from mmengine.registry import root as mmengine_root

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
    "FUNCTIONS",
    "INFERENCERS",
    "LOG_PROCESSORS",
    "LOOPS",
    "MODEL_WRAPPERS",
    "OPTIMIZERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "RUNNERS",
    "RUNNER_CONSTRUCTORS",
    "STRATEGIES",
    "TASK_UTILS",
    "VISBACKENDS",
    "VISUALIZERS",
    "WEIGHT_INITIALIZERS",
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

# The rest of mmengine's registries, as empty children in this scope (as
# mmdet's registry module does): the Runner builds loops, log processors,
# visualizers, schedulers... through the default scope, and without a child of
# that name in ``mtmnv3`` mmengine warns "Failed to search registry with scope"
# and falls back to its root registry. Lookups reach mmengine's classes
# through the parent.


def _child(parent: Registry) -> Registry:
    return Registry(parent.name, parent=parent, scope="mtmnv3")


FUNCTIONS = _child(mmengine_root.FUNCTIONS)
INFERENCERS = _child(mmengine_root.INFERENCERS)
LOG_PROCESSORS = _child(mmengine_root.LOG_PROCESSORS)
LOOPS = _child(mmengine_root.LOOPS)
MODEL_WRAPPERS = _child(mmengine_root.MODEL_WRAPPERS)
OPTIMIZERS = _child(mmengine_root.OPTIMIZERS)
OPTIM_WRAPPER_CONSTRUCTORS = _child(mmengine_root.OPTIM_WRAPPER_CONSTRUCTORS)
PARAM_SCHEDULERS = _child(mmengine_root.PARAM_SCHEDULERS)
RUNNERS = _child(mmengine_root.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmengine_root.RUNNER_CONSTRUCTORS)
STRATEGIES = _child(mmengine_root.STRATEGIES)
TASK_UTILS = _child(mmengine_root.TASK_UTILS)
VISBACKENDS = _child(mmengine_root.VISBACKENDS)
VISUALIZERS = _child(mmengine_root.VISUALIZERS)
WEIGHT_INITIALIZERS = _child(mmengine_root.WEIGHT_INITIALIZERS)
