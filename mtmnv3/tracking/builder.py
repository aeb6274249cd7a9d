"""Build a tracker from a config dict, e.g. ``dict(type="EmbeddingTracker", high_thr=0.6)``.

Trackers are plain classes, not mmengine registry entries; this module maps
``type`` names to them: ours (``EmbeddingTracker``) and the BoxMOT peers
(``BoxMOTByteTrack``, ``BoxMOTOCSort``, ``BoxMOTBoTSORT``; :mod:`.peers`,
which import BoxMOT only when built). Every tracker has ``update(bboxes,
scores, labels, embeddings, frame_id, frame=None) -> TrackResult``,
``predict_only(frame_id, frame=None)`` and ``reset()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtmnv3.tracking.peers import PEER_TRACKERS
from mtmnv3.tracking.tracker import EmbeddingTracker

__all__ = ["TRACKER_TYPES", "build_tracker"]

#: Tracker ``type`` names accepted by :func:`build_tracker`.
TRACKER_TYPES: dict[str, type] = {"EmbeddingTracker": EmbeddingTracker, **PEER_TRACKERS}


def build_tracker(cfg: Mapping[str, Any]) -> Any:
    """Instantiate the tracker named by ``cfg['type']`` with the other keys as arguments.

    Args:
        cfg: A mapping with ``type`` (a name in :data:`TRACKER_TYPES` or one
            of those classes) and the constructor's keyword arguments. It is
            not modified.

    Returns:
        A new tracker.

    Raises:
        ImportError: If a BoxMOT peer is named and BoxMOT is not installed
            (the message says how to install it).
        TypeError: If ``cfg`` is not a mapping or an argument is not accepted.
        ValueError: If ``type`` is missing or unknown, or an argument is out of range.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(f"tracker config must be a dict with a 'type', got {type(cfg).__name__}")
    if "type" not in cfg:
        raise ValueError(
            f"tracker config needs a 'type' key (one of {sorted(TRACKER_TYPES)}), got keys {sorted(cfg)}"
        )
    kind = cfg["type"]
    if isinstance(kind, type) and kind in TRACKER_TYPES.values():
        cls = kind
    elif isinstance(kind, str) and kind in TRACKER_TYPES:
        cls = TRACKER_TYPES[kind]
    else:
        ours = sorted(k for k in TRACKER_TYPES if k not in PEER_TRACKERS)
        raise ValueError(
            f"unknown tracker type {kind!r}; known types: {ours}, "
            f"BoxMOT peers (need boxmot): {sorted(PEER_TRACKERS)}"
        )
    kwargs = {k: v for k, v in cfg.items() if k != "type"}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad arguments for tracker {cls.__name__}: {err}") from err
