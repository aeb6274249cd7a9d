"""Training and evaluation plumbing around mmengine's Runner."""

from mtmnv3.core.checkpoint import (
    ATOMIC_BACKEND_ARGS,
    AtomicLocalBackend,
    allow_mmengine_checkpoint_globals,
    load_model_checkpoint,
)
from mtmnv3.engine.ema import ModelEMAHook
from mtmnv3.engine.hooks import EvalProgressHook, LossWeightsPlotHook, TrainDataRecordHook
from mtmnv3.engine.runner import (
    DictAction,
    add_runner_args,
    build_runner,
    check_split_seeds,
    close_distributed,
    dataset_keys,
    dataset_parts,
    input_size,
    load_config,
    parse_runner_args,
    prepare_train_config,
    scale_schedule,
    validate_config,
)

__all__ = [
    "ATOMIC_BACKEND_ARGS",
    "AtomicLocalBackend",
    "allow_mmengine_checkpoint_globals",
    "load_model_checkpoint",
    "EvalProgressHook",
    "TrainDataRecordHook",
    "LossWeightsPlotHook",
    "ModelEMAHook",
    "build_runner",
    "check_split_seeds",
    "close_distributed",
    "dataset_keys",
    "dataset_parts",
    "input_size",
    "load_config",
    "scale_schedule",
    "prepare_train_config",
    "validate_config",
    "add_runner_args",
    "parse_runner_args",
    "DictAction",
]
