"""APIs layer: the one model loader and the inference functions every entry point uses."""

from mtmnv3.apis.inference import (
    SequenceDetections,
    detect_mot_sequences,
    mot_sequence_dirs,
    track_detections,
    track_mot_sequences,
)
from mtmnv3.apis.init import init_model

__all__ = [
    "SequenceDetections",
    "detect_mot_sequences",
    "init_model",
    "mot_sequence_dirs",
    "track_detections",
    "track_mot_sequences",
]
