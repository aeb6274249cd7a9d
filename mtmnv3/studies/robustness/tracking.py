"""Tracking under the shift suite: a tracker run over each video's predicted frames.

:class:`TrackingHook` is the ``sequence_hook_factory`` product of
:class:`~mtmnv3.studies.robustness.study.RobustnessStudy`: it receives every
predicted batch of a condition in dataloader order, keeps one tracker per
video (built from the config's ``tracker`` dict, as ``mtmnv3 test --track``
and the demo build theirs), feeds it each frame's detections and embeddings
and writes ``pred_track_instances`` onto the samples for ``MOTMetric``. A
video's frames are corrupted with the same camera fault (the corruption
streams are keyed by video), so MOTA and IDF1 measure tracking through a
consistently degraded video, not frame-wise noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from mmengine.structures import InstanceData

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.tracking import EmbeddingTracker, build_tracker

__all__ = ["TRACK_TASK", "TrackingHook"]

#: The task name of samples that carry tracking labels.
TRACK_TASK = "track"


def _numpy(value: Any, dtype: type) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype)


class TrackingHook:
    """Track every video of one condition, frame by frame, as its predictions arrive.

    Args:
        tracker_cfg: tracker config (``dict(type='EmbeddingTracker', ...)``; the
            type defaults to ``EmbeddingTracker``).
        use_embeddings: pass the embedding head's outputs to the tracker
            (``False``: IoU-only association, as ``mtmnv3 test --iou-only``).

    Raises:
        ValueError / TypeError: a bad tracker config (checked when the hook is built).
    """

    def __init__(self, tracker_cfg: Mapping[str, Any] | None = None, use_embeddings: bool = True) -> None:
        self.tracker_cfg = {"type": "EmbeddingTracker", **dict(tracker_cfg or {})}
        self.tracker_cfg["use_embeddings"] = bool(use_embeddings)
        self.use_embeddings = bool(use_embeddings)
        build_tracker(self.tracker_cfg)  # a bad config fails here, before the long run
        self.trackers: dict[int, EmbeddingTracker] = {}

    def __call__(self, samples: Sequence[MultiTaskDataSample]) -> None:
        """Update each sample's video tracker and write its ``pred_track_instances``.

        Samples without the ``track`` task (when they list their tasks) are left
        alone; frames of a video must arrive in increasing ``frame_id`` order.

        Raises:
            KeyError: a tracking sample without ``pred_instances``.
            ValueError: no ``video_id`` / ``frame_id`` metainfo, or frames out of order.
        """
        for sample in samples:
            tasks = sample.metainfo.get("tasks")
            if tasks is not None and TRACK_TASK not in tasks:
                continue
            video_id, frame_id = sample.metainfo.get("video_id"), sample.metainfo.get("frame_id")
            if video_id is None or frame_id is None or int(video_id) < 0:
                raise ValueError(
                    f"tracking needs video_id >= 0 and frame_id metainfo, got video_id={video_id!r}, "
                    f"frame_id={frame_id!r} (img_id={sample.metainfo.get('img_id')!r})"
                )
            if "pred_instances" not in sample:
                raise KeyError(
                    f"tracking needs pred_instances (detections) on video {video_id} frame {frame_id}"
                )
            pred = sample.pred_instances
            embeddings = pred.get("embeddings") if self.use_embeddings else None
            tracker = self.trackers.get(int(video_id))
            if tracker is None:
                tracker = self.trackers[int(video_id)] = build_tracker(self.tracker_cfg)
            tracks = tracker.update(
                _numpy(pred.bboxes, np.float64).reshape(-1, 4),
                _numpy(pred.scores, np.float64).reshape(-1),
                _numpy(pred.labels, np.int64).reshape(-1),
                None if embeddings is None else _numpy(embeddings, np.float32),
                frame_id=int(frame_id),
            )
            out = InstanceData()
            out.bboxes = torch.as_tensor(tracks.bboxes, dtype=torch.float32).reshape(-1, 4)
            out.instance_ids = torch.as_tensor(tracks.ids, dtype=torch.long)
            out.scores = torch.as_tensor(tracks.scores, dtype=torch.float32)
            out.labels = torch.as_tensor(tracks.labels, dtype=torch.long)
            sample.pred_track_instances = out
