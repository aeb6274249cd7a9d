"""Plug-in heads (installed as ``mtmnv3.heads``), registered in ``mtmnv3.core.registry.MODELS``."""

from mtmnv3.heads.base import (
    CLASSIFICATION,
    DETECTION,
    EMBEDDING,
    HEAD_TASKS,
    TASK_LABELS,
    BaseHead,
    head_task,
    heads_by_task,
    resolve_tap,
)
from mtmnv3.heads.center_head import CenterDetHead
from mtmnv3.heads.cls_head import ClsHead
from mtmnv3.heads.embedding_head import EmbeddingHead

__all__ = [
    "BaseHead",
    "CLASSIFICATION",
    "DETECTION",
    "EMBEDDING",
    "HEAD_TASKS",
    "TASK_LABELS",
    "head_task",
    "heads_by_task",
    "resolve_tap",
    "ClsHead",
    "CenterDetHead",
    "EmbeddingHead",
]
