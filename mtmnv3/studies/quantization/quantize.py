"""Int8 quantization of the multi-task model: ONNX Runtime PTQ, PT2E PTQ and QAT.

Two flows, both measured against their own fp32 baseline:

* **ONNX Runtime static PTQ** (:func:`quantize_onnx`): an exported fp32 model
  (:func:`mtmnv3.runtime.onnx_export.export_onnx`) is pre-processed (shape inference +
  graph optimisation), calibrated on real frames (:class:`ArrayCalibrationReader`
  over preprocessed float arrays, e.g. from :func:`calibration_arrays`) and
  quantized with per-channel int8 weights. Format (QDQ / QOperator), u8/s8
  types, calibration method, which op types are quantized and which nodes
  stay float are all options of :class:`OrtQuantConfig`. The int8 model gets
  its own sidecar, so :class:`~mtmnv3.runtime.ort_runtime.OrtMultiTaskRunner` runs it.
* **PT2E** (torchao): :func:`quantize_pt2e` (export -> ``prepare_pt2e`` with
  ``X86InductorQuantizer`` -> calibrate -> ``convert_pt2e``), and QAT with
  :func:`prepare_qat` / :func:`qat_finetune` / :func:`convert_qat`.

What makes int8 pay off on the CPU in ONNX Runtime (see ``INT8_RECIPES``):
the int8 kernels (QLinearConv, fused with its ReLU/Clip through the output
range) only win when tensors stay int8 from conv to conv. Every op that has
no int8 kernel (HardSwish, HardSigmoid, the SE multiply, ReduceMean) costs a
DequantizeLinear -> float op -> QuantizeLinear round trip, which on MobileNetV3
eats the whole gain. The q-friendly trunk (ReLU6 instead of hard-swish, no
SE: ``QFRIENDLY_TRUNK``) leaves only conv->conv chains, so the int8 graph is
QLinearConv end to end.

Evaluation (:func:`evaluate_raw_fn`) runs any "normalised images -> raw head
tensors" callable (an ORT session, a PT2E module) through the model's own
decode code and the config's ``val_evaluator`` metrics.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor, nn

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.core.profiling import interleaved_ratio, num_threads
from mtmnv3.runtime.onnx_export import INPUT_NAME, _HeadOutputsGraph, _output_layout, sidecar_path
from mtmnv3.runtime.ort_runtime import make_session

__all__ = [
    "CALIBRATION_METHODS",
    "QUANT_FORMATS",
    "QUANT_TYPES",
    "QFRIENDLY_TRUNK",
    "OrtQuantConfig",
    "INT8_RECIPES",
    "ArrayCalibrationReader",
    "calibration_arrays",
    "node_names_by_op_type",
    "node_names_by_kind",
    "node_names_by_module",
    "quantize_onnx",
    "quantized_graph_summary",
    "OrtRawFn",
    "LatencyRow",
    "compare_latency",
    "Pt2eGraph",
    "capture_for_pt2e",
    "quantize_pt2e",
    "prepare_qat",
    "qat_finetune",
    "convert_qat",
    "compile_quantized",
    "head_outputs_from_raw",
    "evaluate_raw_fn",
    "METHODS",
    "StudyOptions",
    "quantization_study",
    "study_markdown",
    "ort_timer",
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
#: here: ReLU6 wherever the paper has hard-swish (its range is bounded, so
#: the conv's output quantization absorbs it and Conv+Clip fuses into one
#: QLinearConv) and no SE (whose global pool, FC pair, hard-sigmoid and
#: broadcast multiply each leave int8). Same as the ``small_qfriendly`` variant.
QFRIENDLY_TRUNK: dict[str, Any] = dict(arch="small", se="none", activation="relu6")
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
        exclude_kinds: layer kinds (:data:`mtmnv3.studies.quantization.sqnr.LAYER_KINDS`,
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
        from mtmnv3.studies.quantization.sqnr import LAYER_KINDS

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
#: u8 activations, MinMax, every op). ``'fast'``: the recommended one, measured
#: on x86 with VNNI: the same kernels (so the same speed) with Percentile
#: calibration (clips the rare outliers MinMax spends the 8 bits on: +1.5 dB
#: per layer) and the classification head left float (a pool, one 1x1 conv
#: on a 1x1 map and an FC: no measurable cost, and near-tied logits of a weak
#: classifier flip under int8 noise), and the stem conv left float: a dense
#: 3x3 conv over 3 input channels, which ONNX Runtime's int8 kernel ran 2.3x
#: slower than its fp32 one (``benchmarks/ort_op_profile.py``; keeping it
#: float took the quantization-friendly model from 1.19x to 1.42x at 160 px,
#: 1 thread). ``'qoperator'``: the int8 operator
#: format (same kernels after ORT's QDQ fusion; for comparison).
#: ``'per_tensor'``: one weight scale per tensor (no faster here; less accurate).
INT8_RECIPES: dict[str, OrtQuantConfig] = {
    "qdq": OrtQuantConfig(),
    "fast": OrtQuantConfig(calibrate_method="percentile", exclude_modules=("heads.cls", "trunk.blocks.0")),
    "qoperator": OrtQuantConfig(quant_format="qoperator"),
    "per_tensor": OrtQuantConfig(per_channel=False),
}


# ---- calibration data ------------------------------------------------------------------
class ArrayCalibrationReader(CalibrationDataReader):
    """Calibration data for ``quantize_static`` from preprocessed float arrays.

    Args:
        arrays: normalised images, each ``(3, H, W)`` or ``(N, 3, H, W)``
            float32 (what the exported graph takes). Any iterable; it is
            materialised once so the reader can be rewound.
        input_name: the graph input to feed.
        batch_size: images per calibration step (must match a fixed-batch
            export; 1 for the default export).

    Raises:
        ValueError: no arrays, or an array of the wrong rank.
    """

    def __init__(
        self, arrays: Iterable[np.ndarray | Tensor], input_name: str = INPUT_NAME, batch_size: int = 1
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        images: list[np.ndarray] = []
        for a in arrays:
            a = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
            if a.ndim == 3:
                a = a[None]
            if a.ndim != 4 or a.shape[1] != 3:
                raise ValueError(f"calibration arrays must be (3, H, W) or (N, 3, H, W), got shape {a.shape}")
            images.extend(np.ascontiguousarray(a, dtype=np.float32)[i] for i in range(len(a)))
        if not images:
            raise ValueError("no calibration arrays given")
        self.input_name = input_name
        self.batches = [np.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        if len(self.batches) > 1 and len(self.batches[-1]) != batch_size:
            self.batches.pop()  # a fixed-batch graph cannot take a short last batch
        self._it: Iterator[np.ndarray] = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._it = iter(self.batches)


def _data_cfg(cfg: Any, split: str) -> dict[str, Any]:
    key = {"train": "train_dataloader", "val": "val_dataloader", "test": "test_dataloader"}.get(split)
    if key is None:
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if key not in cfg or "dataset" not in cfg[key]:
        raise ValueError(f"the config has no {key}.dataset")
    return copy.deepcopy(cfg[key].to_dict() if hasattr(cfg[key], "to_dict") else dict(cfg[key]))


def _eval_pipeline(cfg: Any) -> list[dict[str, Any]]:
    """The config's deterministic test pipeline (Letterbox + pack)."""
    loader = cfg.get("val_dataloader") or cfg.get("test_dataloader")
    if loader is None:
        raise ValueError("the config has no val_dataloader or test_dataloader to take a test pipeline from")
    return copy.deepcopy(list(loader["dataset"]["pipeline"]))


def _build_loader(cfg: Any, split: str, shuffle: bool, seed: int, batch_size: int) -> Any:
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mtmnv3.engine import dataset_parts

    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    loader = _data_cfg(cfg, split)
    for part in dataset_parts(loader["dataset"]):
        part["pipeline"] = _eval_pipeline(cfg)
    loader.update(
        batch_size=batch_size,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type="DefaultSampler", shuffle=shuffle, seed=seed),
    )
    return Runner.build_dataloader(loader, seed=seed)


@torch.no_grad()
def calibration_arrays(
    cfg: Any, model: nn.Module, num_samples: int = 64, split: str = "train", seed: int = 0
) -> list[np.ndarray]:
    """Real calibration frames: ``num_samples`` images of a config's split, preprocessed.

    Frames go through the config's *test* pipeline (letterbox, no augmentation)
    and the model's data preprocessor, i.e. exactly what the exported graph
    takes; they are sampled at random (seeded) from the split.

    Args:
        cfg: a loaded mmengine config (``mtmnv3.engine.load_config``).
        model: the model whose ``data_preprocessor`` normalises the frames.
        num_samples: how many images.
        split: ``'train'`` (default: calibration must not see the evaluation data), ``'val'`` or ``'test'``.
        seed: sampling seed.

    Returns:
        ``num_samples`` float32 arrays of shape ``(1, 3, H, W)``.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
    loader = _build_loader(cfg, split, shuffle=True, seed=seed, batch_size=1)
    out: list[np.ndarray] = []
    for data in loader:
        inputs = model.data_preprocessor(data, False)["inputs"]
        out.append(inputs.float().numpy())
        if len(out) >= num_samples:
            break
    return out


# ---- ONNX Runtime static quantization ----------------------------------------------------------
def node_names_by_op_type(model: str | os.PathLike | onnx.ModelProto, op_types: Iterable[str]) -> list[str]:
    """Names of the graph's nodes of the given op types (for ``nodes_to_exclude``)."""
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    wanted = set(op_types)
    return [n.name for n in proto.graph.node if n.op_type in wanted]


def node_names_by_kind(model: str | os.PathLike | onnx.ModelProto, kinds: Iterable[str]) -> list[str]:
    """Names of the graph's nodes of the given layer kinds (see :func:`mtmnv3.studies.quantization.sqnr.onnx_layer_kind`)."""
    from mtmnv3.studies.quantization.sqnr import graph_layer_kinds

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    wanted = set(kinds)
    if not wanted:
        return []
    return [n.name for n, kind in graph_layer_kinds(proto) if kind in wanted]


def node_names_by_module(model: str | os.PathLike | onnx.ModelProto, prefixes: Iterable[str]) -> list[str]:
    """Names of the nodes whose source module path starts with one of ``prefixes`` (e.g. ``'heads.cls'``)."""
    from mtmnv3.studies.quantization.sqnr import node_module

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


# ---- running and timing ------------------------------------------------------------------
class OrtRawFn:
    """An ONNX Runtime session as ``(N, 3, H, W) images -> tuple of raw output tensors``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads.
        optimization: graph optimisation level name of ``onnxruntime.GraphOptimizationLevel``
            (default all; ``'ORT_DISABLE_ALL'`` gives the unfused QDQ reference numerics).
    """

    def __init__(
        self, path: str | os.PathLike, threads: int = 1, optimization: str = "ORT_ENABLE_ALL"
    ) -> None:
        import onnxruntime as ort

        if optimization == "ORT_ENABLE_ALL":
            # back-to-back timing, as the fp32/int8 speed-ups were measured: ORT's spinning default
            self.session = make_session(path, threads, allow_spinning=True)
        else:
            level = getattr(ort.GraphOptimizationLevel, optimization, None)
            if level is None:
                raise ValueError(f"unknown graph optimisation level {optimization!r}")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = level
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def run_numpy(self, images: np.ndarray) -> list[np.ndarray]:
        """Float32 images -> the outputs as numpy arrays."""
        return self.session.run(
            self.output_names, {self.input_name: np.ascontiguousarray(images, np.float32)}
        )

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        x = images.detach().float().cpu().numpy()
        step = self.fixed_batch or len(x)
        parts = [self.run_numpy(x[i : i + step]) for i in range(0, len(x), step)]
        return tuple(torch.from_numpy(np.concatenate(p)) for p in zip(*parts))


@dataclass(frozen=True)
class LatencyRow:
    """fp32 vs int8 latency at one thread count, measured interleaved in one run.

    Attributes:
        name: what was measured (e.g. the variant and the backend).
        threads: intra-op threads.
        fp32_ms: median fp32 latency per call.
        int8_ms: median int8 latency per call.
        speedup: ``fp32_ms / int8_ms`` (from the interleaved ratio).
        repeats: how many interleaved ratio measurements were taken.
        speedup_spread: ``(min, max)`` of the repeated speed-ups.
        speedup_of_min: ratio of the fastest calls (``min fp32 / min int8``):
            the least disturbed estimate when other jobs share the cores.
    """

    name: str
    threads: int
    fp32_ms: float
    int8_ms: float
    speedup: float
    repeats: int
    speedup_spread: tuple[float, float]
    speedup_of_min: float


def compare_latency(
    fp32_fn: Callable[[int], Callable[[], object]],
    int8_fn: Callable[[int], Callable[[], object]],
    threads: Sequence[int] = (1, 2),
    name: str = "",
    repeats: int = 3,
    rounds: int = 10,
    inner: int = 5,
) -> list[LatencyRow]:
    """Interleaved fp32 vs int8 latency at each thread count, repeated.

    Args:
        fp32_fn: ``threads -> zero-argument callable`` running one fp32 inference.
        int8_fn: the same for int8.
        threads: thread counts to measure.
        name: label of the rows.
        repeats: independent interleaved measurements per thread count; the
            reported speed-up is their median (shared machines drift).
        rounds, inner: :func:`~mtmnv3.core.profiling.interleaved_ratio` arguments.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    rows = []
    for t in threads:
        f32, i8 = fp32_fn(t), int8_fn(t)
        ratios, f_times, q_times, f_min, q_min = [], [], [], [], []
        with num_threads(t):
            for _ in range(repeats):
                ratio, tq, tf = interleaved_ratio(i8, f32, rounds=rounds, inner=inner)
                ratios.append(1.0 / ratio)
                q_times.append(tq.median_ms)
                f_times.append(tf.median_ms)
                q_min.append(tq.min_ms)
                f_min.append(tf.min_ms)
        rows.append(
            LatencyRow(
                name=name,
                threads=int(t),
                fp32_ms=float(np.median(f_times)),
                int8_ms=float(np.median(q_times)),
                speedup=float(np.median(ratios)),
                repeats=repeats,
                speedup_spread=(float(min(ratios)), float(max(ratios))),
                speedup_of_min=float(min(f_min) / min(q_min)),
            )
        )
    return rows


def ort_timer(path: str | os.PathLike, example: np.ndarray) -> Callable[[int], Callable[[], object]]:
    """``threads -> callable`` running one ORT inference of ``path`` on ``example``."""

    def make(threads: int) -> Callable[[], object]:
        fn = OrtRawFn(path, threads)
        return lambda: fn.run_numpy(example)

    return make


# ---- PT2E (torchao) ----------------------------------------------------------------------------
@dataclass
class Pt2eGraph:
    """A captured (and possibly quantized) model: images -> raw head tensors in ``layout`` order.

    Attributes:
        module: the ``torch.fx.GraphModule``.
        layout: output names and heads (as in the ONNX export's sidecar).
        example: the example input it was captured with, ``(N, 3, H, W)``.
    """

    module: torch.fx.GraphModule
    layout: list[dict[str, Any]]
    example: Tensor

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.module(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _heads(model: nn.Module, heads: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(model.heads) if heads is None else tuple(heads)
    unknown = [h for h in names if h not in model.heads]
    if not names or unknown:
        raise ValueError(f"unknown heads {unknown or list(names)}; the model's heads are {list(model.heads)}")
    return names


def capture_for_pt2e(
    model: nn.Module,
    example: Tensor,
    heads: Sequence[str] | None = None,
    train: bool = False,
    dynamic_batch: bool = False,
) -> Pt2eGraph:
    """``torch.export`` the model's raw head outputs for PT2E quantization.

    Args:
        model: a MultiTaskPerceptor (not modified; a copy is captured).
        example: a normalised ``(N, 3, H, W)`` input.
        heads: head names (default all).
        train: capture in training mode (QAT needs the BatchNorm training ops).
        dynamic_batch: leave the batch dimension symbolic (QAT trains on
            batches and evaluates on single frames); a batch-1 example is
            repeated, since torch.export specialises size-1 dimensions.
    """
    names = _heads(model, heads)
    model = copy.deepcopy(model).train(train)
    # The layout in the captured mode: a head may return more in training (the
    # classification head's tap, for its object loss). Probed on a throwaway
    # copy, so training-mode BatchNorm does not touch the captured statistics.
    with torch.no_grad():
        layout = _output_layout(copy.deepcopy(model).head_outputs(example, names), names)
    graph = _HeadOutputsGraph(model, names, layout).train(train)
    dynamic_shapes = None
    if dynamic_batch:
        if len(example) == 1:
            example = example.repeat(2, 1, 1, 1)
        dynamic_shapes = ({0: torch.export.Dim.AUTO},)
    exported = torch.export.export(graph, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    return Pt2eGraph(exported.module(), layout, example)


def _x86_quantizer(is_qat: bool, reduce_range: bool = False) -> Any:
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer()
    quantizer.set_global(
        get_default_x86_inductor_quantization_config(is_qat=is_qat, reduce_range=reduce_range)
    )
    return quantizer


def _as_tensor_batches(batches: Iterable[np.ndarray | Tensor]) -> Iterator[Tensor]:
    for b in batches:
        t = torch.from_numpy(np.asarray(b)) if not isinstance(b, Tensor) else b
        yield t[None] if t.ndim == 3 else t


@torch.no_grad()
def quantize_pt2e(
    model: nn.Module,
    calibration: Iterable[np.ndarray | Tensor],
    heads: Sequence[str] | None = None,
    quantizer: Any = None,
) -> Pt2eGraph:
    """Post-training static int8 quantization with torchao PT2E.

    Steps: export -> ``prepare_pt2e`` (X86InductorQuantizer: per-channel s8
    weights, u8 activations; conv+bn folded) -> run the calibration batches
    through the observers -> ``convert_pt2e`` (Q/DQ reference graph).

    Args:
        model: the fp32 MultiTaskPerceptor.
        calibration: normalised images ``(3, H, W)`` or ``(N, 3, H, W)``; the
            first one is also the export example.
        heads: head names (default all).
        quantizer: a torchao ``Quantizer`` (default X86InductorQuantizer).

    Returns:
        The converted graph (eval mode); ``torch.compile`` it to get int8 kernels
        (:func:`compile_quantized`).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = list(_as_tensor_batches(calibration))
    if not batches:
        raise ValueError("no calibration batches given")
    captured = capture_for_pt2e(model, batches[0][:1], heads)
    prepared = prepare_pt2e(captured.module, quantizer or _x86_quantizer(is_qat=False))
    for b in batches:
        for i in range(len(b)):
            prepared(b[i : i + 1].float())
    converted = convert_pt2e(prepared)
    return Pt2eGraph(converted, captured.layout, captured.example)


def prepare_qat(
    model: nn.Module, example: Tensor, heads: Sequence[str] | None = None, quantizer: Any = None
) -> Pt2eGraph:
    """Capture in training mode and insert fake-quant modules (``prepare_qat_pt2e``).

    The result trains like a module: call it on batches, back-propagate a loss
    of its outputs (:func:`qat_finetune`), then :func:`convert_qat`.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    captured = capture_for_pt2e(model, example, heads, train=True, dynamic_batch=True)
    prepared = prepare_qat_pt2e(captured.module, quantizer or _x86_quantizer(is_qat=True))
    return Pt2eGraph(prepared, captured.layout, captured.example)


def head_outputs_from_raw(raw: Sequence[Tensor], layout: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Raw tensors in ``layout`` order -> ``{head: Tensor | {key: Tensor}}`` (what heads' loss/predict take)."""
    if len(raw) != len(layout):
        raise ValueError(f"got {len(raw)} raw outputs for a layout of {len(layout)}")
    out: dict[str, Any] = {}
    for t, o in zip(raw, layout):
        if o["key"] is None:
            out[o["head"]] = t
        else:
            out.setdefault(o["head"], {})[o["key"]] = t
    return out


def qat_finetune(
    qat: Pt2eGraph,
    batches: Iterable[Any],
    loss_fn: Callable[[dict[str, Any], Any], Tensor],
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-4,
    freeze_bn_after: int | None = None,
    images_of: Callable[[Any], Tensor] | None = None,
) -> list[float]:
    """A short quantization-aware fine-tuning loop.

    Args:
        qat: from :func:`prepare_qat`.
        batches: an iterable of batches (cycled until ``steps``).
        loss_fn: ``(head outputs {head: tensor | {key: tensor}}, batch) -> scalar loss``;
            e.g. built from the model's heads' ``loss`` (see the CLI).
        steps: optimisation steps.
        optimizer: default SGD(momentum 0.9, ``lr``) over the graph's parameters.
        lr: learning rate of the default optimizer.
        freeze_bn_after: after this many steps BatchNorm statistics stop updating
            (the usual QAT schedule); None never.
        images_of: ``batch -> normalised images`` (default: the batch itself, or ``batch['inputs']``).

    Returns:
        The loss of each step.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    module = qat.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = optimizer or torch.optim.SGD(params, lr=lr, momentum=0.9)
    images_of = images_of or (lambda b: b["inputs"] if isinstance(b, Mapping) else b)
    move_exported_model_to_train(module)
    losses: list[float] = []
    source = iter(())
    batches_list = batches if isinstance(batches, Sequence) else None
    while len(losses) < steps:
        batch = next(source, None)
        if batch is None:
            source = iter(batches_list if batches_list is not None else batches)
            batch = next(source, None)
            if batch is None:
                raise ValueError("no fine-tuning batches given")
        if freeze_bn_after is not None and len(losses) == freeze_bn_after:
            move_exported_model_to_eval(module)  # BN statistics frozen; fake-quant keeps training
        outputs = head_outputs_from_raw(qat(images_of(batch)), qat.layout)
        loss = loss_fn(outputs, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite QAT loss {loss.item()} at step {len(losses) + 1}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    move_exported_model_to_eval(module)
    return losses


def convert_qat(qat: Pt2eGraph) -> Pt2eGraph:
    """Fine-tuned fake-quant graph -> converted int8 (Q/DQ) graph in eval mode."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    module = move_exported_model_to_eval(qat.module)
    return Pt2eGraph(convert_pt2e(module), qat.layout, qat.example)


def compile_quantized(graph: Pt2eGraph) -> tuple[Callable[[Tensor], tuple[Tensor, ...]] | None, str | None]:
    """``torch.compile`` a converted PT2E graph (Inductor lowers Q/DQ patterns to int8 kernels).

    Returns:
        ``(compiled callable, None)``, or ``(None, reason)`` when compilation
        fails on this machine (e.g. no C++ compiler for Inductor).
    """
    try:
        import torch._inductor.config as inductor_config

        # Freezing folds the int8 weights into constants, which the x86 int8 conv lowering needs.
        compiled = torch.compile(graph.module)
        with torch.no_grad(), inductor_config.patch(freezing=True):
            compiled(graph.example)
    except Exception as e:  # noqa: BLE001 - any backend failure means "not available here"
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    def run(images: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad(), inductor_config.patch(freezing=True):
            out = compiled(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return run, None


# ---- evaluation ------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_raw_fn(
    raw_fn: Callable[[Tensor], Sequence[Tensor]],
    model: nn.Module,
    layout: Sequence[Mapping[str, Any]],
    cfg: Any,
    split: str = "val",
    max_samples: int | None = None,
    batch_size: int = 1,
) -> dict[str, float]:
    """Task metrics of a raw-output function on a config's split, with the model's own decode.

    Args:
        raw_fn: normalised ``(N, 3, H, W)`` -> raw tensors in ``layout`` order
            (an :class:`OrtRawFn`, a :class:`Pt2eGraph`, ...).
        model: the MultiTaskPerceptor (its data preprocessor and heads' ``predict``).
        layout: output layout (sidecar ``outputs`` or ``Pt2eGraph.layout``).
        cfg: the loaded config; its ``val_evaluator`` (or ``test_evaluator``) metrics are used.
        split: ``'val'`` or ``'test'``.
        max_samples: evaluate only the first ones (None: all).
        batch_size: images per call of ``raw_fn``.

    Returns:
        ``{metric name: value}`` as the evaluator reports it.
    """
    from mmengine.evaluator import Evaluator

    from mtmnv3.core.registry import METRICS

    ev_cfg = cfg.get("val_evaluator") if split == "val" else cfg.get("test_evaluator")
    if ev_cfg is None:
        raise ValueError(f"the config has no {split}_evaluator")
    ev_list = ev_cfg if isinstance(ev_cfg, (list, tuple)) else [ev_cfg]
    evaluator = Evaluator([METRICS.build(copy.deepcopy(dict(c))) for c in ev_list])
    loader = _build_loader(cfg, split, shuffle=False, seed=0, batch_size=batch_size)
    heads_in_layout = list(dict.fromkeys(o["head"] for o in layout))
    order = model.predict_order(heads_in_layout)
    seen = 0
    for data in loader:
        pre = model.data_preprocessor(data, False)
        outputs = head_outputs_from_raw(raw_fn(pre["inputs"].float()), layout)
        samples = pre["data_samples"]
        for n in order:
            model.heads[n].predict(outputs[n], samples)
        evaluator.process(data_samples=samples, data_batch=data)
        seen += len(samples)
        if max_samples is not None and seen >= max_samples:
            break
    return {k: float(v) for k, v in evaluator.evaluate(seen).items()}


def with_config(config: OrtQuantConfig, **changes: Any) -> OrtQuantConfig:
    """A copy of ``config`` with fields changed (validated again)."""
    return replace(config, **changes)


# ---- the end-to-end study (what tools/quantize.py runs) ---------------------------------------------
#: Study methods of :func:`quantization_study`.
METHODS = ("ort-static", "pt2e", "qat")


@dataclass
class StudyOptions:
    """Options of :func:`quantization_study` (the CLI's flags).

    Attributes:
        method: ``'ort-static'``, ``'pt2e'`` or ``'qat'``.
        size: square input size (None: the config's letterbox size from the first calibration frame).
        calib_samples: calibration frames from the training split.
        threads: thread counts for the latency comparison.
        ort_config: ONNX Runtime quantization options (``ort-static``).
        sqnr_samples: frames for the per-layer SQNR table.
        eval_samples: validation frames for the task metrics (None: all).
        latency_repeats: interleaved measurements per thread count.
        qat_steps: fine-tuning steps (``qat``).
        qat_batch: images per QAT step.
        qat_lr: QAT learning rate.
        compile: ``torch.compile`` the PT2E/QAT int8 graph for latency.
    """

    method: str = "ort-static"
    size: int | None = None
    calib_samples: int = 64
    threads: tuple[int, ...] = (1, 2)
    ort_config: OrtQuantConfig = field(default_factory=lambda: INT8_RECIPES["fast"])
    sqnr_samples: int = 8
    eval_samples: int | None = None
    latency_repeats: int = 3
    qat_steps: int = 50
    qat_batch: int = 8
    qat_lr: float = 1e-4
    compile: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("calib_samples", "sqnr_samples", "latency_repeats", "qat_steps", "qat_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.threads or any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise ValueError(f"threads must be positive ints, got {self.threads!r}")


def _loss_fn(model: nn.Module) -> Callable[[dict[str, Any], Any], Tensor]:
    """QAT loss: the sum of every head's losses (the model's ``task_losses`` terms)."""

    def loss(outputs: dict[str, Any], batch: Mapping[str, Any]) -> Tensor:
        samples = batch["data_samples"]
        return sum(sum(model.heads[n].loss(outputs[n], samples).values()) for n in outputs)

    return loss


def _train_batches(
    cfg: Any, model: nn.Module, n_steps: int, batch_size: int, seed: int = 0
) -> list[dict[str, Any]]:
    loader = _build_loader(cfg, "train", shuffle=True, seed=seed, batch_size=batch_size)
    out = []
    for data in loader:
        pre = model.data_preprocessor(data, True)
        out.append(dict(inputs=pre["inputs"].float(), data_samples=pre["data_samples"]))
        if len(out) >= n_steps:
            break
    return out


def _latency_rows_dict(rows: Sequence[LatencyRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def quantization_study(
    model: nn.Module,
    cfg: Any,
    out_dir: str | os.PathLike,
    options: StudyOptions,
    evaluate: bool = True,
    name: str = "model",
) -> dict[str, Any]:
    """Quantize ``model``, then measure int8 against fp32: latency, per-layer SQNR, task metrics.

    ``ort-static``: export fp32 ONNX -> :func:`quantize_onnx` -> ORT latency
    (fp32 vs int8, interleaved) -> :func:`~mtmnv3.studies.quantization.sqnr.ort_layer_sqnr`
    (on a QDQ model) -> metrics of both ORT models. ``pt2e`` / ``qat``: torchao
    flow; latency of the fp32 exported graph vs the int8 graph (compiled with
    Inductor when that works here), SQNR from the graphs, metrics of both.

    Args:
        model: the fp32 MultiTaskPerceptor (eval mode).
        cfg: its loaded config (calibration from the train split, metrics on val).
        out_dir: where the ONNX files go.
        options: see :class:`StudyOptions`.
        evaluate: compute task metrics (needs the config's val data).
        name: file name stem.

    Returns:
        A JSON-ready results dict (see the CLI's output).
    """
    from mtmnv3.runtime.onnx_export import export_onnx
    from mtmnv3.studies.quantization.sqnr import ort_layer_sqnr, pt2e_layer_sqnr, sqnr_by_kind

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    calib = calibration_arrays(cfg, model, options.calib_samples, split="train")
    size = options.size or int(calib[0].shape[-1])
    if calib[0].shape[-2:] != (size, size):
        raise ValueError(
            f"--size {size} differs from the config's letterbox size {tuple(calib[0].shape[-2:])}; "
            "calibration and evaluation frames come from the config's pipeline"
        )
    example = calib[0]
    sqnr_inputs = calib[: options.sqnr_samples]
    results: dict[str, Any] = dict(method=options.method, size=size, calib_samples=len(calib), name=name)
    fp32_path = out_dir / f"{name}.fp32.onnx"
    meta = export_onnx(model, fp32_path, input_size=size)
    layout = meta["outputs"]

    if options.method == "ort-static":
        int8_path = out_dir / f"{name}.int8.onnx"
        ref_path = out_dir / f"{name}.fp32.pre.onnx"
        report = quantize_onnx(fp32_path, int8_path, calib, options.ort_config, preprocessed_path=ref_path)
        results["quantization"] = report
        rows = compare_latency(
            ort_timer(fp32_path, example),
            ort_timer(int8_path, example),
            options.threads,
            name=f"{name} ORT",
            repeats=options.latency_repeats,
        )
        qdq_path = int8_path
        if options.ort_config.quant_format != "qdq":
            qdq_path = out_dir / f"{name}.int8.qdq.onnx"
            quantize_onnx(fp32_path, qdq_path, calib, with_config(options.ort_config, quant_format="qdq"))
        sqnr_rows = ort_layer_sqnr(ref_path, qdq_path, sqnr_inputs)
        fp32_fn: Callable[[Tensor], Sequence[Tensor]] = OrtRawFn(fp32_path)
        int8_fn: Callable[[Tensor], Sequence[Tensor]] = OrtRawFn(int8_path)
    else:
        if options.method == "pt2e":
            graph = quantize_pt2e(model, calib)
        else:
            batches = _train_batches(cfg, model, options.qat_steps, options.qat_batch)
            qat = prepare_qat(model, batches[0]["inputs"].contiguous())
            losses = qat_finetune(qat, batches, _loss_fn(model), options.qat_steps, lr=options.qat_lr)
            results["qat"] = dict(
                steps=options.qat_steps, batch=options.qat_batch, first_loss=losses[0], last_loss=losses[-1]
            )
            graph = convert_qat(qat)
        reference = capture_for_pt2e(model, torch.from_numpy(example))
        sqnr_rows = pt2e_layer_sqnr(
            reference.module, graph.module, [torch.from_numpy(a) for a in sqnr_inputs]
        )
        compiled, reason = compile_quantized(graph) if options.compile else (None, "not requested")
        results["compile"] = dict(ok=compiled is not None, error=reason)
        ex = torch.from_numpy(example)
        fp32_compiled = None
        if compiled is not None:
            fp32_compiled, _ = compile_quantized(reference)
        fp32_run = fp32_compiled or reference
        int8_run = compiled or graph

        def timer(fn: Callable[[Tensor], Any]) -> Callable[[int], Callable[[], object]]:
            def make(threads: int) -> Callable[[], object]:
                def run() -> object:
                    with torch.no_grad():
                        return fn(ex)

                return run

            return make

        rows = compare_latency(
            timer(fp32_run),
            timer(int8_run),
            options.threads,
            name=f"{name} torch{' compiled' if compiled else ' eager'}",
            repeats=options.latency_repeats,
        )
        fp32_fn, int8_fn = reference, graph
        layout = graph.layout
    results["latency"] = _latency_rows_dict(rows)
    results["sqnr"] = dict(by_kind=sqnr_by_kind(sqnr_rows), layers=[r.to_dict() for r in sqnr_rows])
    results["sqnr_rows"] = sqnr_rows
    if evaluate:
        m32 = evaluate_raw_fn(fp32_fn, model, layout, cfg, max_samples=options.eval_samples)
        m8 = evaluate_raw_fn(int8_fn, model, layout, cfg, max_samples=options.eval_samples)
        results["metrics"] = dict(fp32=m32, int8=m8, drop={k: m32[k] - m8[k] for k in m32 if k in m8})
    return results


def study_markdown(results: Mapping[str, Any], sqnr_worst: int = 15) -> str:
    """Markdown report of :func:`quantization_study` results."""
    from mtmnv3.core.profiling import format_table
    from mtmnv3.studies.quantization.sqnr import sqnr_markdown

    parts = [f"# int8 study: {results['name']} ({results['method']}, {results['size']}x{results['size']})"]
    parts.append(
        format_table(
            ["threads", "fp32 ms", "int8 ms", "speed-up", "speed-up range", "speed-up of fastest calls"],
            [
                [
                    r["threads"],
                    r["fp32_ms"],
                    r["int8_ms"],
                    r["speedup"],
                    f"{r['speedup_spread'][0]:.2f}-{r['speedup_spread'][1]:.2f}",
                    r["speedup_of_min"],
                ]
                for r in results["latency"]
            ],
        )
    )
    if "metrics" in results:
        m = results["metrics"]
        parts.append(
            format_table(
                ["metric", "fp32", "int8", "drop (points)"],
                [[k, m["fp32"][k], m["int8"][k], 100.0 * m["drop"][k]] for k in m["drop"]],
            )
        )
    if "sqnr_rows" in results:
        parts.append("## Per-layer SQNR\n\n" + sqnr_markdown(results["sqnr_rows"], worst=sqnr_worst))
    return "\n\n".join(parts) + "\n"
