"""ExecuTorch deployment of the multi-task model: export to an XNNPACK ``.pte`` and run it on raw batches.

:func:`export_executorch` captures the same graph as the ONNX export
(:class:`~mtmnv3.runtime.export_graphs.HeadOutputsGraph`: normalised
``float32 (N, 3, H, W)`` images -> the named heads' raw tensors) with
``torch.export.export``, optionally quantizes it to int8 with PT2E
(``XNNPACKQuantizer``, per-channel symmetric weights, static per-tensor
activations calibrated on the given batches), lowers it with the XNNPACK
partitioner and writes the ``.pte`` plus a ``<file>.pte.json`` sidecar with the
schema of :mod:`mtmnv3.runtime.export_meta`, so the same decode code runs its
outputs. The input size and batch are fixed in the file (XNNPACK plans its
kernels for static shapes).

:class:`ExecuTorchSession` loads the file with ``executorch.runtime.Runtime``
and offers the raw contract of an ONNX Runtime session: one normalised batch
in, the raw outputs in the sidecar's ``outputs`` order out.

The executorch package is optional: this module imports it only inside
functions (:func:`require_executorch`). ``benchmarks/runtime_matrix.py``
times fp32 against int8.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.runtime.export_graphs import INPUT_NAME, HeadOutputsGraph, output_layout, without_extra_state
from mtmnv3.runtime.export_meta import (
    FORMAT_VERSION,
    example_input,
    load_export_meta,
    model_meta,
    resolve_heads,
    resolve_size,
    sidecar_path,
)

__all__ = [
    "EXECUTORCH_FORMAT",
    "EXECUTORCH_REQUIREMENT",
    "ExecuTorchSession",
    "export_executorch",
    "lower_to_xnnpack",
    "quantize_for_xnnpack",
    "require_executorch",
]

EXECUTORCH_FORMAT = "mtmnv3.ExecuTorchExport"
#: The executorch release this module is written and tested against.
EXECUTORCH_REQUIREMENT = "executorch==1.5.1"
#: Precision names written to the sidecar.
FP32, INT8 = "fp32", "int8"
#: The quantizer recorded in the sidecar of an int8 export.
QUANTIZER_NAME = "XNNPACKQuantizer"
#: Per-channel symmetric int8 weights (the XNNPACK quantizer's per-channel config).
PER_CHANNEL = True
#: The one method an exported program has.
METHOD_NAME = "forward"
#: Calibration example batch of the PT2E capture: torch.export specialises size-1
#: dimensions, so the batch axis is made symbolic with a two-image example.
CALIBRATION_EXAMPLE_BATCH = 2
#: Suffix of the temp files an export writes before renaming them into place.
TEMP_SUFFIX = ".tmp"


def require_executorch() -> ModuleType:
    """Import executorch, or explain how to install it.

    Returns:
        The ``executorch`` package.

    Raises:
        ImportError: executorch is not installed.
    """
    try:
        import executorch
    except ImportError as e:
        raise ImportError(
            f"the executorch backend needs the executorch package: pip install {EXECUTORCH_REQUIREMENT} "
            "(see requirements/constraints.txt)"
        ) from e
    return executorch


# ---- export ------------------------------------------------------------------------------
def _calibration_batches(
    calibration: Iterable[np.ndarray | Tensor] | None, size: tuple[int, int]
) -> list[Tensor]:
    """Checked calibration batches: float32 tensors ``(N, 3, H, W)`` of the export size."""
    if calibration is None:
        raise ValueError(
            "int8 export needs calibration batches (normalised float32 (N, 3, H, W) images), got None"
        )
    batches = []
    for b in calibration:
        t = b if isinstance(b, Tensor) else torch.from_numpy(np.asarray(b))
        t = t[None] if t.ndim == 3 else t
        if t.ndim != 4 or tuple(t.shape[1:]) != (3, *size):
            raise ValueError(
                f"calibration batches must be (N, 3, {size[0]}, {size[1]}) or (3, {size[0]}, {size[1]}), "
                f"got shape {tuple(t.shape)}"
            )
        batches.append(t.float())
    if not batches:
        raise ValueError("int8 export needs calibration batches, got an empty iterable")
    return batches


def _contiguous_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the model in the default (NCHW-contiguous) memory format.

    A model built with ``channels_last`` keeps its conv weights and converts
    its input to channels-last; XNNPACK's lowering requires NCHW-contiguous
    weights (its ``ChannelsLastTaggedReshapePass`` asserts so) and picks its own
    internal layout, so the export runs on a copy without that conversion. Extra
    (non-tensor) state is left out of the copy.
    """
    with without_extra_state(model):
        clone = copy.deepcopy(model)
    clone.to(memory_format=torch.contiguous_format)
    if getattr(clone, "channels_last", False):
        clone.channels_last = False
    return clone.eval()


def quantize_for_xnnpack(
    graph: nn.Module,
    example: tuple[Tensor, ...],
    calibration: Iterable[tuple[Tensor, ...]],
    dynamic_batch: bool = False,
) -> nn.Module:
    """PT2E post-training int8 for XNNPACK: capture, ``prepare_pt2e``, run every calibration sample, ``convert_pt2e``.

    The one place that quantizes for ExecuTorch (the model exporter and the
    latency table's block builder both call it). ``XNNPACKQuantizer`` with the
    symmetric per-channel config.

    Args:
        graph: the module to quantize (eval mode, contiguous memory format).
        example: example inputs for the capture.
        calibration: input tuples of real data.
        dynamic_batch: capture with a symbolic batch dimension (calibration batches of any size).
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=PER_CHANNEL))
    shapes = tuple({0: torch.export.Dim.AUTO} for _ in example) if dynamic_batch else None
    captured = torch.export.export(graph, example, dynamic_shapes=shapes, strict=False)
    prepared = prepare_pt2e(captured.module(), quantizer)
    for sample in calibration:
        prepared(*sample)
    return convert_pt2e(prepared)


def lower_to_xnnpack(module: nn.Module, example: tuple[Tensor, ...]) -> bytes:
    """``torch.export`` at the example's fixed shapes, XNNPACK lowering: the ``.pte`` bytes.

    The one place that lowers to ExecuTorch (the model exporter and the latency table use it).
    """
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    exported = torch.export.export(module, example, strict=False)
    edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
    return bytes(edge.to_executorch().buffer)


def _quantize(graph: nn.Module, batches: Sequence[Tensor], size: tuple[int, int]) -> nn.Module:
    """The model's int8 graph, calibrated on batches of any size."""
    example = example_input(size, CALIBRATION_EXAMPLE_BATCH)
    return quantize_for_xnnpack(graph, (example,), ((b,) for b in batches), dynamic_batch=True)


def _lower(module: nn.Module, example: Tensor) -> bytes:
    return lower_to_xnnpack(module, (example,))


def _calibration_meta(batches: Sequence[Tensor]) -> dict[str, Any]:
    return dict(
        name=QUANTIZER_NAME,
        per_channel=PER_CHANNEL,
        symmetric=True,
        activations="static per-tensor int8",
        calibration_batches=len(batches),
        calibration_images=int(sum(len(b) for b in batches)),
    )


@torch.no_grad()
def export_executorch(
    model: nn.Module,
    path: str | os.PathLike,
    heads: Sequence[str] | str | None = None,
    input_size: int | Sequence[int] = 320,
    int8: bool = False,
    calibration: Iterable[np.ndarray | Tensor] | None = None,
    batch_size: int = 1,
) -> dict[str, Any]:
    """Export the model's raw head tensors to an XNNPACK ExecuTorch program (+ ``<file>.json`` sidecar).

    Args:
        model: a :class:`~mtmnv3.models.MultiTaskPerceptor` (put in eval mode
            here; the export captures a copy, see :func:`_contiguous_copy`).
        path: output ``.pte`` file. It and its sidecar are written under temp
            names and renamed at the end: a failed export leaves neither.
        heads: head names to export (list or comma-separated); default all.
        input_size: ``int`` or ``(height, width)`` of the (letterboxed) input, a
            multiple of the trunk's output stride; fixed in the program.
        int8: quantize with PT2E (``XNNPACKQuantizer``, per-channel symmetric).
        calibration: for int8, normalised float32 batches ``(N, 3, H, W)`` (or
            single ``(3, H, W)`` images) of the export size, every one run
            through the observers; real frames in practice.
        batch_size: the program's fixed batch size.

    Returns:
        The sidecar dict (also written to :func:`~mtmnv3.runtime.export_meta.sidecar_path`):
        ``format``, ``version``, ``file``, ``sha256``, ``precision``,
        ``quantizer`` (int8 only, else None), ``executorch_version`` and the
        entries of :func:`~mtmnv3.runtime.export_meta.model_meta`.

    Raises:
        ImportError: executorch is not installed.
        ValueError: unknown head, bad size or batch size, int8 without
            calibration, calibration batches of another size.
        TypeError: ``int8`` is not a bool.
    """
    require_executorch()
    from executorch.version import __version__ as executorch_version

    if not isinstance(int8, bool):
        raise TypeError(f"int8 must be a bool, got {type(int8).__name__} {int8!r}")
    names = resolve_heads(model, heads)
    size = resolve_size(model, input_size)
    x = example_input(size, batch_size)
    batches = _calibration_batches(calibration, size) if int8 else []
    model.eval()
    layout = output_layout(model.head_outputs(x, names), names)
    path = Path(path)
    graph = HeadOutputsGraph(_contiguous_copy(model), names, layout).eval()
    module = _quantize(graph, batches, size) if int8 else graph
    data = _lower(module, x)
    meta = dict(
        format=EXECUTORCH_FORMAT,
        version=FORMAT_VERSION,
        file=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        precision=INT8 if int8 else FP32,
        quantizer=_calibration_meta(batches) if int8 else None,
        executorch_version=executorch_version,
        backend="XnnpackBackend",
        **model_meta(model, names, layout, size, batch_size, dynamic_batch=False, dynamic_size=False),
    )
    _write_pair(path, data, meta)
    return meta


def _write_pair(path: Path, data: bytes, meta: dict[str, Any]) -> None:
    """Write the program and its sidecar under temp names, then rename both (nothing half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = sidecar_path(path)
    tmp_pte = path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")
    tmp_json = sidecar.with_name(f".{sidecar.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        with atomic_open(tmp_pte, "wb") as f:
            f.write(data)
        atomic_write_json(tmp_json, meta)
        os.replace(tmp_pte, path)
        os.replace(tmp_json, sidecar)
    except BaseException:
        for tmp in (tmp_pte, tmp_json):
            tmp.unlink(missing_ok=True)
        raise


# ---- run ---------------------------------------------------------------------------------
def load_executorch_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of an ExecuTorch export (given the ``.pte``), checked.

    Raises:
        FileNotFoundError: the program or its sidecar is missing.
        ValueError: the sidecar is not an ExecuTorch export of a supported version.
    """
    return load_export_meta(path, EXECUTORCH_FORMAT)


#: Resizes of executorch's threadpool made through :func:`_set_threads` (see ExecuTorchSession).
_POOL_GENERATION = [0]


def _set_threads(threads: int) -> None:
    """Resize executorch's process-wide CPU threadpool (the one XNNPACK runs on) if it differs.

    Every resize replaces the pool: the XNNPACK delegates of methods loaded
    before it still point at the old one, so sessions reload their method
    when the generation counter has moved (:meth:`ExecuTorchSession.run`).
    """
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
        _POOL_GENERATION[0] += 1


class ExecuTorchSession:
    """An XNNPACK ``.pte`` export run through ``executorch.runtime``: normalised batch -> raw outputs.

    The raw contract of an ONNX Runtime session of the same export: the
    input is the sidecar's normalised ``float32 (N, 3, H, W)`` batch at the
    exported (fixed) size and batch, the outputs come back as numpy arrays in
    the sidecar's ``outputs`` order (``output_names``).

    Threads. executorch 1.5.1 has one process-wide CPU threadpool that
    XNNPACK's kernels run on; its Python bindings expose
    ``executorch.extension.pybindings.portable_lib._threadpool_get_thread_count``
    and ``_unsafe_reset_threadpool(n)`` (marked experimental). There is no
    per-program or per-method setting. A reset *replaces* the pool, and an
    XNNPACK delegate takes the pool when its method is loaded: a method loaded
    before a reset keeps a pointer to the freed pool, and running it aborts or
    hangs the process. So a session with ``threads`` set resizes the pool
    before it loads its method, and before each run checks the pool: when it
    has another size (another session's setting) the session resizes it back;
    when any resize made through this module happened since its method was
    loaded, it loads the method again. Resets made elsewhere are not seen:
    do not call ``_unsafe_reset_threadpool`` beside sessions, and do not run
    sessions with different ``threads`` from several threads at once.
    ``threads=None`` leaves the pool's size as it is (executorch sizes it to
    the machine's cores).

    Args:
        path: the ``.pte`` file; its sidecar ``<file>.json`` must be beside it.
        threads: CPU threads for XNNPACK (None: leave the pool as it is).

    Attributes:
        meta: the sidecar dict.
        output_names: the raw outputs' names, in order.
        input_name: the input's name (``images``).
        input_shape: the fixed ``(N, 3, H, W)`` the program takes.
        threads: the requested thread count, or None.

    Raises:
        ImportError: executorch is not installed.
        FileNotFoundError: missing program or sidecar.
        ValueError: a bad sidecar or ``threads``, or the program's output count
            differs from the sidecar's.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        require_executorch()
        from executorch.runtime import Runtime

        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        self.path = Path(path)
        self.meta = load_executorch_meta(self.path)
        self.threads = threads
        self.output_names = [o["name"] for o in self.meta["outputs"]]
        self.input_name = self.meta["input"].get("name", INPUT_NAME)
        self.input_shape = (
            int(self.meta["input"]["batch"]),
            3,
            *(int(s) for s in self.meta["input"]["size"]),
        )
        self._runtime = Runtime.get()
        self._load_method()
        got = self._method.metadata.num_outputs()
        if got != len(self.output_names):
            raise ValueError(
                f"{self.path} returns {got} outputs but its sidecar lists {len(self.output_names)}: "
                f"{self.output_names}"
            )

    def _load_method(self) -> None:
        """(Re)load the program and its method on the current threadpool (resized first when
        ``threads`` is set). The program is loaded again too: a program caches its methods."""
        if self.threads is not None:
            _set_threads(self.threads)
        self._program = self._runtime.load_program(self.path)
        self._method = self._program.load_method(METHOD_NAME)
        if self._method is None:
            raise ValueError(f"{self.path} has no {METHOD_NAME!r} method")
        self._generation = _POOL_GENERATION[0]

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """Run one batch.

        Args:
            images: normalised float32 ``(N, 3, H, W)`` of ``input_shape``.

        Returns:
            The raw outputs (float32 numpy arrays), in ``output_names`` order.

        Raises:
            ValueError: ``images`` has another shape than the program's.
        """
        images = np.asarray(images)
        if tuple(images.shape) != self.input_shape:
            raise ValueError(
                f"{self.path.name} takes {self.input_name} of shape {self.input_shape} (fixed at export), "
                f"got {tuple(images.shape)}"
            )
        if self.threads is not None:
            _set_threads(self.threads)
        if self._generation != _POOL_GENERATION[0]:
            self._load_method()
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        return [t.numpy() for t in self._method.execute((x,))]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({str(self.path)!r}, precision={self.meta.get('precision')!r}, "
            f"threads={self.threads}, outputs={self.output_names})"
        )
