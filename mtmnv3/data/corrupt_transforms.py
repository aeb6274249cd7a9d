"""``CorruptFrames``: apply one shift-suite corruption inside a data pipeline.

Put it before ``PackMultiTaskInputs`` in a test pipeline to evaluate every
task under a corruption family and severity (Hendrycks & Dietterich, ICLR
2019). The raw sample dict (see :mod:`mtmnv3.data.common`) carries ``img``
(uint8 RGB ``(H, W, 3)``) and ``video_id`` / ``frame_id``; the corruption's
defining parameters are drawn once per video and its noise once per frame, so
a video is corrupted consistently whichever worker loads which frame.
"""

from __future__ import annotations

import numpy as np

from mtmnv3.core.registry import TRANSFORMS
from mtmnv3.data.corruptions import corrupt, severity_parameter

__all__ = ["CorruptFrames", "still_image_video_id"]


def still_image_video_id(img_id: int) -> int:
    """The parameter stream of a still image (``video_id == -1``): its own, negative id.

    Real videos have ids >= 0, so each still image of a dataset gets its own
    corruption parameters, disjoint from every video's.
    """
    return -2 - int(img_id)


@TRANSFORMS.register_module()
class CorruptFrames:
    """Corrupt ``results['img']`` with one family at one severity.

    Args:
        name: a family of :data:`mtmnv3.data.corruptions.CORRUPTIONS`.
        severity: 1 .. 5.
        seed: non-negative base seed.

    Raises:
        ValueError: unknown family, severity outside 1..5 or bad seed (at
            construction), or an ``img`` that is not uint8 ``(H, W, 3)``.
    """

    def __init__(self, name: str, severity: int, seed: int = 0) -> None:
        severity_parameter(name, severity)  # validates both
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.name = name
        self.severity = int(severity)
        self.seed = int(seed)

    def __call__(self, results: dict) -> dict:
        video_id = int(results.get("video_id", -1))
        if video_id >= 0:
            frame_id = int(results.get("frame_id", 0))
        else:
            video_id, frame_id = still_image_video_id(results.get("img_id", 0)), 0
        results["img"] = corrupt(
            results["img"], self.name, self.severity, self.seed, video_ids=[video_id], frame_ids=[frame_id]
        )
        results["corruption"] = (self.name, self.severity)
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, severity={self.severity}, seed={self.seed})"
