"""The one model loader: a config plus a checkpoint make an eval-mode model (mmdet's ``init_detector``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def init_model(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike | None,
    cfg_options: Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build the config's model and load a checkpoint's weights, in eval mode on ``device``.

    Every entry point (train, test, demo, export, quantize, robustness, benchmarks)
    builds its model here.

    Args:
        config: mmengine config file with a ``model`` entry.
        checkpoint: mmengine checkpoint (``state_dict`` inside); None keeps the
            initial weights (for tests and latency studies).
        cfg_options: overrides merged into the config (``--cfg-options``).
        device: where the model lives (``'cpu'`` or a torch device).

    Raises:
        FileNotFoundError: the config or checkpoint does not exist.
        ValueError: the config has no model or the checkpoint does not match it.
    """
    from mmengine.registry import init_default_scope

    from mtmnv3.core.registry import MODELS
    from mtmnv3.engine import load_config, load_model_checkpoint

    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    cfg = load_config(config, dict(cfg_options) if cfg_options else None)
    if "model" not in cfg:
        raise ValueError(f"config {config} has no 'model' entry")
    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        load_model_checkpoint(model, checkpoint)
    return model.to(device).eval()
