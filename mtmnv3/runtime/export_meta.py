"""What every deployed file of the multi-task model records beside it: input, outputs, heads, provenance.

A runtime's exporter (ONNX, ExecuTorch, OpenVINO) writes its file plus a
sidecar JSON ``<file>.json`` with the same schema, so one run-time decode
(:mod:`mtmnv3.runtime.ort_runtime`) serves every runtime: how to make the
input from a uint8 frame (size, colour order, mean/std, letterbox padding),
which raw output is which head's tensor, the heads' decode parameters, and
what made the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.core.version import __version__ as MTMNV3_VERSION
from mtmnv3.runtime.export_graphs import INPUT_NAME

__all__ = [
    "FORMAT_BACKENDS",
    "FORMAT_VERSION",
    "LETTERBOX_PAD_VALUE",
    "load_export_meta",
    "config_hash",
    "example_input",
    "heads_meta",
    "input_meta",
    "model_meta",
    "resolve_heads",
    "resolve_size",
    "sidecar_path",
    "size_divisor",
    "size_text",
]

#: Version of the sidecar schema every exporter writes.
FORMAT_VERSION = 1
#: Sidecar ``format`` of each exporter -> the runtime that runs the file.
FORMAT_BACKENDS = {
    "mtmnv3.OnnxExport": "onnxruntime",
    "mtmnv3.ExecuTorchExport": "executorch",
    "mtmnv3.OpenVINOExport": "openvino",
}
#: Manifest ``format`` of split exports (stage pieces run in order).
SPLIT_FORMATS = ("mtmnv3.OnnxSplit",)
#: Letterbox padding grey level of the training/test pipelines.
LETTERBOX_PAD_VALUE = 114
#: Head attributes copied into the sidecar (decode parameters and shapes).
HEAD_META_ATTRS = ("stride", "level", "num_classes", "max_per_img", "score_thr", "nms_iou", "embed_dim")


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    """The metadata JSON written next to an exported model: ``<file>.json`` (e.g. ``model.onnx.json``)."""
    return Path(str(onnx_path) + ".json")


def config_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a config file's bytes: ties a deployed file to the config it was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve_heads(model: nn.Module, heads: Sequence[str] | str | None) -> tuple[str, ...]:
    """Checked head names to export (a list or comma-separated string; None: every head)."""
    if not hasattr(model, "heads") or not hasattr(model, "required_taps"):
        raise TypeError(f"expected a MultiTaskPerceptor-like model, got {type(model).__name__}")
    if heads is None:
        return tuple(model.heads)
    if isinstance(heads, str):
        heads = [h.strip() for h in heads.split(",") if h.strip()]
    heads = tuple(heads)
    unknown = [h for h in heads if h not in model.heads]
    if not heads or unknown:
        raise ValueError(f"unknown heads {unknown or list(heads)}; the model's heads are {list(model.heads)}")
    if len(set(heads)) != len(heads):
        raise ValueError(f"heads listed twice: {list(heads)}")
    return heads


def size_divisor(model: nn.Module) -> int:
    """The trunk's deepest stride: every input size is a multiple of it."""
    return max(int(f["stride"]) for f in model.trunk.feature_info)


def resolve_size(model: nn.Module, input_size: int | Sequence[int]) -> tuple[int, int]:
    """int or (height, width) -> (height, width), a multiple of the trunk's deepest stride."""
    given = input_size
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        input_size = (input_size, input_size)
    if not (
        isinstance(input_size, (tuple, list))
        and len(input_size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_size)
    ):
        raise ValueError(f"input_size must be a positive int or (height, width), got {given!r}")
    div = size_divisor(model)
    if any(s % div for s in input_size):
        raise ValueError(
            f"input_size must be a multiple of {div} (the trunk's output stride, as the model's "
            f"data preprocessor pads to it), got {given!r}"
        )
    return int(input_size[0]), int(input_size[1])


def input_meta(
    model: nn.Module, size: tuple[int, int], batch: int, dynamic_batch: bool, dynamic_size: bool
) -> dict[str, Any]:
    """How to make the graph input from a uint8 frame (read from the data preprocessor).

    ``size`` is ``[height, width]``: a fixed-size file takes exactly that, and
    frames of any shape are letterboxed into it (aspect kept, grey padding); a
    dynamic-size file takes any multiple of ``size_divisor``.
    """
    pre = getattr(model, "data_preprocessor", None)
    if pre is not None and getattr(pre, "_enable_normalize", False):
        mean = [float(v) for v in pre.mean.flatten()]
        std = [float(v) for v in pre.std.flatten()]
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    # Datasets yield RGB; a preprocessor with channel conversion feeds the network BGR.
    color = "BGR" if pre is not None and getattr(pre, "_channel_conversion", False) else "RGB"
    return dict(
        name=INPUT_NAME,
        layout="NCHW",
        dtype="float32",
        size=list(size),
        batch=None if dynamic_batch else batch,
        dynamic_batch=dynamic_batch,
        dynamic_size=dynamic_size,
        size_divisor=size_divisor(model),
        color=color,
        mean=mean,
        std=std,
        letterbox_pad_value=LETTERBOX_PAD_VALUE,
    )


def heads_meta(model: nn.Module, heads: Sequence[str], layout: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per head: type, task, decode parameters and which raw outputs are its tensors."""
    meta = {}
    for h in heads:
        head = model.heads[h]
        info = dict(type=type(head).__name__, task=head.task)
        info.update({a: getattr(head, a) for a in HEAD_META_ATTRS if hasattr(head, a)})
        info["outputs"] = {
            ("" if o["key"] is None else o["key"]): o["name"] for o in layout if o["head"] == h
        }
        meta[h] = info
    return meta


def model_meta(
    model: nn.Module,
    names: Sequence[str],
    layout: Sequence[dict[str, Any]],
    size: tuple[int, int],
    batch_size: int,
    dynamic_batch: bool,
    dynamic_size: bool,
) -> dict[str, Any]:
    """The format-independent sidecar entries: input, outputs, heads, trunk depth run and the trunk."""
    return dict(
        input=input_meta(model, size, batch_size, dynamic_batch, dynamic_size),
        outputs=list(layout),
        heads=heads_meta(model, names, layout),
        trunk_stages_run=max(model.required_taps(names)) + 1,
        torch_version=torch.__version__,
        mtmnv3_version=MTMNV3_VERSION,
        trunk=dict(
            arch=model.trunk.arch,
            width_mult=model.trunk.width_mult,
            stage_plan=model.trunk.stage_plan.to_dict(),
        ),
    )


def size_text(size_hw: Sequence[int]) -> str:
    """``(height, width)`` -> ``'WxH'``, the way the command line writes sizes (``320x192``)."""
    return f"{int(size_hw[1])}x{int(size_hw[0])}"


def _check_input_size(meta: dict[str, Any], meta_file: Path) -> None:
    """The recorded input size is ``[height, width]``, positive multiples of the size divisor."""
    inp = meta.get("input")
    if not isinstance(inp, dict) or "size" not in inp:
        raise ValueError(f"{meta_file} records no input size (input.size)")
    size, div = inp["size"], inp.get("size_divisor", 1)
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        and isinstance(div, int)
        and div > 0
        and not any(s % div for s in size)
    ):
        raise ValueError(
            f"{meta_file} records input size {size!r}; expected [height, width], positive multiples of {div!r}"
        )


def example_input(size: tuple[int, int], batch: int) -> Tensor:
    """A seeded random normalised input of ``(batch, 3, *size)`` for tracing and parity checks."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch!r}")
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, *size, generator=generator)


def load_export_meta(path: str | os.PathLike, expected_format: str | None = None) -> dict[str, Any]:
    """The metadata of a deployed file: its sidecar (given the model file) or a split manifest (``.json``).

    ``expected_format`` (e.g. ``'mtmnv3.OpenVINOExport'``) also requires that format.

    Raises:
        FileNotFoundError: the model, its sidecar or the manifest is missing.
        ValueError: the JSON is not an mtmnv3 export of a supported version, or its
            input size is not ``[height, width]`` in multiples of its size divisor.
    """
    path = Path(path)
    meta_file = path if path.suffix == ".json" else sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"export not found: {path}")
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"export metadata not found: {meta_file} (every exporter writes it next to the model)"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_file} is not valid JSON: {e}") from e
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if path.suffix == ".json" and fmt not in SPLIT_FORMATS:
        raise ValueError(
            f"{meta_file} is not a split manifest (format {fmt!r}; expected one of {SPLIT_FORMATS})"
        )
    if path.suffix != ".json" and fmt not in FORMAT_BACKENDS:
        raise ValueError(
            f"{meta_file} is not an mtmnv3 export (format {fmt!r}; expected one of {sorted(FORMAT_BACKENDS)})"
        )
    if expected_format is not None and fmt != expected_format:
        raise ValueError(f"{meta_file} is not an {expected_format} file (format {fmt!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_file} has version {meta.get('version')!r}; this mtmnv3 reads {FORMAT_VERSION}"
        )
    _check_input_size(meta, meta_file)
    return meta
