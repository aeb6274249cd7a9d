"""Layer kinds of the nodes of an exported mtmnv3 graph (conv, hard-swish, SE parts, head, ...).

A node's kind comes from its op type, its neighbours (hard-swish decomposed
by pre-processing, the SE's pool / gate / multiply) and the source module
path the exporter recorded. The per-layer SQNR table tags its rows with it,
and the quantizer's ``exclude_kinds`` option keeps nodes of some kinds float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

__all__ = [
    "LAYER_KINDS",
    "conv_groups",
    "graph_layer_kinds",
    "graph_maps",
    "layer_kind",
    "node_module",
    "onnx_layer_kind",
]

#: Layer kinds a row can carry.
LAYER_KINDS = (
    "conv",
    "depthwise_conv",
    "hard_swish",
    "relu",
    "se_pool",
    "se_fc",
    "se_gate",
    "se_multiply",
    "add",
    "resize",
    "neck",
    "head",
    "other",
)


def graph_maps(
    proto: onnx.ModelProto,
) -> tuple[dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]]]:
    """``(producers, consumers)``: tensor name -> the node writing it / the nodes reading it."""
    producers = {o: n for n in proto.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producers, consumers


def conv_groups(node: onnx.NodeProto) -> int:
    """A node's ``group`` attribute (1 without one)."""
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _scope_of(node: onnx.NodeProto) -> str:
    """The innermost module path the torch exporter recorded for a node ('' if none)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = [s for s in eval(prop.value, {"__builtins__": {}}) if isinstance(s, str)]  # noqa: S307
            except Exception:  # noqa: BLE001 - malformed metadata: no scope
                return ""
            modules = [s for s in scopes if "." in s or s.startswith("model")]
            path = modules[-1] if modules else ""
            return path[len("model.") :] if path.startswith("model.") else path
    if node.name.startswith("/"):
        # TorchScript exporter names: '/model/heads/cls/pre_logits/pre_logits.0/Conv'.
        parts = [p for p in node.name.split("/")[1:-1] if p]
        if parts and parts[0] == "model":
            parts = parts[1:]
        # The exporter drops the owning modules' names: trunk blocks come as
        # 'blocks.i', heads under their own names.
        if parts and parts[0].startswith("blocks."):
            parts = ["trunk", *parts]
        elif parts and parts[0] not in ("trunk", "neck", "heads"):
            parts = ["heads", *parts]
        return ".".join(parts)
    return ""


def node_module(node: onnx.NodeProto) -> str:
    """The source module path of an exported node (e.g. ``'trunk.blocks.4.block.1.fc1'``; '' if unknown)."""
    return _scope_of(node)


def _module_kind(module: str, op_type: str, group: int) -> str | None:
    """Kind from the source module path, when that settles it."""
    parts = module.split(".")
    if module.startswith("heads.") or module == "heads":
        return "head"
    if module.startswith("neck.") or module == "neck":
        return "neck"
    if "fc1" in parts or "fc2" in parts:
        return "se_fc"
    return None


def onnx_layer_kind(
    node: onnx.NodeProto,
    producers: Mapping[str, onnx.NodeProto],
    groups: int = 1,
    consumers: Mapping[str, Sequence[onnx.NodeProto]] | None = None,
) -> str:
    """The kind of an ONNX node of an exported mtmnv3 model.

    Hard-swish is recognised whole (``HardSwish``) or decomposed
    (``Mul(x, HardSigmoid(x))``, as ONNX Runtime's pre-processing writes
    it); the SE by structure (its hard-sigmoid gate computed from a 1x1
    conv, the multiply of the features by that gate, the pool feeding it)
    and by the recorded module path (``fc1``/``fc2``); head and neck nodes
    by module path.
    """
    op = node.op_type
    module = _scope_of(node)
    consumers = consumers or {}
    if op == "Mul":
        gates = [producers.get(i) for i in node.input]
        for k, g in enumerate(gates):
            if g is not None and g.op_type == "HardSigmoid":
                other = node.input[1 - k] if len(node.input) == 2 else None
                if g.input[0] == other:
                    return "hard_swish"
                if not module.startswith("heads"):
                    return "se_multiply"
    if op == "HardSigmoid":
        users = consumers.get(node.output[0], ())
        if any(u.op_type == "Mul" and node.input[0] in u.input for u in users):
            return "hard_swish"
        if not module.startswith("heads"):
            return "se_gate"
    by_module = _module_kind(module, op, groups)
    if by_module is not None:
        return by_module
    if op == "Conv":
        return "depthwise_conv" if groups > 1 else "conv"
    if op == "HardSwish":
        return "hard_swish"
    if op in ("Relu", "Clip"):
        return "relu"
    if op in ("ReduceMean", "GlobalAveragePool"):
        users = consumers.get(node.output[0], ())
        return (
            "se_pool"
            if any(u.op_type == "Conv" for u in users) and not module.startswith("heads")
            else "other"
        )
    if op == "Add":
        return "add"
    if op == "Resize":
        return "resize"
    return "other"


def _se_fc_by_structure(node: onnx.NodeProto, producers: Mapping[str, onnx.NodeProto]) -> bool:
    """A 1x1 conv on a pooled (1x1) input, or feeding the SE's hard-sigmoid gate chain."""
    src = producers.get(node.input[0])
    while src is not None and src.op_type in ("Relu",):
        src = producers.get(src.input[0])
    return (
        src is not None
        and src.op_type in ("ReduceMean", "GlobalAveragePool", "Conv")
        and (src.op_type != "Conv" or _se_fc_by_structure(src, producers))
    )


def graph_layer_kinds(proto: onnx.ModelProto) -> list[tuple[onnx.NodeProto, str]]:
    """Every node of a graph with its layer kind."""
    producers, consumers = graph_maps(proto)
    return [(node, layer_kind(node, producers, conv_groups(node), consumers)) for node in proto.graph.node]


def layer_kind(
    node: onnx.NodeProto,
    producers: Mapping[str, onnx.NodeProto],
    groups: int,
    consumers: Mapping[str, Sequence[onnx.NodeProto]],
) -> str:
    """:func:`onnx_layer_kind`, with an SE FC conv that has no recorded module found by structure."""
    kind = onnx_layer_kind(node, producers, groups, consumers)
    if kind == "conv" and not _scope_of(node) and _se_fc_by_structure(node, producers):
        return "se_fc"
    return kind
