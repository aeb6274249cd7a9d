"""ONNX export of the multi-task model: the whole graph, a head subset, or stage pieces.

What is exported are the model's raw dense tensors (classification logits,
detection heatmap/size/offset maps, the embedding map); peak picking, NMS and
the embedding lookup stay outside the graph and run through the same decode
code as PyTorch (see :mod:`mtmnv3.runtime.ort_runtime`). The graph input is
the *normalised* ``float32 (N, 3, H, W)`` image, exactly what the model's
``head_outputs`` takes after its data preprocessor; the sidecar JSON records
the mean/std, channel order and letterbox size needed to make it.

Exporter choice. Both of torch's exporters are supported and tested to give
the same outputs; the default is ``'dynamo'`` (``torch.onnx.export(...,
dynamo=True)``): it is torch's maintained exporter, it needs no tracing
heuristics (the TorchScript exporter is deprecated and warns so), and it
names and types every output cleanly. ``'torchscript'``
(``dynamo=False``) exports an order of magnitude faster and remains
available. The exporter is always passed explicitly: recent torch changed the
default under callers who relied on it.

Stage pieces. :func:`export_split` cuts the trunk into contiguous stage
ranges (a :class:`~mtmnv3.backbone.plan.StagePlan` or explicit ranges), one ONNX file
each, plus one heads file that reads the trunk taps; pieces deeper than the
requested heads need are not written, so a head subset is also a shallower
trunk. A manifest JSON lists the pieces in order; each piece's inputs and
outputs are named ``images`` or ``stage{i}`` (the output of trunk stage i),
so chaining them is a name lookup.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.runtime.export_graphs import (
    INPUT_NAME,
    HeadOutputsGraph,
    HeadsFromTapsGraph,
    TrunkPieceGraph,
    output_layout,
    without_extra_state,
)
from mtmnv3.runtime.export_meta import (
    FORMAT_VERSION,
    example_input,
    model_meta,
    resolve_heads,
    resolve_size,
    sidecar_path,
)

__all__ = [
    "EXPORTERS",
    "DEFAULT_EXPORTER",
    "DEFAULT_OPSET",
    "BLOCK_EXPORTER",
    "BLOCK_OPSET",
    "INPUT_NAME",
    "EXPORT_FORMAT",
    "SPLIT_FORMAT",
    "export_module",
    "export_onnx",
    "export_split",
    "sidecar_path",
    "stage_ranges_from_plan",
]

#: Supported exporters: torch.onnx.export(dynamo=True) and (dynamo=False).
EXPORTERS = ("dynamo", "torchscript")
#: Default exporter (see the module docstring for why).
DEFAULT_EXPORTER = "dynamo"
#: Default opset: the dynamo exporter's native opset (no version conversion);
#: has HardSwish/HardSigmoid (>= 14) and is well supported by ONNX Runtime.
DEFAULT_OPSET = 18
#: Lowest opset accepted (HardSwish appeared in opset 14).
MIN_OPSET = 14
#: Exporter and opset of the single-block and stage graphs that the latency
#: table times and the stage pipeline runs (the same graphs in both, so the
#: pipeline's measured stages compare with the table's predictions). The
#: TorchScript exporter is used there because every block and block pair is
#: exported, and it exports far faster than dynamo.
BLOCK_EXPORTER = "torchscript"
BLOCK_OPSET = 17
EXPORT_FORMAT = "mtmnv3.OnnxExport"
SPLIT_FORMAT = "mtmnv3.OnnxSplit"


# ---- argument checks -------------------------------------------------------------------
def _check_exporter(exporter: str, opset: int) -> None:
    if exporter not in EXPORTERS:
        raise ValueError(f"unsupported exporter {exporter!r}; expected one of {EXPORTERS}")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an int >= {MIN_OPSET} (HardSwish), got {opset!r}")


# ---- the exporter call --------------------------------------------------------------------
def _dynamo_shapes(example: tuple[Tensor, ...], dynamic_batch: bool, dynamic_size: bool) -> tuple | None:
    """``dynamic_shapes`` of the dynamo exporter: the same symbolic axes for every input."""
    if not (dynamic_batch or dynamic_size):
        return None
    axes = {}
    if dynamic_batch:
        axes[0] = torch.export.Dim.DYNAMIC
    if dynamic_size:
        axes[2] = axes[3] = torch.export.Dim.DYNAMIC
    return tuple(dict(axes) for _ in example)


def _torchscript_axes(
    input_names: Sequence[str], output_names: Sequence[str] | None, dynamic_batch: bool, dynamic_size: bool
) -> dict[str, dict[int, str]] | None:
    """``dynamic_axes`` of the TorchScript exporter: named symbolic axes per input (and output batch)."""
    dynamic_axes = {}
    for name in input_names:
        axes = {}
        if dynamic_batch:
            axes[0] = "batch"
        if dynamic_size:
            axes[2], axes[3] = f"{name}_height", f"{name}_width"
        if axes:
            dynamic_axes[name] = axes
    if dynamic_batch:
        for name in output_names or ():
            dynamic_axes[name] = {0: "batch"}
    return dynamic_axes or None


def _export_bytes(
    module: nn.Module,
    example: tuple[Tensor, ...],
    input_names: Sequence[str],
    output_names: Sequence[str] | None,
    exporter: str,
    opset: int,
    dynamic_batch: bool,
    dynamic_size: bool,
) -> bytes:
    """Export ``module`` with the chosen exporter; returns the checked ModelProto bytes.

    This is the package's one call of ``torch.onnx.export``. ``output_names``
    None keeps the exporter's own output names.
    """
    _check_exporter(exporter, opset)
    module.eval()
    dynamo = exporter == "dynamo"
    names = dict(
        input_names=list(input_names), output_names=None if output_names is None else list(output_names)
    )
    if dynamo:
        options = dict(dynamic_shapes=_dynamo_shapes(example, dynamic_batch, dynamic_size), verbose=False)
    else:
        axes = _torchscript_axes(input_names, output_names, dynamic_batch, dynamic_size)
        options = dict(dynamic_axes=axes, do_constant_folding=True)
    buf = None if dynamo else io.BytesIO()
    with without_extra_state(module), warnings.catch_warnings():
        # The TorchScript exporter announces its own deprecation on every call.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        # The trunk's input-shape check reads shapes as Python values: correct for
        # a check (it does not shape the graph), but the tracer warns about it.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"mtmnv3\.backbone\.trunk")
        program = torch.onnx.export(
            module, example, buf, dynamo=dynamo, opset_version=opset, **names, **options
        )
    proto = program.model_proto if dynamo else onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    got_in = [i.name for i in proto.graph.input if i.name in set(input_names)]
    got_out = [o.name for o in proto.graph.output]
    if got_in != list(input_names) or (output_names is not None and got_out != list(output_names)):
        raise RuntimeError(
            f"{exporter} exporter produced inputs {got_in} / outputs {got_out}, "
            f"expected {list(input_names)} / {output_names}"
        )
    return proto.SerializeToString()


def export_module(
    module: nn.Module,
    inputs: Sequence[Tensor],
    path: str | os.PathLike,
    input_names: Sequence[str],
    output_names: Sequence[str] | None = None,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
) -> Path:
    """Export ``module(*inputs)`` to one ONNX file (no sidecar): the low-level exporter.

    :func:`export_onnx`, :func:`export_split`, the stage pipeline and the
    latency table all export through it.

    Args:
        module: any module taking positional tensors (put in eval mode here).
        inputs: example inputs, one per graph input.
        path: output ``.onnx`` file, written atomically.
        input_names: graph input names, one per input.
        output_names: graph output names (None: the exporter's own).
        exporter: ``'dynamo'`` or ``'torchscript'`` (see the module docstring).
        opset: ONNX opset (>= 14).
        dynamic_batch: leave the batch dimension of every input symbolic.
        dynamic_size: leave the last two dimensions of every input symbolic.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: unsupported exporter/opset, or not one name per input.
        RuntimeError: the exported graph's inputs/outputs are not the requested names.
    """
    inputs = tuple(inputs)
    if len(input_names) != len(inputs):
        raise ValueError(f"need one input name per input ({len(inputs)}), got {list(input_names)}")
    path = Path(path)
    with torch.no_grad():
        data = _export_bytes(
            module, inputs, input_names, output_names, exporter, opset, dynamic_batch, dynamic_size
        )
    _write_bytes(path, data)
    return path


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def _shared_meta(
    model: nn.Module,
    names: Sequence[str],
    layout: Sequence[dict[str, Any]],
    size: tuple[int, int],
    batch_size: int,
    dynamic_batch: bool,
    dynamic_size: bool,
    exporter: str,
    opset: int,
) -> dict[str, Any]:
    """The entries a sidecar and a split manifest share: input, outputs, heads, provenance."""
    return dict(
        **model_meta(model, names, layout, size, batch_size, dynamic_batch, dynamic_size),
        exporter=exporter,
        opset=opset,
        onnx_version=onnx.__version__,
    )


def _prepare(
    model: nn.Module,
    heads: Sequence[str] | str | None,
    input_size: int | Sequence[int],
    exporter: str,
    opset: int,
    batch_size: int,
) -> tuple[tuple[str, ...], tuple[int, int], Tensor, list[dict[str, Any]]]:
    """Checked head names and size, the example input and the output layout (model in eval mode)."""
    _check_exporter(exporter, opset)
    names = resolve_heads(model, heads)
    size = resolve_size(model, input_size)
    model.eval()
    x = example_input(size, batch_size)
    return names, size, x, output_layout(model.head_outputs(x, names), names)


def _write_piece(
    file: Path, data: bytes, stages: list[int] | None, inputs: list[str], outputs: list[str]
) -> dict[str, Any]:
    """Write one split piece; its manifest entry."""
    _write_bytes(file, data)
    return dict(
        file=file.name, stages=stages, inputs=inputs, outputs=outputs, sha256=hashlib.sha256(data).hexdigest()
    )


# ---- public API -------------------------------------------------------------------------
@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    heads: Sequence[str] | str | None = None,
    input_size: int | Sequence[int] = 320,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Export the model's raw head tensors to one ONNX file (+ ``<file>.json`` sidecar).

    Args:
        model: a :class:`~mtmnv3.models.MultiTaskPerceptor` (put in eval mode here).
        path: output ``.onnx`` file, written atomically.
        heads: head names to export (list or comma-separated); default all. The
            trunk is cut after the deepest stage they read.
        input_size: ``int`` or ``(height, width)`` of the (letterboxed) input;
            a multiple of the trunk's output stride (32).
        exporter: ``'dynamo'`` or ``'torchscript'`` (see module docstring).
        opset: ONNX opset (>= 14).
        dynamic_batch: leave the batch dimension symbolic.
        dynamic_size: leave height and width symbolic (letterbox size from the sidecar).
        batch_size: example (and, if not dynamic, fixed) batch size.

    Returns:
        The sidecar dict (also written to :func:`sidecar_path`). Graph input
        ``images``: float32 ``(N, 3, H, W)``, normalised as the sidecar says;
        outputs as listed under ``outputs`` (``cls``, ``det_heatmap``,
        ``det_wh``, ``det_offset``, ``emb`` for the default head names).

    Raises:
        ValueError: unknown head, unsupported exporter/opset, bad size.
    """
    names, size, x, layout = _prepare(model, heads, input_size, exporter, opset, batch_size)
    path = Path(path)
    graph = HeadOutputsGraph(model, names, layout)
    data = _export_bytes(
        graph, (x,), [INPUT_NAME], [o["name"] for o in layout], exporter, opset, dynamic_batch, dynamic_size
    )
    meta = dict(
        format=EXPORT_FORMAT,
        version=FORMAT_VERSION,
        file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        **_shared_meta(model, names, layout, size, batch_size, dynamic_batch, dynamic_size, exporter, opset),
    )
    _write_bytes(path, data)
    atomic_write_json(sidecar_path(path), meta)
    return meta


def stage_ranges_from_plan(
    model: nn.Module, plan: StagePlan | str | os.PathLike | None
) -> list[tuple[int, int]]:
    """Turn a stage plan into contiguous ranges of the model trunk's stages.

    Every cut of ``plan`` (a block index) must be where one of the trunk's
    stages starts; the pieces are then the trunk stages grouped between cuts.
    ``None`` uses the trunk's own plan (one piece per stage).

    Raises:
        ValueError: the plan covers another number of blocks, or cuts inside a trunk stage.
    """
    trunk_plan: StagePlan = model.trunk.stage_plan
    if plan is None:
        plan = trunk_plan
    elif isinstance(plan, (str, os.PathLike)):
        plan = StagePlan.load(plan)
    elif not isinstance(plan, StagePlan):
        raise TypeError(f"plan must be a StagePlan, a path to its JSON or None, got {type(plan).__name__}")
    if plan.num_blocks != trunk_plan.num_blocks:
        raise ValueError(
            f"stage plan covers {plan.num_blocks} blocks but the model's trunk has {trunk_plan.num_blocks}"
        )
    starts = {a: i for i, (a, _) in enumerate(trunk_plan.stages)}
    bad = [c for c in plan.cuts if c not in starts]
    if bad:
        raise ValueError(
            f"stage plan cuts at blocks {bad}, inside the trunk's stages (they start at blocks "
            f"{sorted(starts)}); build the model with trunk.stage_plan set to this plan, or cut there"
        )
    bounds = [0, *(starts[c] for c in plan.cuts), trunk_plan.num_stages]
    return list(zip(bounds[:-1], bounds[1:]))


def _check_ranges(ranges: Sequence[Sequence[int]], num_stages: int) -> list[tuple[int, int]]:
    ranges = [tuple(int(v) for v in r) for r in ranges]
    expected = 0
    for r in ranges:
        if len(r) != 2 or r[0] != expected or r[1] <= r[0]:
            raise ValueError(f"stage ranges must be contiguous, non-empty and start at stage 0, got {ranges}")
        expected = r[1]
    if expected != num_stages:
        raise ValueError(f"stage ranges cover {expected} stages but the trunk has {num_stages}: {ranges}")
    return ranges


@torch.no_grad()
def export_split(
    model: nn.Module,
    out_dir: str | os.PathLike,
    plan: StagePlan | str | os.PathLike | None = None,
    stage_ranges: Sequence[Sequence[int]] | None = None,
    heads: Sequence[str] | str | None = None,
    input_size: int | Sequence[int] = 320,
    exporter: str = DEFAULT_EXPORTER,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    batch_size: int = 1,
    prefix: str = "model",
) -> dict[str, Any]:
    """Export trunk stage pieces and a heads piece, one ONNX file each, plus a manifest.

    Piece ``k`` runs trunk stages ``[start, end)``: input ``images`` (k = 0)
    or ``stage{start-1}``; outputs ``stage{i}`` for every tap the heads read
    inside the range and the range's last stage when a later piece needs it.
    The heads piece reads the taps and returns the same outputs as
    :func:`export_onnx`. Pieces past the deepest tap are not exported.

    Args:
        model: the multi-task model.
        out_dir: folder for ``{prefix}.piece{k}.onnx``, ``{prefix}.heads.onnx``
            and ``{prefix}.split.json`` (the manifest, written last).
        plan: stage plan whose cuts define the pieces (see
            :func:`stage_ranges_from_plan`); default the trunk's own stages.
        stage_ranges: explicit ``[(start, end), ...]`` trunk stage ranges instead of ``plan``.
        heads, input_size, exporter, opset, dynamic_batch, dynamic_size, batch_size:
            as in :func:`export_onnx`.
        prefix: file name prefix.

    Returns:
        The manifest dict. On an error no manifest is written and the pieces
        this call wrote are removed.
    """
    names, size, x, layout = _prepare(model, heads, input_size, exporter, opset, batch_size)
    if plan is not None and stage_ranges is not None:
        raise ValueError("give plan or stage_ranges, not both")
    trunk = model.trunk
    ranges = (
        _check_ranges(stage_ranges, trunk.num_stages)
        if stage_ranges is not None
        else stage_ranges_from_plan(model, plan)
    )
    taps = model.required_taps(names)
    depth = max(taps) + 1
    out_dir = Path(out_dir)
    written: list[Path] = []
    try:
        pieces, current, current_name = [], x, INPUT_NAME
        for k, (start, end) in enumerate(ranges):
            if start >= depth:
                break
            end = min(end, depth)
            outs = sorted({t for t in taps if start <= t < end} | ({end - 1} if end < depth else set()))
            out_names = [f"stage{s}" for s in outs]
            graph = TrunkPieceGraph(trunk, start, outs)
            data = _export_bytes(
                graph, (current,), [current_name], out_names, exporter, opset, dynamic_batch, dynamic_size
            )
            file = out_dir / f"{prefix}.piece{k}.onnx"
            pieces.append(_write_piece(file, data, [start, end], [current_name], out_names))
            written.append(file)
            results = graph(current)
            current, current_name = results[-1], out_names[-1]
        tap_names = [f"stage{t}" for t in taps]
        feats = trunk.forward_taps(x, taps)
        graph = HeadsFromTapsGraph(model, names, taps, layout)
        out_names = [o["name"] for o in layout]
        tap_inputs = tuple(feats[t] for t in taps)
        data = _export_bytes(
            graph, tap_inputs, tap_names, out_names, exporter, opset, dynamic_batch, dynamic_size
        )
        file = out_dir / f"{prefix}.heads.onnx"
        pieces.append(_write_piece(file, data, None, tap_names, out_names))
        written.append(file)
        manifest = dict(
            format=SPLIT_FORMAT,
            version=FORMAT_VERSION,
            pieces=pieces,
            stage_ranges=[list(r) for r in ranges],
            **_shared_meta(
                model, names, layout, size, batch_size, dynamic_batch, dynamic_size, exporter, opset
            ),
        )
        atomic_write_json(out_dir / f"{prefix}.split.json", manifest)
    except BaseException:
        for file in written:
            file.unlink(missing_ok=True)
        raise
    return manifest
