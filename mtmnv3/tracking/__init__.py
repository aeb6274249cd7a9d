"""Tracking by embedding: Kalman motion, two-stage association, MOTChallenge output.

============================  ====================================================
module                        contents
============================  ====================================================
:mod:`.kalman`                :class:`KalmanFilterXYAH`, :class:`KalmanFilterXYWH` (constant velocity on
                              cx, cy, aspect, h or cx, cy, w, h; vectorised over tracks), ``CHI2INV95``
:mod:`.matching`              IoU / cosine-embedding costs, fusion, motion gate,
                              thresholded :func:`linear_assignment`
:mod:`.track`                 :class:`Track`, :class:`TrackState`, :class:`TrackResult`,
                              the checked detections of a frame
:mod:`.tracker`               :class:`EmbeddingTracker` (ByteTrack two-stage
                              association with FairMOT embeddings)
:mod:`.cmc`                   :class:`CameraMotion`: camera-motion compensation
                              (a global 2x3 warp per frame, BoT-SORT's GMC)
:mod:`.peers`                 BoxMOT's ByteTrack, OC-SORT and BoT-SORT behind the
                              same interface (BoxMOT imported when built)
:mod:`.builder`               :func:`build_tracker` from ``dict(type=..., ...)``
:mod:`.mot_io`                :func:`run_tracker` over a video, MOTChallenge result rows/files
============================  ====================================================
"""

from mtmnv3.tracking.builder import TRACKER_TYPES, build_tracker
from mtmnv3.tracking.cmc import CMC_METHODS, CameraMotion, build_cmc
from mtmnv3.tracking.kalman import CHI2INV95, KalmanFilterXYAH, KalmanFilterXYWH, xyah_to_xyxy, xyxy_to_xyah
from mtmnv3.tracking.matching import (
    embedding_distance,
    fuse_embedding_iou,
    fuse_min_gated,
    gate_cost,
    iou_distance,
    iou_matrix,
    linear_assignment,
)
from mtmnv3.tracking.mot_io import run_tracker, tracks_to_mot_rows
from mtmnv3.tracking.peers import PEER_TRACKERS, BoxMOTBoTSORT, BoxMOTByteTrack, BoxMOTOCSort
from mtmnv3.tracking.tracker import EmbeddingTracker, Track, TrackResult, TrackState

__all__ = [
    "CHI2INV95",
    "KalmanFilterXYAH",
    "KalmanFilterXYWH",
    "xyah_to_xyxy",
    "xyxy_to_xyah",
    "iou_matrix",
    "iou_distance",
    "embedding_distance",
    "fuse_embedding_iou",
    "fuse_min_gated",
    "gate_cost",
    "linear_assignment",
    "EmbeddingTracker",
    "Track",
    "TrackResult",
    "TrackState",
    "TRACKER_TYPES",
    "build_tracker",
    "CMC_METHODS",
    "CameraMotion",
    "build_cmc",
    "PEER_TRACKERS",
    "BoxMOTByteTrack",
    "BoxMOTOCSort",
    "BoxMOTBoTSORT",
    "run_tracker",
    "tracks_to_mot_rows",
]
