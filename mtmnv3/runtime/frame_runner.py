"""Per-frame inference on any backend behind one interface.

:class:`TorchFrameRunner` (eager PyTorch), :class:`ExportedFrameRunner`
(ONNX Runtime, ExecuTorch/XNNPACK or OpenVINO: the model exported on demand,
one file per head subset, with a dynamic input size where the runtime takes
one and one file per input shape where it does not) and
:class:`DeployedFrameRunner` (a file exported earlier) all take an RGB
``uint8 (H, W, 3)`` frame plus the heads and input size a frame plan asks
for, and return a :class:`~mtmnv3.runtime.deployed.FramePrediction` in
original frame pixels. All use the same letterbox transform and the same
decode code, so switching runtime changes speed, not results (the parity
tests bound the difference per runtime).

Input size. ``input_size`` is the long side of the network input. By
default (``keep_aspect=True``) each frame is letterboxed into the smallest
rectangle that keeps its aspect with both sides multiples of the network
stride (:func:`~mtmnv3.data.transforms.keep_aspect_shape`): a 1920x1080 frame
at 320 runs at 320x192 (w x h), not 320x320. ``keep_aspect=False`` letterboxes
into the ``input_size`` square as the training pipelines do. A fixed-shape
deployed file always runs at its own shape, whatever the frame's: frames are
letterboxed into it, aspect kept, the rest padded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.transforms import DEFAULT_STRIDE, Letterbox, keep_aspect_shape
from mtmnv3.runtime.deployed import DeployedRunner, FramePrediction
from mtmnv3.runtime.export_meta import LETTERBOX_PAD_VALUE, size_text
from mtmnv3.runtime.sessions import BACKENDS, check_backend

__all__ = [
    "BACKENDS",
    "DYNAMIC_SIZE_BACKENDS",
    "DeployedFrameRunner",
    "ExportedFrameRunner",
    "TorchFrameRunner",
    "build_frame_runner",
    "export_for_backend",
    "input_shape",
]

#: Runtimes whose exports take any input size (the others get one file per input shape).
DYNAMIC_SIZE_BACKENDS = ("onnxruntime", "openvino")
#: File suffix of each runtime's export.
EXPORT_SUFFIXES = {"onnxruntime": ".onnx", "executorch": ".pte", "openvino": ".xml"}

#: Calibration of int8 exports: normalised batches, or a function of the export's (height, width) giving them.
Calibration = Sequence[np.ndarray] | Callable[[tuple[int, int]], Sequence[np.ndarray]]


def _check_frame(frame: np.ndarray) -> None:
    if not (
        isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    ):
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {what}")


def _check_size(size: int, divisor: int = DEFAULT_STRIDE) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0 or size % divisor:
        raise ValueError(f"input size must be a positive multiple of {divisor}, got {size!r}")
    return int(size)


def _stride(model: nn.Module) -> int:
    """The trunk's deepest stride (every input side is a multiple of it); 32 without a trunk."""
    info = getattr(getattr(model, "trunk", None), "feature_info", None)
    return max(int(f["stride"]) for f in info) if info else DEFAULT_STRIDE


def input_shape(
    frame_hw: Sequence[int], size: int, keep_aspect: bool = True, stride: int = DEFAULT_STRIDE
) -> tuple[int, int]:
    """The network input ``(height, width)`` of a frame at long side ``size``.

    With ``keep_aspect`` the smallest stride-multiple rectangle that keeps the
    frame's aspect (:func:`~mtmnv3.data.transforms.keep_aspect_shape`), else the ``size`` square.
    """
    size = _check_size(size, stride)
    return keep_aspect_shape(frame_hw, size, stride) if keep_aspect else (size, size)


class TorchFrameRunner:
    """Eager PyTorch: letterbox -> the model's data preprocessor -> ``predict``.

    Args:
        model: a :class:`~mtmnv3.models.MultiTaskPerceptor` (put in eval mode here).
        input_size: default long side of the input (a multiple of the trunk's stride, 32).
        keep_aspect: letterbox each frame into the rectangle that keeps its aspect
            (default); False: into the ``input_size`` square.
    """

    backend = "torch"

    def __init__(self, model: nn.Module, input_size: int = 320, keep_aspect: bool = True) -> None:
        self.model = model.eval()
        self.stride = _stride(model)
        self.input_size = _check_size(input_size, self.stride)
        self.keep_aspect = bool(keep_aspect)
        self.heads = tuple(model.heads)
        self._letterbox: dict[tuple[int, int], Letterbox] = {}

    def input_shape(self, frame_hw: Sequence[int], input_size: int | None = None) -> tuple[int, int]:
        """The ``(height, width)`` a frame of ``frame_hw`` runs at (long side ``input_size``)."""
        size = self.input_size if input_size is None else input_size
        return input_shape(frame_hw, size, self.keep_aspect, self.stride)

    def _box(self, shape: tuple[int, int]) -> Letterbox:
        if shape not in self._letterbox:
            self._letterbox[shape] = Letterbox((shape[1], shape[0]), pad_val=LETTERBOX_PAD_VALUE)
        return self._letterbox[shape]

    @torch.no_grad()
    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        shape = self.input_shape(frame.shape[:2], input_size)
        names = self.heads if heads is None else tuple(heads)
        boxed = self._box(shape)({"img": frame})
        meta = dict(
            ori_shape=frame.shape[:2],
            img_shape=boxed["img"].shape[:2],
            pad_param=boxed["pad_param"],
            scale_factor=boxed["scale_factor"],
        )
        chw = torch.from_numpy(np.ascontiguousarray(boxed["img"].transpose(2, 0, 1)))
        data = self.model.data_preprocessor(
            {"inputs": [chw], "data_samples": [MultiTaskDataSample(metainfo=meta)]}, False
        )
        sample = self.model.predict(data["inputs"], data["data_samples"], heads=names)[0]
        return _to_prediction(sample)


def _to_prediction(sample: MultiTaskDataSample) -> FramePrediction:
    probs = None
    if "pred_score" in sample:
        probs = sample.pred_score.float().cpu().numpy()
    if "pred_instances" not in sample:
        return FramePrediction(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), None, probs
        )
    inst = sample.pred_instances
    emb = inst.embeddings.cpu().numpy() if "embeddings" in inst else None
    return FramePrediction(
        bboxes=inst.bboxes.cpu().numpy().astype(np.float32),
        scores=inst.scores.cpu().numpy().astype(np.float32),
        labels=inst.labels.cpu().numpy().astype(np.int64),
        embeddings=emb,
        class_probs=probs,
    )


def export_for_backend(
    model: nn.Module,
    backend: str,
    path: str | os.PathLike,
    heads: Sequence[str] | None = None,
    input_size: int | Sequence[int] = 320,
    dynamic_size: bool = False,
    int8: bool = False,
    calibration: Sequence[np.ndarray] | None = None,
) -> dict:
    """Export ``model`` for one runtime with that runtime's own tools; returns the sidecar.

    ``input_size`` is an ``int`` (a square) or ``(height, width)``: the file's
    input shape (with ``dynamic_size``, its default shape).

    ONNX Runtime gets the ONNX file (TorchScript exporter: fast at start-up);
    ExecuTorch a ``.pte`` lowered to XNNPACK (int8: its PT2E quantizer);
    OpenVINO an IR ``.xml`` (int8: NNCF). ONNX Runtime int8 is the
    quantization study's (``mtmnv3 quantize``), not this function's.

    Raises:
        ValueError: an unknown backend, ``'torch'``, or int8 for ONNX Runtime.
        ImportError: the runtime is not installed (the message names the package).
    """
    check_backend(backend)
    if backend == "onnxruntime":
        if int8:
            raise ValueError("int8 for onnxruntime is made by `mtmnv3 quantize` (static QDQ), not at export")
        from mtmnv3.runtime.onnx_export import export_onnx

        return export_onnx(
            model, path, heads=heads, input_size=input_size, exporter="torchscript", dynamic_size=dynamic_size
        )
    if backend == "executorch":
        if dynamic_size:
            raise ValueError("executorch exports have a fixed input size; export one file per size")
        from mtmnv3.runtime.executorch_runtime import export_executorch

        return export_executorch(
            model, path, heads=heads, input_size=input_size, int8=int8, calibration=calibration
        )
    if backend == "openvino":
        from mtmnv3.runtime.openvino_runtime import export_openvino

        return export_openvino(
            model,
            path,
            heads=heads,
            input_size=input_size,
            int8=int8,
            calibration=calibration,
            dynamic_size=dynamic_size,
        )
    raise ValueError(f"backend {backend!r} runs the PyTorch model itself; there is nothing to export")


class ExportedFrameRunner:
    """A deployment runtime: the model exported on first use of each head subset (and input shape).

    Args:
        model: the PyTorch model to export (kept only for exporting).
        backend: ``'onnxruntime'``, ``'executorch'`` or ``'openvino'``.
        input_size: default long side of the input (a multiple of the trunk's stride).
        threads: intra-op threads of the runtime.
        export_dir: where the files go (default: a temp folder removed on close).
        int8: export int8 files (ExecuTorch and OpenVINO), calibrated on ``calibration``.
        calibration: normalised ``float32 (N, 3, H, W)`` batches of real frames for int8,
            or a function of the export's ``(height, width)`` that gives them (a
            fixed-shape runtime exports one file per input shape, each calibrated at its shape).
        keep_aspect: run each frame at the rectangle that keeps its aspect
            (default); False: at the ``input_size`` square.
    """

    def __init__(
        self,
        model: nn.Module,
        backend: str = "onnxruntime",
        input_size: int = 320,
        threads: int = 2,
        export_dir: str | os.PathLike | None = None,
        int8: bool = False,
        calibration: Calibration | None = None,
        keep_aspect: bool = True,
    ) -> None:
        if backend == "torch" or check_backend(backend) not in EXPORT_SUFFIXES:
            raise ValueError(f"ExportedFrameRunner runs {sorted(EXPORT_SUFFIXES)}, got {backend!r}")
        if int8 and not calibration:
            raise ValueError("int8 needs calibration batches of real frames")
        self.backend = backend
        self.model = model.eval()
        self.stride = _stride(model)
        self.input_size = _check_size(input_size, self.stride)
        self.keep_aspect = bool(keep_aspect)
        self.threads = int(threads)
        self.int8 = bool(int8)
        self.calibration = calibration
        self.heads = tuple(model.heads)
        self._tmp = None
        if export_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"mtmnv3-{backend}-")
            export_dir = self._tmp.name
        self.export_dir = Path(export_dir)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self._runners: dict[tuple, DeployedRunner] = {}

    def input_shape(self, frame_hw: Sequence[int], input_size: int | None = None) -> tuple[int, int]:
        """The ``(height, width)`` a frame of ``frame_hw`` runs at (long side ``input_size``)."""
        size = self.input_size if input_size is None else input_size
        return input_shape(frame_hw, size, self.keep_aspect, self.stride)

    def _shape(self, input_size: int | Sequence[int] | None) -> tuple[int, int]:
        if input_size is None:
            return (self.input_size, self.input_size)
        if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
            size = _check_size(input_size, self.stride)
            return (size, size)
        shape = tuple(input_size)
        if len(shape) != 2:
            raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
        return (_check_size(shape[0], self.stride), _check_size(shape[1], self.stride))

    def runner(
        self, heads: Sequence[str] | None = None, input_size: int | Sequence[int] | None = None
    ) -> DeployedRunner:
        """The deployed file of a head subset, made on first use.

        On fixed-shape runtimes there is one file per input shape: ``input_size``
        is a square ``int`` or ``(height, width)`` (default: the ``input_size`` square).
        """
        names = tuple(sorted(self.heads if heads is None else heads))
        unknown = [h for h in names if h not in self.heads]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; the model has {list(self.heads)}")
        shape = self._shape(input_size)
        dynamic = self.backend in DYNAMIC_SIZE_BACKENDS
        key = names if dynamic else (*names, *shape)
        if key not in self._runners:
            stem = (
                "model_"
                + "_".join(names)
                + ("" if dynamic else f"_{size_text(shape)}")
                + ("_int8" if self.int8 else "")
            )
            path = self.export_dir / (stem + EXPORT_SUFFIXES[self.backend])
            calibration = self.calibration
            if self.int8 and callable(calibration):
                calibration = calibration(shape)
            export_for_backend(
                self.model,
                self.backend,
                path,
                heads=list(names),
                input_size=shape,
                dynamic_size=dynamic,
                int8=self.int8,
                calibration=calibration,
            )
            self._runners[key] = DeployedRunner(path, threads=self.threads, input_color="rgb")
        return self._runners[key]

    def warm_up(
        self,
        head_sets: Sequence[Sequence[str]],
        sizes: Sequence[int] = (),
        frame_hw: Sequence[int] | None = None,
    ) -> None:
        """Export and open the files of the given head subsets (and long sides) now, not mid-video.

        ``frame_hw`` is the frames' ``(height, width)``: the files get the input
        shapes those frames will run at (default: the ``sizes`` squares).
        """
        for heads in head_sets:
            for size in sizes or (None,):
                shape = self._shape(size) if frame_hw is None else self.input_shape(frame_hw, size)
                self.runner(heads, shape)

    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        shape = self.input_shape(frame.shape[:2], input_size)
        run = self.runner(heads, shape)
        if run.input_size != shape:
            run.set_input_size(shape)
        return run.predict(frame)

    def close(self) -> None:
        self._runners.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class DeployedFrameRunner:
    """A deployed file (already exported, int8 or fp32) as a frame runner.

    The file runs every head it holds on each frame; ``heads`` must be among
    them. A fixed-shape file runs every frame at its own ``(height, width)``
    (frames of any shape are letterboxed into it, aspect kept, the rest
    padded; a square file works for any frame); its long side is
    :attr:`input_size`, the only ``input_size`` it accepts. A dynamic-size file
    runs each frame at the rectangle that keeps its aspect, with the file's long
    side unless ``input_size`` asks for another (``keep_aspect=False``: squares).

    Args:
        path: the deployed file (``.onnx``, ``.pte``, ``.xml``) with its sidecar.
        model: the PyTorch model it was exported from (its heads' tasks are looked up there).
        threads: intra-op threads of the runtime.
        keep_aspect: see above (dynamic-size files only).
    """

    def __init__(
        self, path: str | os.PathLike, model: nn.Module, threads: int = 2, keep_aspect: bool = True
    ) -> None:
        self.model = model.eval()
        self.deployed = DeployedRunner(path, threads=threads, input_color="rgb")
        self.backend = self.deployed.backend
        self.heads = tuple(self.deployed.meta["heads"])
        inp = self.deployed.meta["input"]
        self.file_shape: tuple[int, int] = (int(inp["size"][0]), int(inp["size"][1]))
        self.dynamic_size = bool(inp["dynamic_size"])
        self.stride = int(inp["size_divisor"])
        self.keep_aspect = bool(keep_aspect)
        self.input_size = max(self.file_shape)

    def input_shape(self, frame_hw: Sequence[int], input_size: int | None = None) -> tuple[int, int]:
        """The ``(height, width)`` a frame of ``frame_hw`` runs at.

        Raises:
            ValueError: another ``input_size`` than the long side of a fixed-shape file.
        """
        if not self.dynamic_size:
            if input_size is not None and input_size != self.input_size:
                raise ValueError(
                    f"this file has a fixed input shape {size_text(self.file_shape)} (WxH, long side "
                    f"{self.input_size}), got input_size={input_size!r}"
                )
            return self.file_shape
        size = self.input_size if input_size is None else input_size
        return input_shape(frame_hw, size, self.keep_aspect, self.stride)

    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        missing = [h for h in heads or () if h not in self.heads]
        if missing:
            raise ValueError(f"heads {missing} are not in the deployed file; it has {list(self.heads)}")
        shape = self.input_shape(frame.shape[:2], input_size)
        if self.deployed.input_size != shape:
            self.deployed.set_input_size(shape)
        return self.deployed.predict(frame)

    def close(self) -> None:
        """Nothing to release (the session closes with the runner)."""


def build_frame_runner(
    model: nn.Module,
    backend: str,
    input_size: int = 320,
    threads: int = 2,
    export_dir: str | os.PathLike | None = None,
    int8: bool = False,
    calibration: Calibration | None = None,
    keep_aspect: bool = True,
) -> TorchFrameRunner | ExportedFrameRunner:
    """The frame runner of ``backend``: one of :data:`~mtmnv3.runtime.sessions.BACKENDS`.

    ``input_size`` is the long side of the input; with ``keep_aspect`` (the
    default) each frame runs at the rectangle that keeps its aspect.

    Raises:
        ValueError: an unknown backend (the message lists the installed ones), or int8 on torch.
        ImportError: the runtime is not installed (the message names the package).
    """
    check_backend(backend)
    if backend == "torch":
        if int8:
            raise ValueError("int8 runs on a deployment runtime (executorch, openvino), not on torch")
        torch.set_num_threads(threads)
        return TorchFrameRunner(model, input_size, keep_aspect=keep_aspect)
    return ExportedFrameRunner(
        model,
        backend,
        input_size,
        threads=threads,
        export_dir=export_dir,
        int8=int8,
        calibration=calibration,
        keep_aspect=keep_aspect,
    )
