"""Checkpoint I/O: atomic writes, weights-only resume and strict loading that names any mismatch.

Atomic writes go through mmengine's file backend (``backend='atomic_local'``);
resume allow-lists the classes mmengine checkpoints hold for torch's
``weights_only`` loading.
"""

from __future__ import annotations

import codecs
import collections
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging.history_buffer import HistoryBuffer
from torch import nn

from mtmnv3.core.fileio import atomic_open

__all__ = [
    "AtomicLocalBackend",
    "ATOMIC_BACKEND_ARGS",
    "allow_mmengine_checkpoint_globals",
    "load_model_checkpoint",
]

#: ``backend_args`` for mmengine's CheckpointHook so checkpoints are written atomically.
ATOMIC_BACKEND_ARGS = dict(backend="atomic_local")


@register_backend("atomic_local")
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, but every write goes to a temp file that is
    renamed into place, so a run killed mid-save never leaves half a checkpoint."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        with atomic_open(filepath, "wb") as f:
            f.write(obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        with atomic_open(filepath, "w", encoding=encoding) as f:
            f.write(obj)


def _history_buffer_state(self: HistoryBuffer) -> dict:
    """HistoryBuffer's state without its statistics methods.

    mmengine pickles ``HistoryBuffer._statistics_methods`` (functions, stored
    through ``getattr``), which ``weights_only`` loading rightly refuses. They
    are class-level registrations that ``__setstate__`` restores anyway, so
    checkpoints do not need them.
    """
    state = dict(self.__dict__)
    state.pop("statistics_methods", None)
    return state


def allow_mmengine_checkpoint_globals() -> None:
    """Make mmengine's resume checkpoints load with torch's default
    ``weights_only=True`` (torch >= 2.6): allow-list the plain data classes
    they hold, and stop HistoryBuffer from pickling functions (see
    :func:`_history_buffer_state`). ``getattr`` is never allow-listed."""
    HistoryBuffer.__getstate__ = _history_buffer_state
    torch.serialization.add_safe_globals(
        [
            HistoryBuffer,
            collections.OrderedDict,
            np.ndarray,
            np.dtype,
            np._core.multiarray._reconstruct,
            np._core.multiarray.scalar,
            codecs.encode,
            *{type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")},
        ]
    )


def load_model_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> dict[str, Any]:
    """Load an mmengine checkpoint's ``state_dict`` into ``model``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the checkpoint holds another architecture (missing,
            unexpected or differently shaped tensors, named in the message).

    Returns:
        The checkpoint's ``meta`` dict (empty if none).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict (got {type(ckpt).__name__})")
    from mtmnv3.core.layers import upgrade_state_dict

    state = upgrade_state_dict(model, state)  # older SE-free checkpoints' layer names
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        # extra (non-tensor) state, e.g. a loss-weighting method's optimiser, has no shape
        if k in state
        and torch.is_tensor(own[k])
        and torch.is_tensor(state[k])
        and state[k].shape != own[k].shape
    ]
    if shapes or (strict and (missing or unexpected)):
        raise ValueError(
            f"checkpoint {path} does not match the model (another architecture or head set?): "
            f"{len(shapes)} shape mismatches {shapes[:3]}, {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
    model.load_state_dict(state, strict=strict)
    return ckpt.get("meta", {}) or {}
