"""ONNX Runtime static int8 quantization (PTQ) of an exported model: options, recipes, the quantizer.

An exported fp32 model (:func:`mtmnv3.runtime.onnx_export.export_onnx`, or
any graph from :func:`~mtmnv3.runtime.onnx_export.export_module`) is
pre-processed (shape inference + graph optimisation), calibrated on real
inputs (a :class:`~mtmnv3.studies.quantization.calibration.ArrayCalibrationReader`
over preprocessed frames, or a
:class:`~mtmnv3.studies.quantization.calibration.FeedsCalibrationReader` of
input feeds) and quantized with per-channel int8 weights. Format (QDQ /
QOperator), u8/s8 types, calibration method, which op types are quantized
and which nodes stay float are all options of :class:`OrtQuantConfig`. An
int8 model gets its own sidecar when its fp32 model has one, so
:class:`~mtmnv3.runtime.deployed.DeployedRunner` runs it.

What makes int8 pay off on the CPU in ONNX Runtime (see ``INT8_RECIPES``):
the int8 kernels (QLinearConv, fused with its ReLU/Clip through the output
range) only win when tensors stay int8 from conv to conv. Every op that has
no int8 kernel (HardSwish, HardSigmoid, the SE multiply, ReduceMean) costs a
DequantizeLinear -> float op -> QuantizeLinear round trip, which on MobileNetV3
eats the whole gain. The q-friendly trunk (ReLU6 instead of hard-swish, no
SE: ``QFRIENDLY_TRUNK``) leaves only conv->conv chains, so the int8 graph is
QLinearConv end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor

from mtmnv3.backbone.variants import TRUNK_VARIANTS
from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.runtime.export_meta import sidecar_path
from mtmnv3.studies.quantization.calibration import ArrayCalibrationReader
from mtmnv3.studies.quantization.layer_kinds import LAYER_KINDS, graph_layer_kinds, node_module

__all__ = [
    "CALIBRATION_METHODS",
    "QUANT_FORMATS",
    "QUANT_TYPES",
    "QFRIENDLY_TRUNK",
    "OrtQuantConfig",
    "INT8_RECIPES",
    "node_names_by_op_type",
    "node_names_by_kind",
    "node_names_by_module",
    "quantize_onnx",
    "quantized_graph_summary",
    "with_config",
]

#: Activation calibration methods of ONNX Runtime, by CLI name.
CALIBRATION_METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
#: Quantized graph formats: Q/DQ pairs around float ops, or int8 operators (QLinearConv...).
QUANT_FORMATS: dict[str, QuantFormat] = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
#: int8 element types: unsigned or signed.
QUANT_TYPES: dict[str, QuantType] = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
#: Trunk arguments of the quantization-friendly MobileNetV3-Small proposed
#: here (the ``small_qfriendly`` trunk variant): ReLU6 wherever the paper has
#: hard-swish (its range is bounded, so the conv's output quantization absorbs
#: it and Conv+Clip fuses into one QLinearConv) and no SE (whose global pool,
#: FC pair, hard-sigmoid and broadcast multiply each leave int8).
QFRIENDLY_TRUNK: dict[str, Any] = TRUNK_VARIANTS["small_qfriendly"]
#: Default percentile of the Percentile calibration method.
DEFAULT_PERCENTILE = 99.999


@dataclass(frozen=True)
class OrtQuantConfig:
    """Options of ONNX Runtime static quantization.

    Attributes:
        quant_format: ``'qdq'`` (QuantizeLinear/DequantizeLinear around float
            ops; ORT fuses them into int8 kernels at session creation) or
            ``'qoperator'`` (QLinearConv etc. written into the file).
        per_channel: per-output-channel weight scales (per-tensor otherwise).
        activation_type: ``'u8'`` or ``'s8'`` activations.
        weight_type: ``'s8'`` or ``'u8'`` weights.
        calibrate_method: ``'minmax'``, ``'entropy'`` or ``'percentile'``.
        percentile: the percentile of the ``'percentile'`` method.
        op_types: op types to quantize (None: every type ORT can quantize).
        exclude_op_types: op types whose nodes stay float (e.g. ``('HardSwish',)``).
        exclude_nodes: node names that stay float.
        exclude_kinds: layer kinds (:data:`mtmnv3.studies.quantization.layer_kinds.LAYER_KINDS`,
            e.g. ``'hard_swish'``, ``'se_multiply'``, ``'se_fc'``) whose nodes stay
            float; found by structure, so this also catches hard-swish that
            pre-processing decomposed into ``Mul(x, HardSigmoid(x))``.
        exclude_modules: module path prefixes (e.g. ``'heads.cls'``,
            ``'trunk.blocks.12'``) whose nodes stay float (from the exporter's
            recorded scopes).
        reduce_range: 7-bit weights (only for CPUs without VNNI, where u8s8 can saturate).
        preprocess: run ``quant_pre_process`` (symbolic shape inference + ONNX
            Runtime's basic graph optimisation) before quantizing.
        extra_options: passed to ``quantize_static`` as is (they win).
    """

    quant_format: str = "qdq"
    per_channel: bool = True
    activation_type: str = "u8"
    weight_type: str = "s8"
    calibrate_method: str = "minmax"
    percentile: float = DEFAULT_PERCENTILE
    op_types: tuple[str, ...] | None = None
    exclude_op_types: tuple[str, ...] = ()
    exclude_nodes: tuple[str, ...] = ()
    exclude_kinds: tuple[str, ...] = ()
    exclude_modules: tuple[str, ...] = ()
    reduce_range: bool = False
    preprocess: bool = True
    extra_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = (
            ("quant_format", self.quant_format, QUANT_FORMATS),
            ("activation_type", self.activation_type, QUANT_TYPES),
            ("weight_type", self.weight_type, QUANT_TYPES),
            ("calibrate_method", self.calibrate_method, CALIBRATION_METHODS),
        )
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {sorted(allowed)}, got {value!r}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile!r}")
        bad = [k for k in self.exclude_kinds if k not in LAYER_KINDS]
        if isinstance(self.exclude_kinds, str) or bad:
            raise ValueError(
                f"exclude_kinds must be layer kinds from {LAYER_KINDS}, got {self.exclude_kinds!r}"
            )
        for name in ("exclude_op_types", "exclude_nodes", "exclude_kinds", "exclude_modules"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"{name} must be a sequence of strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.op_types is not None:
            if isinstance(self.op_types, str) or not all(isinstance(v, str) for v in self.op_types):
                raise TypeError(f"op_types must be a sequence of strings or None, got {self.op_types!r}")
            object.__setattr__(self, "op_types", tuple(self.op_types))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the options."""
        d = asdict(self)
        d["extra_options"] = dict(self.extra_options)
        return d


#: Named recipes. ``'qdq'``: the textbook one (QDQ, per-channel s8 weights,
#: u8 activations, MinMax, every op). ``'fast'``: the recommended one on x86
#: with VNNI: the same kernels (so the same speed) with Percentile calibration
#: (it clips the rare outliers MinMax spends the 8 bits on, which raises the
#: per-layer SQNR), the classification head left float (a pool, one 1x1 conv
#: on a 1x1 map and an FC: no measurable cost, and near-tied logits of a weak
#: classifier flip under int8 noise), and the stem conv left float: a dense
#: 3x3 conv over 3 input channels, for which ONNX Runtime's int8 kernel is
#: slower than its fp32 one, so keeping it float raises the int8 speed-up
#: (``benchmarks/ort_op_profile.py`` measures both). ``'qoperator'``: the int8
#: operator format (same kernels after ORT's QDQ fusion; for comparison).
#: ``'per_tensor'``: one weight scale per tensor (no faster here; less accurate).
INT8_RECIPES: dict[str, OrtQuantConfig] = {
    "qdq": OrtQuantConfig(),
    "fast": OrtQuantConfig(calibrate_method="percentile", exclude_modules=("heads.cls", "trunk.blocks.0")),
    "qoperator": OrtQuantConfig(quant_format="qoperator"),
    "per_tensor": OrtQuantConfig(per_channel=False),
}


def with_config(config: OrtQuantConfig, **changes: Any) -> OrtQuantConfig:
    """A copy of ``config`` with fields changed (validated again)."""
    return replace(config, **changes)


# ---- ONNX Runtime static quantization ----------------------------------------------------------
def node_names_by_op_type(model: str | os.PathLike | onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """Names of the graph's nodes of the given op types (for ``nodes_to_exclude``)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    wanted = set(op_types)
    return [n.name for n in proto.graph.node if n.op_type in wanted]


def node_names_by_kind(model: str | os.PathLike | onnx.ModelProto, kinds: Iterable[str]) -> list[str]:
    """Names of the graph's nodes of the given layer kinds (see :func:`mtmnv3.studies.quantization.layer_kinds.onnx_layer_kind`)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    wanted = set(kinds)
    if not wanted:
        return []
    return [n.name for n, kind in graph_layer_kinds(proto) if kind in wanted]


def node_names_by_module(model: str | os.PathLike | onnx.ModelProto, prefixes: Iterable[str]) -> list[str]:
    """Names of the nodes whose source module path starts with one of ``prefixes`` (e.g. ``'heads.cls'``)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    wanted = tuple(prefixes)
    if not wanted:
        return []
    out = []
    for node in proto.graph.node:
        module = node_module(node)
        if any(module == p or module.startswith(p + ".") for p in wanted):
            out.append(node.name)
    return out


def _preprocess(src: Path, dst: Path) -> None:
    """Symbolic shape inference + ORT basic optimisation (folds constants, fuses Conv+BN...)."""
    quant_pre_process(str(src), str(dst), skip_symbolic_shape=False, skip_onnx_shape=False, auto_merge=True)


def _copy_metadata(source: onnx.ModelProto, target: onnx.ModelProto) -> None:
    """Carry the exporter's per-node metadata (module scopes) over pre-processing, by output name."""
    by_output = {o: n for n in source.graph.node for o in n.output}
    for node in target.graph.node:
        src = next((by_output[o] for o in node.output if o in by_output), None)
        if src is not None and not node.metadata_props:
            node.metadata_props.extend(src.metadata_props)


def _ensure_node_names(proto: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name (exclusion and SQNR work by node name)."""
    used = {n.name for n in proto.graph.node if n.name}
    for i, node in enumerate(proto.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def quantize_onnx(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    calibration: CalibrationDataReader | Iterable[np.ndarray | Tensor],
    config: OrtQuantConfig | None = None,
    preprocessed_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Static int8 quantization of an exported fp32 model with ONNX Runtime.

    Args:
        fp32_path: the fp32 ``.onnx`` (a sidecar next to it is copied for the
            int8 model, with its hash and a ``quantization`` entry).
        int8_path: where the int8 model goes (written atomically).
        calibration: a ``CalibrationDataReader`` or preprocessed float arrays
            ``(3, H, W)`` / ``(N, 3, H, W)`` (see :func:`calibration_arrays`).
        config: quantization options (default :class:`OrtQuantConfig`).
        preprocessed_path: also keep the fp32 graph the quantizer saw (after
            pre-processing and node naming) here: tensor names match the int8
            graph's, so it is the reference for :func:`~mtmnv3.studies.quantization.sqnr.ort_layer_sqnr`.

    Returns:
        A report: the options, excluded nodes, calibration size and
        :func:`quantized_graph_summary` of the result.

    Raises:
        FileNotFoundError: no fp32 model.
        ValueError: a bad option, or a node to exclude that is not in the graph.
    """
    config = config or OrtQuantConfig()
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if not fp32_path.is_file():
        raise FileNotFoundError(f"fp32 ONNX model not found: {fp32_path}")
    if isinstance(calibration, CalibrationDataReader):
        reader = calibration
    else:
        proto_in = onnx.load(str(fp32_path), load_external_data=False)
        reader = ArrayCalibrationReader(calibration, input_name=proto_in.graph.input[0].name)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".quant_") as tmp:
        tmp = Path(tmp)
        src = fp32_path
        if config.preprocess:
            src = tmp / "pre.onnx"
            _preprocess(fp32_path, src)
        proto = onnx.load(str(src))
        if config.preprocess:
            _copy_metadata(onnx.load(str(fp32_path), load_external_data=False), proto)
        _ensure_node_names(proto)
        names = {n.name for n in proto.graph.node}
        missing = [n for n in config.exclude_nodes if n not in names]
        if missing:
            raise ValueError(f"nodes to exclude not in the graph: {missing}")
        excluded = sorted(
            set(config.exclude_nodes)
            | set(node_names_by_op_type(proto, config.exclude_op_types))
            | set(node_names_by_kind(proto, config.exclude_kinds))
            | set(node_names_by_module(proto, config.exclude_modules))
        )
        src = tmp / "named.onnx"
        onnx.save(proto, str(src))
        if preprocessed_path is not None:
            shutil.copyfile(src, tmp / "ref.onnx")
            os.replace(tmp / "ref.onnx", preprocessed_path)
        extra = {"CalibPercentile": config.percentile} if config.calibrate_method == "percentile" else {}
        extra.update(config.extra_options)
        out_tmp = tmp / "int8.onnx"
        quantize_static(
            str(src),
            str(out_tmp),
            reader,
            quant_format=QUANT_FORMATS[config.quant_format],
            op_types_to_quantize=list(config.op_types) if config.op_types is not None else None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QUANT_TYPES[config.activation_type],
            weight_type=QUANT_TYPES[config.weight_type],
            nodes_to_exclude=excluded,
            calibrate_method=CALIBRATION_METHODS[config.calibrate_method],
            extra_options=extra,
        )
        os.replace(out_tmp, int8_path)
    summary = quantized_graph_summary(int8_path)
    report = dict(
        fp32=str(fp32_path),
        int8=str(int8_path),
        config=config.to_dict(),
        excluded_nodes=excluded,
        calibration_batches=len(reader) if hasattr(reader, "__len__") else None,
        summary=summary,
    )
    _write_int8_sidecar(fp32_path, int8_path, report)
    return report


def _write_int8_sidecar(fp32_path: Path, int8_path: Path, report: Mapping[str, Any]) -> None:
    """Copy the fp32 export's sidecar for the int8 file (new name, hash, quantization info)."""
    src = sidecar_path(fp32_path)
    if not src.is_file():
        return
    meta = json.loads(src.read_text(encoding="utf-8"))
    meta["file"] = int8_path.name
    meta["sha256"] = hashlib.sha256(int8_path.read_bytes()).hexdigest()
    meta["quantization"] = dict(
        method="onnxruntime.quantize_static",
        config=report["config"],
        excluded_nodes=list(report["excluded_nodes"]),
        source=fp32_path.name,
    )
    atomic_write_json(sidecar_path(int8_path), meta)


def quantized_graph_summary(path: str | os.PathLike | onnx.ModelProto) -> dict[str, Any]:
    """Op counts of a quantized graph and whether its weights are per-channel.

    Returns:
        ``{'op_counts': {op: n}, 'int8_ops': n, 'float_compute_ops': n,
        'per_channel_weights': n, 'per_tensor_weights': n}`` where the weight
        counts are the weight DequantizeLinear nodes (QDQ) or the weight
        scales of QLinearConv (QOperator) with more than one / exactly one scale.
    """
    proto = path if isinstance(path, onnx.ModelProto) else onnx.load(str(path))
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    counts = Counter(n.op_type for n in graph.node)
    per_channel = per_tensor = 0

    def n_scales(name: str) -> int | None:
        init = inits.get(name)
        return None if init is None else int(np.prod(init.dims)) if len(init.dims) else 1

    for node in graph.node:
        if (
            node.op_type == "DequantizeLinear"
            and node.input[0] in inits
            and inits[node.input[0]].data_type
            in (
                onnx.TensorProto.INT8,
                onnx.TensorProto.UINT8,
            )
        ):
            k = n_scales(node.input[1])
        elif node.op_type == "QLinearConv":
            k = n_scales(node.input[4])
        else:
            continue
        if k is None:
            continue
        if k > 1:
            per_channel += 1
        else:
            per_tensor += 1
    int8_ops = sum(
        v for k, v in counts.items() if k.startswith("QLinear") or k in ("ConvInteger", "MatMulInteger")
    )
    plumbing = {"QuantizeLinear", "DequantizeLinear", "Constant", "Reshape", "Shape"}
    float_ops = sum(v for k, v in counts.items() if k not in plumbing and not k.startswith("QLinear"))
    return dict(
        op_counts=dict(sorted(counts.items())),
        int8_ops=int8_ops,
        float_compute_ops=float_ops,
        quantize_nodes=counts.get("QuantizeLinear", 0),
        dequantize_nodes=counts.get("DequantizeLinear", 0),
        per_channel_weights=per_channel,
        per_tensor_weights=per_tensor,
    )
