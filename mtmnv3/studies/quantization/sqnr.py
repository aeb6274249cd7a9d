"""Per-layer quantization error: SQNR of every layer's output, fp32 vs int8.

``SQNR = 10 * log10(||x||^2 / ||x - q(x)||^2)`` in dB, with ``x`` a layer's fp32
output and ``q(x)`` the same layer's output in the quantized model (both run
on the same input, so errors accumulate along the network as they do in
deployment). Sums run over all the samples given, so one number per layer.
Every int8 bit is worth about 6 dB: ~40 dB is a lossless-looking layer, below
~20 dB the layer is losing precision.

Two sources:

* :func:`ort_layer_sqnr`: an fp32 ONNX model and its QDQ int8 version
  (:func:`mtmnv3.studies.quantization.quantize.quantize_onnx`). Every node output of the
  fp32 graph becomes a graph output; in the int8 graph the value compared is
  what the int8 network carries, ``DequantizeLinear(QuantizeLinear(x))``
  where the output is quantized (the float value where it stays float). Both
  run with graph optimisations off, which for QDQ is the exact
  quantization simulation ORT's fused int8 kernels implement.
* :func:`pt2e_layer_sqnr`: an fp32 module and its torchao PT2E graph
  (fake-quant or converted), compared node by node at every conv / activation
  / multiply whose source module both graphs record.

Rows are tagged by layer kind
(:data:`~mtmnv3.studies.quantization.layer_kinds.LAYER_KINDS`) so the table points at
where MobileNetV3 loses precision (hard-swish, the SE multiply, ...).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from mtmnv3.core.profiling import format_table
from mtmnv3.studies.quantization.layer_kinds import (
    LAYER_KINDS,
    conv_groups,
    graph_maps,
    layer_kind,
    node_module,
)

__all__ = [
    "LayerSQNR",
    "sqnr_db",
    "SQNRAccumulator",
    "ort_layer_sqnr",
    "pt2e_layer_sqnr",
    "sqnr_by_kind",
    "sqnr_markdown",
]

#: SQNR (dB) below which a layer is flagged as losing precision (~3.3 effective bits).
LOW_SQNR_DB = 20.0
#: Op types compared by default (layers with their own arithmetic; Q/DQ and shape ops are skipped).
COMPARED_OP_TYPES = (
    "Conv",
    "HardSwish",
    "HardSigmoid",
    "Relu",
    "Clip",
    "Mul",
    "Add",
    "ReduceMean",
    "GlobalAveragePool",
    "Gemm",
    "MatMul",
    "Resize",
)


def sqnr_db(reference: np.ndarray | Tensor, test: np.ndarray | Tensor) -> float:
    """SQNR of ``test`` against ``reference`` in dB: ``10 log10(||ref||^2 / ||ref - test||^2)``.

    Returns ``inf`` for identical tensors and ``-inf`` for a zero reference
    with a non-zero error.

    Raises:
        ValueError: the shapes differ.
    """
    ref = _np(reference).astype(np.float64)
    got = _np(test).astype(np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"shapes differ: reference {ref.shape} vs test {got.shape}")
    acc = SQNRAccumulator()
    acc.add(ref, got)
    return acc.db


def _np(x: np.ndarray | Tensor) -> np.ndarray:
    return x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x)


class SQNRAccumulator:
    """Signal and noise energies summed over several samples of one layer."""

    def __init__(self) -> None:
        self.signal = 0.0
        self.noise = 0.0

    def add(self, reference: np.ndarray, test: np.ndarray) -> None:
        """Add one sample's ``||ref||^2`` and ``||ref - test||^2``."""
        ref = np.asarray(reference, np.float64)
        diff = ref - np.asarray(test, np.float64)
        self.signal += float(np.vdot(ref, ref))
        self.noise += float(np.vdot(diff, diff))

    @property
    def db(self) -> float:
        """The SQNR in dB of what was added."""
        if self.noise == 0.0:
            return math.inf
        if self.signal == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.noise)


@dataclass(frozen=True)
class LayerSQNR:
    """One row of the per-layer table.

    Attributes:
        name: the tensor / node name in the graph.
        kind: one of :data:`LAYER_KINDS`.
        module: the source module path (e.g. ``trunk.blocks.4.block.2.fc1``), '' if unknown.
        op_type: the ONNX op type or aten op.
        sqnr_db: SQNR over all samples.
        shape: the output shape (of one sample batch).
        quantized: whether the int8 graph quantizes this output (False: it stays float there).
    """

    name: str
    kind: str
    module: str
    op_type: str
    sqnr_db: float
    shape: tuple[int, ...]
    quantized: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["sqnr_db"] = None if not math.isfinite(self.sqnr_db) else self.sqnr_db
        return d


# ---- ONNX Runtime ---------------------------------------------------------------------------------
def _with_outputs(proto: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    existing = {o.name for o in model.graph.output}
    for name in names:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return model


def _session(proto: onnx.ModelProto) -> Any:
    """One thread, graph optimisations off (the exact QDQ simulation), ORT's default spinning."""
    from mtmnv3.runtime.ort_runtime import make_session

    return make_session(proto.SerializeToString(), 1, allow_spinning=True, optimization="ORT_DISABLE_ALL")


def _int8_view(proto: onnx.ModelProto) -> dict[str, str]:
    """fp32 tensor name -> the name of its ``DQ(Q(x))`` value in a QDQ graph (when quantized)."""
    quant_of = {n.input[0]: n.output[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    dq_of = {n.input[0]: n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    return {x: dq_of[q] for x, q in quant_of.items() if q in dq_of}


def ort_layer_sqnr(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    inputs: Iterable[np.ndarray | Tensor],
    op_types: Sequence[str] = COMPARED_OP_TYPES,
) -> list[LayerSQNR]:
    """Per-layer SQNR between an fp32 ONNX model and its QDQ int8 version.

    Args:
        fp32_path: the fp32 model (the one that was quantized, or its
            un-preprocessed export: tensors are matched by name, so use the
            same graph the quantizer saw; :func:`quantize_onnx` keeps names).
        int8_path: the QDQ model.
        inputs: normalised ``(N, 3, H, W)`` float32 samples.
        op_types: which nodes' outputs to compare.

    Returns:
        One row per compared node present in both graphs, in graph order.

    Raises:
        ValueError: the int8 model is not in QDQ format (QOperator graphs
            rename every int8 tensor; quantize a QDQ copy for the table), or no inputs.
    """
    ref = onnx.load(str(fp32_path))
    q = onnx.load(str(int8_path))
    if any(n.op_type.startswith("QLinear") for n in q.graph.node):
        raise ValueError(f"{int8_path} is in QOperator format; per-layer SQNR needs a QDQ model")
    q_nodes = {o for n in q.graph.node for o in n.output}
    view = _int8_view(q)
    producers, consumers = graph_maps(ref)
    wanted = set(op_types)
    rows_meta = []
    for node in ref.graph.node:
        if node.op_type not in wanted or not node.output or node.output[0] not in q_nodes:
            continue
        groups = conv_groups(node)
        out = node.output[0]
        rows_meta.append((out, node, groups, view.get(out, out)))
    if not rows_meta:
        return []
    ref_sess = _session(_with_outputs(ref, [r[0] for r in rows_meta]))
    q_sess = _session(_with_outputs(q, [r[3] for r in rows_meta]))
    input_name = ref_sess.get_inputs()[0].name
    accs = [SQNRAccumulator() for _ in rows_meta]
    shapes: list[tuple[int, ...]] = [()] * len(rows_meta)
    n = 0
    for x in inputs:
        x = _np(x).astype(np.float32)
        x = x[None] if x.ndim == 3 else x
        got_ref = ref_sess.run([r[0] for r in rows_meta], {input_name: x})
        got_q = q_sess.run([r[3] for r in rows_meta], {input_name: x})
        for i, (a, b) in enumerate(zip(got_ref, got_q)):
            accs[i].add(a, b)
            shapes[i] = tuple(a.shape)
        n += 1
    if n == 0:
        raise ValueError("no inputs given")
    return [
        LayerSQNR(
            name=out,
            kind=layer_kind(node, producers, groups, consumers),
            module=node_module(node),
            op_type=node.op_type,
            sqnr_db=acc.db,
            shape=shape,
            quantized=qname != out,
        )
        for (out, node, groups, qname), acc, shape in zip(rows_meta, accs, shapes)
    ]


# ---- PT2E -------------------------------------------------------------------------------------------
_ATEN_KINDS = {
    "conv2d": "conv",
    "hardswish": "hard_swish",
    "hardswish_": "hard_swish",
    "relu": "relu",
    "relu_": "relu",
    "hardtanh": "relu",
    "hardtanh_": "relu",
    "hardsigmoid": "se_gate",
    "mul": "se_multiply",
    "add": "add",
    "add_": "add",
    "linear": "head",
    "mean": "se_pool",
    "adaptive_avg_pool2d": "se_pool",
    "upsample_nearest2d": "resize",
}


def _fx_key(node: torch.fx.Node) -> tuple[str, str, str] | None:
    """(innermost module path, its class name, aten op name) of a compute node."""
    if node.op != "call_function":
        return None
    name = getattr(node.target, "__name__", str(node.target)).split(".")[0]
    if name not in _ATEN_KINDS:
        return None
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
    return path, cls_name.rsplit(".", 1)[-1], name


def _keyed_nodes(module: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, tuple[str, str, int], str]]:
    """Every compute node with its key (module path, op, occurrence of that op there) and module class."""
    out = []
    seen: dict[tuple[str, str], int] = {}
    for node in module.graph.nodes:
        k = _fx_key(node)
        if k is None:
            continue
        path, cls, op = k
        idx = seen.get((path, op), 0)
        seen[(path, op)] = idx + 1
        out.append((node, (path, op, idx), cls))
    return out


def _capture_fx(
    module: torch.fx.GraphModule, example: Tensor
) -> dict[tuple[str, str, int], tuple[Tensor, str, str]]:
    """Run a GraphModule; keep every compute node's output by (module, op, occurrence).

    Values are ``(output, node name, module class name)``.
    """
    keys = {node.name: (key, cls) for node, key, cls in _keyed_nodes(module)}
    found: dict[tuple[str, str, int], tuple[Tensor, str, str]] = {}

    class _Recorder(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> Any:
            result = super().run_node(n)
            if n.name in keys and isinstance(result, Tensor):
                key, cls = keys[n.name]
                found[key] = (result.detach().clone(), n.name, cls)
            return result

    with torch.no_grad():
        _Recorder(module).run(example)
    return found


def _bn_folded_keys(module: torch.fx.GraphModule) -> set[tuple[str, str, int]]:
    """Keys of conv nodes that feed a batch norm (their output has no counterpart once BN is folded)."""
    return {
        key
        for node, key, _ in _keyed_nodes(module)
        if key[1] == "conv2d" and any("batch_norm" in str(u.target) for u in node.users)
    }


def _clean_path(path: str) -> str:
    for prefix in ("model.", "L['self'].model.", "L__self___model_"):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


#: Child names of :class:`mtmnv3.core.layers.SqueezeExcite`.
_SE_PARTS = ("fc1", "fc2", "avgpool", "scale_activation")


def _pt2e_kind(path: str, cls: str, op: str) -> str:
    if path.startswith("heads"):
        return "head"
    if path.startswith("neck"):
        return "neck"
    last = path.rsplit(".", 1)[-1]
    if cls == "SqueezeExcite" or last in _SE_PARTS:
        return {"conv2d": "se_fc", "mul": "se_multiply", "hardsigmoid": "se_gate"}.get(op, "se_pool")
    kind = _ATEN_KINDS.get(op, "other")
    return "other" if kind in ("se_multiply", "se_gate", "se_pool") else kind


def pt2e_layer_sqnr(
    reference: torch.fx.GraphModule | nn.Module,
    quantized: torch.fx.GraphModule,
    inputs: Iterable[Tensor | np.ndarray],
) -> list[LayerSQNR]:
    """Per-layer SQNR between an fp32 exported graph and its PT2E (fake-)quantized graph.

    Nodes are matched by (source module path, aten op, occurrence) from the
    ``nn_module_stack`` both graphs carry. BatchNorm is folded into the conv
    in the quantized graph, so a conv that feeds a batch norm in the fp32
    graph is not compared (its activation, the SE convs, the adds and the
    head convs are).

    Args:
        reference: the fp32 graph (``capture_for_pt2e(...).module``).
        quantized: the prepared-and-calibrated or converted graph.
        inputs: normalised ``(N, 3, H, W)`` samples.
    """
    accs: dict[tuple[str, str, int], SQNRAccumulator] = {}
    meta: dict[tuple[str, str, int], tuple[str, tuple[int, ...], str]] = {}
    folded = _bn_folded_keys(reference)
    n = 0
    for x in inputs:
        x = torch.as_tensor(_np(x)).float()
        x = x[None] if x.ndim == 3 else x
        ref = _capture_fx(reference, x)
        got = _capture_fx(quantized, x)
        for key, (t_ref, name, cls) in ref.items():
            if key not in got or got[key][0].shape != t_ref.shape:
                continue
            if key in folded:
                continue  # folded conv+bn: the fp32 conv output is before its batch norm
            accs.setdefault(key, SQNRAccumulator()).add(t_ref.numpy(), got[key][0].numpy())
            meta[key] = (name, tuple(t_ref.shape), cls)
        n += 1
    if n == 0:
        raise ValueError("no inputs given")
    rows = []
    for key, acc in accs.items():
        path, op, _ = key
        clean = _clean_path(path)
        rows.append(
            LayerSQNR(
                name=meta[key][0],
                kind=_pt2e_kind(clean, meta[key][2], op),
                module=clean,
                op_type=op,
                sqnr_db=acc.db,
                shape=meta[key][1],
                quantized=True,
            )
        )
    return rows


# ---- reporting ----------------------------------------------------------------------------------------
def sqnr_by_kind(rows: Sequence[LayerSQNR]) -> dict[str, dict[str, float]]:
    """Per kind: number of layers, median and minimum SQNR (finite rows only)."""
    out: dict[str, dict[str, float]] = {}
    for kind in LAYER_KINDS:
        vals = [r.sqnr_db for r in rows if r.kind == kind and math.isfinite(r.sqnr_db)]
        if vals:
            out[kind] = dict(count=len(vals), median_db=float(np.median(vals)), min_db=float(min(vals)))
    return out


def sqnr_markdown(rows: Sequence[LayerSQNR], worst: int | None = None, low_db: float = LOW_SQNR_DB) -> str:
    """A markdown report: per-kind summary, then the layers (worst first if ``worst`` is given).

    Args:
        rows: from :func:`ort_layer_sqnr` or :func:`pt2e_layer_sqnr`.
        worst: list only the ``worst`` lowest-SQNR layers (None: all, in graph order).
        low_db: layers below this are flagged.
    """
    summary = sqnr_by_kind(rows)
    parts = [
        format_table(
            ["kind", "layers", "median SQNR (dB)", "min SQNR (dB)"],
            [[k, int(v["count"]), v["median_db"], v["min_db"]] for k, v in summary.items()],
        )
    ]
    listed = list(rows)
    if worst is not None:
        listed = sorted(listed, key=lambda r: r.sqnr_db)[:worst]
    parts.append(
        format_table(
            ["layer", "kind", "module", "op", "SQNR (dB)", "int8 output", "flag"],
            [
                [
                    r.name,
                    r.kind,
                    r.module,
                    r.op_type,
                    r.sqnr_db if math.isfinite(r.sqnr_db) else str(r.sqnr_db),
                    "yes" if r.quantized else "float",
                    "LOW" if r.sqnr_db < low_db else "",
                ]
                for r in listed
            ],
        )
    )
    return "\n\n".join(parts)
