"""What a model was trained on: a plain description of the training datasets, kept in checkpoints.

:func:`describe_datasets` walks a built training dataset (through mmengine's
``ConcatDataset``/``RepeatDataset`` wrappers) and returns one plain dict per
leaf dataset: its type, root, size, tasks and whether it is synthetic (a
dataset class says so with a ``synthetic = True`` attribute). The training
hook stores the list in every checkpoint's ``meta['train_data']``; the demo
reads it back to tell a user, once, that a model trained only on synthetic
scenes will see little in real footage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["describe_datasets", "trained_only_on_synthetic", "format_train_data"]


def _leaves(dataset: Any) -> list[Any]:
    inner = getattr(dataset, "datasets", None)
    if isinstance(inner, Sequence) and not isinstance(inner, (str, bytes)):
        return [leaf for part in inner for leaf in _leaves(part)]
    wrapped = getattr(dataset, "dataset", None)
    if wrapped is not None and wrapped is not dataset:
        return _leaves(wrapped)
    return [dataset]


def _portable(root: Any) -> str | None:
    """A root under the working directory as a relative path (a record should not carry one machine's paths)."""
    if not root:
        return None
    path = os.path.abspath(os.fspath(root))
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith(os.pardir) else rel


def describe_datasets(dataset: Any) -> list[dict[str, Any]]:
    """One plain dict per leaf dataset of ``dataset``: type, data_root, size, tasks, synthetic."""
    out = []
    for leaf in _leaves(dataset):
        root = getattr(leaf, "data_root", None)
        tasks = getattr(leaf, "keep_tasks", None) or getattr(leaf, "tasks", None)
        try:
            size = len(leaf)
        except TypeError:
            size = None
        out.append(
            {
                "type": type(leaf).__name__,
                "data_root": _portable(root),
                "size": size,
                "tasks": list(tasks) if isinstance(tasks, (list, tuple)) else None,
                "synthetic": bool(getattr(leaf, "synthetic", False)),
            }
        )
    return out


def trained_only_on_synthetic(meta: Mapping[str, Any] | None) -> bool | None:
    """True when a checkpoint's meta says every training dataset was synthetic; None when it does not say."""
    parts = (meta or {}).get("train_data")
    if not parts:
        return None
    return all(bool(p.get("synthetic")) for p in parts)


def format_train_data(parts: Sequence[Mapping[str, Any]]) -> str:
    """``SynthMultiTaskDataset (synthetic, 12000 samples) + ...`` for messages and model cards."""
    items = []
    for p in parts:
        kind = "synthetic" if p.get("synthetic") else (p.get("data_root") or "real data")
        size = f", {p['size']} samples" if p.get("size") is not None else ""
        items.append(f"{p.get('type', '?')} ({kind}{size})")
    return " + ".join(items) or "unknown"
