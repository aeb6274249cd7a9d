"""OpenVINO export and CPU execution of the model's raw head tensors (fp32, or NNCF int8).

The exported graph is the same as the ONNX export's
(:class:`~mtmnv3.runtime.export_graphs.HeadOutputsGraph`): input ``images``,
the *normalised* ``float32 (N, 3, H, W)`` image, and one output per raw head
tensor, named as the sidecar's ``outputs`` list. It is converted with
OpenVINO's PyTorch frontend (``openvino.convert_model``), optionally quantized
to int8 with NNCF post-training quantization, and saved as an IR pair
``<name>.xml`` + ``<name>.bin`` with a ``<name>.xml.json`` sidecar of the same
schema as the ONNX one (:mod:`mtmnv3.runtime.export_meta`), so the shared
letterbox/normalise/decode code serves both runtimes.

:class:`OpenVINOSession` runs such an export on the CPU with the raw contract
of an ONNX Runtime session: ``run(images) -> [array, ...]`` in the sidecar's
output order.

Precision. The IR keeps fp32 weights (``save_model`` would compress them to
fp16 by default, which changes fp32 outputs), and sessions compile with
``INFERENCE_PRECISION_HINT='f32'``: on CPUs with bf16 support OpenVINO may
otherwise run the float parts in bf16, so an "fp32" export would not be fp32.
An int8 IR still runs its quantized convolutions in int8 under that hint.
Without it OpenVINO's "fp32" is bf16 on such CPUs: faster (OpenVINO's own
speed-up over ONNX Runtime fp32 on MobileNetV3 comes from there, not from its
f32 kernels, which run about as fast as ONNX Runtime's), but with bf16 errors
(docs/deployment.md, ``benchmarks/openvino_vs_ort.py``).

The ``openvino`` (and, for int8, ``nncf``) packages are optional: they are
imported inside the functions that need them (:func:`require_openvino`).
``benchmarks/runtime_matrix.py`` compares the speed with ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.core.fileio import atomic_write_json
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
    "EXPORT_FORMAT",
    "FORMAT_VERSION",
    "OpenVINOSession",
    "export_openvino",
    "nncf_quantize",
    "load_openvino_meta",
    "require_openvino",
]

EXPORT_FORMAT = "mtmnv3.OpenVINOExport"
#: The versions this module is written and tested against.
OPENVINO_REQUIREMENT = "openvino==2026.4.1"
NNCF_REQUIREMENT = "nncf==3.4.0"
#: Suffixes of the IR pair ``openvino.save_model`` writes.
XML_SUFFIX = ".xml"
BIN_SUFFIX = ".bin"
#: The OpenVINO device sessions compile for.
DEVICE = "CPU"
#: Inference precision of the float parts (see the module docstring).
INFERENCE_PRECISION = "f32"
#: One frame at a time, as soon as possible: a perception loop runs one
#: request after another, so OpenVINO's latency mode with a single stream
#: (all threads on the one request) fits; throughput mode would split the
#: threads into streams that a sequential caller never fills.
PERFORMANCE_HINT = "LATENCY"
NUM_STREAMS = 1
#: Threads are not pinned to cores: on a host whose cores other processes share,
#: a pinned inference thread waits for its own core while another one idles
#: (OpenVINO pins by default; ``benchmarks/openvino_vs_ort.py``, docs/deployment.md).
CPU_PINNING = False
#: NNCF's preset for CNNs: symmetric int8 weights and activations (its
#: default for non-transformer models, passed explicitly so the sidecar records it).
INT8_PRESET = "performance"
#: Precisions an export may have.
PRECISIONS = ("fp32", "int8")


# ---- optional packages --------------------------------------------------------------------------------
def require_openvino(int8: bool = False) -> ModuleType:
    """Import ``openvino`` (and ``nncf`` when ``int8``), or say how to install them.

    Returns:
        The ``openvino`` module.

    Raises:
        ImportError: a package is not installed.
    """
    try:
        import openvino
    except ImportError as e:
        raise ImportError(
            f"the openvino backend needs the openvino package: pip install {OPENVINO_REQUIREMENT} "
            "(see requirements/constraints.txt)"
        ) from e
    if int8:
        try:
            import nncf  # noqa: F401
        except ImportError as e:
            raise ImportError(
                f"int8 export with the openvino backend needs the nncf package: pip install "
                f"{NNCF_REQUIREMENT} (see requirements/constraints.txt)"
            ) from e
    return openvino


# ---- export -----------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix != XML_SUFFIX:
        raise ValueError(
            f"an OpenVINO export path must end in {XML_SUFFIX!r} (the IR's .xml), got {str(path)!r}"
        )
    return path


def _calibration_batches(
    calibration: Iterable[np.ndarray | Tensor],
    size: tuple[int, int],
    batch_size: int,
    dynamic_batch: bool,
    dynamic_size: bool,
) -> list[np.ndarray]:
    """Checked float32 ``(N, 3, H, W)`` calibration batches in the shape the graph takes.

    With a fixed batch the images are regrouped into batches of ``batch_size``
    (a last incomplete group is dropped); with a fixed size every image must
    have the export's size.
    """
    arrays = []
    for i, item in enumerate(calibration):
        a = item.detach().cpu().numpy() if isinstance(item, Tensor) else np.asarray(item)
        if a.ndim != 4 or a.shape[1] != 3 or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"calibration batch {i} must be a float (N, 3, H, W) array, got {a.dtype} {tuple(a.shape)}"
            )
        if not dynamic_size and tuple(a.shape[2:]) != size:
            raise ValueError(
                f"calibration batch {i} is {tuple(a.shape[2:])} (H, W), but the export's size is fixed at {size}"
            )
        arrays.append(np.ascontiguousarray(a, dtype=np.float32))
    if not arrays:
        raise ValueError("int8 export needs calibration batches, got an empty iterable")
    if dynamic_batch:
        return arrays
    if dynamic_size and len({a.shape[2:] for a in arrays}) > 1:
        # Images of different sizes cannot be regrouped; each batch must have the fixed batch size.
        bad = [tuple(a.shape) for a in arrays if a.shape[0] != batch_size]
        if bad:
            raise ValueError(
                f"calibration batches of mixed sizes must each hold {batch_size} images, got {bad}"
            )
        return arrays
    images = np.concatenate(arrays)
    if len(images) < batch_size:
        raise ValueError(f"calibration has {len(images)} images, fewer than one batch of {batch_size}")
    usable = len(images) // batch_size * batch_size
    return list(images[:usable].reshape(-1, batch_size, *images.shape[1:]))


def _convert(ov: ModuleType, graph: nn.Module, x: Tensor, shape: list[int], names: Sequence[str]) -> Any:
    """``HeadOutputsGraph`` -> ``openvino.Model`` with input ``images`` and outputs named ``names``."""
    with without_extra_state(graph), torch.no_grad(), warnings.catch_warnings():
        # The trunk's input check reads shapes as Python values: right for a check, but the tracer warns.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # OpenVINO's PyTorch frontend traces with torch.jit, which newer torch flags as deprecated.
        warnings.filterwarnings(
            "ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning
        )
        ov_model = ov.convert_model(
            graph, example_input=(x,), input=[(INPUT_NAME, ov.PartialShape(shape), ov.Type.f32)]
        )
    if len(ov_model.outputs) != len(names):
        raise RuntimeError(f"OpenVINO converted {len(ov_model.outputs)} outputs, expected {list(names)}")
    for port, name in zip(ov_model.outputs, names):
        port.get_tensor().set_names({name})
    return ov_model


def nncf_quantize(ov_model: Any, batches: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """NNCF post-training int8 quantization: the quantized model and the sidecar's ``quantizer`` entry.

    The one place that quantizes for OpenVINO (the model exporter and the latency
    table's block builder call it). ``batches``: one input array per item (a list
    of arrays for a model with several inputs).
    """
    import nncf

    preset = nncf.QuantizationPreset(INT8_PRESET)
    quantized = nncf.quantize(ov_model, nncf.Dataset(batches), preset=preset, subset_size=len(batches))
    details = dict(
        tool="nncf",
        nncf_version=nncf.__version__,
        method="post_training_quantization",
        preset=preset.value,
        calibration_batches=len(batches),
        calibration_images=int(sum(len(b) for b in batches)),
        fast_bias_correction=True,
    )
    return quantized, details


def _save_ir(ov: ModuleType, ov_model: Any, xml: Path) -> tuple[str, str]:
    """Write the IR pair to temp names in ``xml``'s folder, then rename; the two files' SHA-256.

    On any failure neither file (nor a temp file) remains.
    """
    xml.parent.mkdir(parents=True, exist_ok=True)
    bin_ = xml.with_suffix(BIN_SUFFIX)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{xml.name}.", suffix=".tmp", dir=xml.parent))
    placed: list[Path] = []
    try:
        tmp_xml = tmp_dir / f"model{XML_SUFFIX}"
        ov.save_model(ov_model, str(tmp_xml), compress_to_fp16=False)
        tmp_bin = tmp_xml.with_suffix(BIN_SUFFIX)
        hashes = _sha256(tmp_xml), _sha256(tmp_bin)
        for src, dst in ((tmp_bin, bin_), (tmp_xml, xml)):
            os.replace(src, dst)
            placed.append(dst)
    except BaseException:
        for file in placed:
            file.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return hashes


@torch.no_grad()
def export_openvino(
    model: nn.Module,
    path: str | os.PathLike,
    heads: Sequence[str] | str | None = None,
    input_size: int | Sequence[int] = 320,
    int8: bool = False,
    calibration: Iterable[np.ndarray | Tensor] | None = None,
    dynamic_size: bool = False,
    batch_size: int = 1,
    dynamic_batch: bool = False,
) -> dict[str, Any]:
    """Export the model's raw head tensors to an OpenVINO IR (+ ``<file>.xml.json`` sidecar).

    Args:
        model: a :class:`~mtmnv3.models.MultiTaskPerceptor` (put in eval mode here).
        path: output ``.xml``; the weights go to the ``.bin`` beside it. Both are
            written to temp names in the same folder and renamed at the end.
        heads: head names to export (list or comma-separated); default all.
        input_size: ``int`` or ``(height, width)`` of the (letterboxed) input, a
            multiple of the trunk's output stride.
        int8: quantize with NNCF post-training quantization (needs ``calibration``).
        calibration: normalised float32 ``(N, 3, H, W)`` batches (arrays or
            tensors), what the graph takes; real frames in practice
            (:func:`mtmnv3.studies.quantization.calibration.calibration_arrays`).
            With a fixed batch the images are regrouped into ``batch_size`` batches.
        dynamic_size: leave height and width dynamic (letterbox size from the sidecar).
        batch_size: example (and, unless ``dynamic_batch``, fixed) batch size.
        dynamic_batch: leave the batch dimension dynamic.

    Returns:
        The sidecar dict (also written to :func:`~mtmnv3.runtime.export_meta.sidecar_path`):
        ``format``, ``version``, ``file``, ``weights``, ``sha256`` (of the
        ``.xml``), ``weights_sha256`` (of the ``.bin``), ``precision``,
        ``quantizer`` (None for fp32), ``openvino_version`` and the
        format-independent entries of :func:`~mtmnv3.runtime.export_meta.model_meta`.

    Raises:
        ValueError: a path not ending in ``.xml``, unknown head, bad size, int8
            without calibration (or calibration without int8), calibration of the wrong shape.
        ImportError: ``openvino`` (or, for int8, ``nncf``) is not installed.
    """
    path = _check_path(path)
    if int8 and calibration is None:
        raise ValueError(
            "int8=True needs calibration batches (normalised float32 (N, 3, H, W) arrays, e.g. from "
            "mtmnv3.studies.quantization.calibration.calibration_arrays), got calibration=None"
        )
    if not int8 and calibration is not None:
        raise ValueError(
            f"calibration is only used with int8=True, got int8={int8!r} and calibration batches"
        )
    ov = require_openvino(int8)
    names = resolve_heads(model, heads)
    size = resolve_size(model, input_size)
    model.eval()
    x = example_input(size, batch_size)
    layout = output_layout(model.head_outputs(x, names), names)
    batches = _calibration_batches(calibration, size, batch_size, dynamic_batch, dynamic_size) if int8 else []
    shape = [-1 if dynamic_batch else batch_size, 3, *((-1, -1) if dynamic_size else size)]
    ov_model = _convert(ov, HeadOutputsGraph(model, names, layout), x, shape, [o["name"] for o in layout])
    quantizer = None
    if int8:
        ov_model, quantizer = nncf_quantize(ov_model, batches)
    xml_hash, bin_hash = _save_ir(ov, ov_model, path)
    meta = dict(
        format=EXPORT_FORMAT,
        version=FORMAT_VERSION,
        file=path.name,
        weights=path.with_suffix(BIN_SUFFIX).name,
        sha256=xml_hash,
        weights_sha256=bin_hash,
        precision="int8" if int8 else "fp32",
        quantizer=quantizer,
        openvino_version=ov.get_version(),
        **model_meta(model, names, layout, size, batch_size, dynamic_batch, dynamic_size),
    )
    try:
        atomic_write_json(sidecar_path(path), meta)
    except BaseException:
        path.unlink(missing_ok=True)
        path.with_suffix(BIN_SUFFIX).unlink(missing_ok=True)
        raise
    return meta


# ---- execution -------------------------------------------------------------------------------------------
def load_openvino_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The sidecar of an OpenVINO export, given its ``.xml``.

    Raises:
        FileNotFoundError: the ``.xml``, the ``.bin`` or the sidecar is missing.
        ValueError: the sidecar is not an mtmnv3 OpenVINO export of a supported version.
    """
    weights = Path(path).with_suffix(BIN_SUFFIX)
    if Path(path).is_file() and not weights.is_file():
        raise FileNotFoundError(f"OpenVINO export file not found: {weights}")
    return load_export_meta(path, EXPORT_FORMAT)


class OpenVINOSession:
    """An OpenVINO CPU session of an export: normalised images -> raw outputs in the sidecar's order.

    Compiled with the latency hint, one stream, f32 inference precision and
    no thread pinning (see the module docstring, :data:`PERFORMANCE_HINT` and
    :data:`CPU_PINNING`); one infer request is created once and reused by
    every :meth:`run`, which passes the input without copying it.

    Args:
        path: the export's ``.xml`` (with its ``.bin`` and ``.xml.json`` sidecar).
        threads: inference threads (``INFERENCE_NUM_THREADS``); None leaves
            OpenVINO's default (the available cores).

    Attributes:
        meta: the sidecar dict.
        output_names: the raw outputs' names, in :meth:`run`'s order.
        precision: ``'fp32'`` or ``'int8'``.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        ov = require_openvino()
        self.path = Path(path)
        self.meta = load_openvino_meta(self.path)
        self.output_names: list[str] = [o["name"] for o in self.meta["outputs"]]
        self.precision: str = self.meta["precision"]
        self.threads = threads
        inp = self.meta["input"]
        self._batch: int | None = inp["batch"]
        self._size: tuple[int, int] | None = None if inp["dynamic_size"] else tuple(inp["size"])
        self._divisor = int(inp["size_divisor"])
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": PERFORMANCE_HINT,
            "NUM_STREAMS": NUM_STREAMS,
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION,
            "ENABLE_CPU_PINNING": CPU_PINNING,
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.core = ov.Core()
        self.compiled = self.core.compile_model(self.core.read_model(str(self.path)), DEVICE, config)
        got = {n for port in self.compiled.outputs for n in port.get_names()}
        missing = [n for n in self.output_names if n not in got]
        if missing:
            raise ValueError(f"{self.path} has no outputs named {missing}; it has {sorted(got)}")
        self._ports = [self.compiled.output(n) for n in self.output_names]
        self._request = self.compiled.create_infer_request()

    def _check(self, images: np.ndarray) -> None:
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.float32:
            raise TypeError(f"images must be float32 (normalised), got {images.dtype}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {images.shape}")
        if self._batch is not None and images.shape[0] != self._batch:
            raise ValueError(
                f"{self.path.name} was exported for batch {self._batch}, got images of batch {images.shape[0]}"
            )
        hw = tuple(images.shape[2:])
        if self._size is not None and hw != self._size:
            raise ValueError(
                f"{self.path.name} was exported for a fixed (H, W) of {self._size}, got images of {hw}; "
                "export with dynamic_size=True to run other sizes"
            )
        if any(s % self._divisor for s in hw):
            raise ValueError(f"image (H, W) must be multiples of {self._divisor}, got {hw}")

    def run(self, images: np.ndarray) -> list[np.ndarray]:
        """Run one batch.

        Args:
            images: normalised float32 ``(N, 3, H, W)`` (what the sidecar's ``input`` describes).

        Returns:
            The raw outputs, one array each, in :attr:`output_names` order (the
            sidecar's ``outputs``), e.g. ``(N, C)`` logits and ``(N, K, H/s, W/s)`` maps.

        Raises:
            TypeError: not a float32 numpy array.
            ValueError: a shape the export cannot take (another fixed batch or size).
        """
        self._check(images)
        # share_inputs: the request reads the caller's array in place (no copy into its own
        # input tensor; the call is synchronous, so the array outlives the inference). The
        # outputs are copies: the request's buffers are overwritten by the next run.
        results = self._request.infer({INPUT_NAME: np.ascontiguousarray(images)}, share_inputs=True)
        return [np.asarray(results[port]) for port in self._ports]
