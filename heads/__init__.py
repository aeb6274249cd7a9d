"""Plug-in heads (installed as ``mtmnv3.heads``), registered in ``mtmnv3.registry.MODELS``."""

from .base import BaseHead, resolve_tap
from .center_head import CenterDetHead
from .cls_head import ClsHead
from .embedding_head import EmbeddingHead

__all__ = ["BaseHead", "resolve_tap", "ClsHead", "CenterDetHead", "EmbeddingHead"]
