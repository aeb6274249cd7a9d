"""Training and evaluation plumbing around mmengine's Runner."""

from .checkpoint import (
    ATOMIC_BACKEND_ARGS,
    AtomicLocalBackend,
    allow_mmengine_checkpoint_globals,
    load_model_checkpoint,
)
from .hooks import EvalProgressHook
from .runner import DictAction, build_runner, load_config, prepare_train_config, validate_config

__all__ = [
    "ATOMIC_BACKEND_ARGS",
    "AtomicLocalBackend",
    "allow_mmengine_checkpoint_globals",
    "load_model_checkpoint",
    "EvalProgressHook",
    "build_runner",
    "load_config",
    "prepare_train_config",
    "validate_config",
    "DictAction",
]
