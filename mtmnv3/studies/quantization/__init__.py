"""int8 quantization study: recipes, PTQ, PT2E, QAT and per-layer quantization error.

Modules: :mod:`~mtmnv3.studies.quantization.quantize` (ONNX Runtime static
PTQ: options, recipes, the quantizer), :mod:`~mtmnv3.studies.quantization.calibration`
(calibration readers and frames), :mod:`~mtmnv3.studies.quantization.pt2e`
(torchao PT2E and QAT), :mod:`~mtmnv3.studies.quantization.evaluate`
(running and scoring raw-output functions), :mod:`~mtmnv3.studies.quantization.speed`
(fp32 vs int8 latency), :mod:`~mtmnv3.studies.quantization.layer_kinds` and
:mod:`~mtmnv3.studies.quantization.sqnr` (per-layer error), and
:mod:`~mtmnv3.studies.quantization.study` (the end-to-end study and its report).
"""

from mtmnv3.studies.quantization.calibration import (
    ArrayCalibrationReader,
    FeedsCalibrationReader,
    build_loader,
    calibration_arrays,
)
from mtmnv3.studies.quantization.evaluate import OrtRawFn, evaluate_raw_fn, head_outputs_from_raw
from mtmnv3.studies.quantization.layer_kinds import (
    LAYER_KINDS,
    graph_layer_kinds,
    node_module,
    onnx_layer_kind,
)
from mtmnv3.studies.quantization.pt2e import (
    Pt2eGraph,
    capture_for_pt2e,
    compile_quantized,
    convert_qat,
    prepare_qat,
    qat_finetune,
    quantize_pt2e,
)
from mtmnv3.studies.quantization.quantize import (
    CALIBRATION_METHODS,
    INT8_RECIPES,
    QFRIENDLY_TRUNK,
    QUANT_FORMATS,
    QUANT_TYPES,
    OrtQuantConfig,
    node_names_by_kind,
    node_names_by_module,
    node_names_by_op_type,
    quantize_onnx,
    quantized_graph_summary,
    with_config,
)
from mtmnv3.studies.quantization.speed import LatencyRow, compare_latency, ort_timer
from mtmnv3.studies.quantization.sqnr import (
    LayerSQNR,
    SQNRAccumulator,
    ort_layer_sqnr,
    pt2e_layer_sqnr,
    sqnr_by_kind,
    sqnr_db,
    sqnr_markdown,
)
from mtmnv3.studies.quantization.study import METHODS, StudyOptions, quantization_study, study_markdown

__all__ = [
    "CALIBRATION_METHODS",
    "INT8_RECIPES",
    "LAYER_KINDS",
    "METHODS",
    "QFRIENDLY_TRUNK",
    "QUANT_FORMATS",
    "QUANT_TYPES",
    "ArrayCalibrationReader",
    "FeedsCalibrationReader",
    "LatencyRow",
    "LayerSQNR",
    "OrtQuantConfig",
    "OrtRawFn",
    "Pt2eGraph",
    "SQNRAccumulator",
    "StudyOptions",
    "build_loader",
    "calibration_arrays",
    "capture_for_pt2e",
    "compare_latency",
    "compile_quantized",
    "convert_qat",
    "evaluate_raw_fn",
    "graph_layer_kinds",
    "head_outputs_from_raw",
    "node_module",
    "node_names_by_kind",
    "node_names_by_module",
    "node_names_by_op_type",
    "onnx_layer_kind",
    "ort_layer_sqnr",
    "ort_timer",
    "prepare_qat",
    "pt2e_layer_sqnr",
    "qat_finetune",
    "quantization_study",
    "quantize_onnx",
    "quantize_pt2e",
    "quantized_graph_summary",
    "sqnr_by_kind",
    "sqnr_db",
    "sqnr_markdown",
    "study_markdown",
    "with_config",
]
