"""Deployment: ONNX export of the multi-task model and its stage pieces, ONNX Runtime execution."""

from .onnx_export import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    EXPORTERS,
    export_onnx,
    export_split,
    load_model,
    sidecar_path,
    stage_ranges_from_plan,
)
from .ort_runtime import FramePrediction, OrtMultiTaskRunner, OrtPipeline, load_export_meta, make_session

__all__ = [
    "DEFAULT_EXPORTER",
    "DEFAULT_OPSET",
    "EXPORTERS",
    "export_onnx",
    "export_split",
    "load_model",
    "sidecar_path",
    "stage_ranges_from_plan",
    "FramePrediction",
    "OrtMultiTaskRunner",
    "OrtPipeline",
    "load_export_meta",
    "make_session",
]
