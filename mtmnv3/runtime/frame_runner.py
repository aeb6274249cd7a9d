"""Per-frame inference on any backend behind one interface.

:class:`TorchFrameRunner` (eager PyTorch) and :class:`ExportedFrameRunner`
(ONNX Runtime, ExecuTorch/XNNPACK or OpenVINO: the model exported on demand,
one file per head subset, with a dynamic input size where the runtime takes
one and one file per size where it does not) both take an RGB
``uint8 (H, W, 3)`` frame plus the heads and input size a frame plan asks
for, and return a :class:`~mtmnv3.runtime.deployed.FramePrediction` in
original frame pixels. Both use the same letterbox transform and the same
decode code, so switching runtime changes speed, not results (the parity
tests bound the difference per runtime).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.transforms import Letterbox
from mtmnv3.runtime.deployed import DeployedRunner, FramePrediction
from mtmnv3.runtime.export_meta import LETTERBOX_PAD_VALUE
from mtmnv3.runtime.sessions import BACKENDS, check_backend

__all__ = [
    "BACKENDS",
    "DYNAMIC_SIZE_BACKENDS",
    "DeployedFrameRunner",
    "ExportedFrameRunner",
    "TorchFrameRunner",
    "build_frame_runner",
    "export_for_backend",
]

#: Runtimes whose exports take any input size (the others get one file per size).
DYNAMIC_SIZE_BACKENDS = ("onnxruntime", "openvino")
#: File suffix of each runtime's export.
EXPORT_SUFFIXES = {"onnxruntime": ".onnx", "executorch": ".pte", "openvino": ".xml"}


def _check_frame(frame: np.ndarray) -> None:
    if not (
        isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    ):
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {what}")


def _check_size(size: int, divisor: int = 32) -> int:
    if int(size) <= 0 or int(size) % divisor:
        raise ValueError(f"input size must be a positive multiple of {divisor}, got {size!r}")
    return int(size)


class TorchFrameRunner:
    """Eager PyTorch: letterbox -> the model's data preprocessor -> ``predict``.

    Args:
        model: a :class:`~mtmnv3.models.MultiTaskPerceptor` (put in eval mode here).
        input_size: default square letterbox size (a multiple of 32).
    """

    backend = "torch"

    def __init__(self, model: nn.Module, input_size: int = 320) -> None:
        self.model = model.eval()
        self.input_size = _check_size(input_size)
        self.heads = tuple(model.heads)
        self._letterbox: dict[int, Letterbox] = {}

    def _box(self, size: int) -> Letterbox:
        if size not in self._letterbox:
            self._letterbox[size] = Letterbox(size, pad_val=LETTERBOX_PAD_VALUE)
        return self._letterbox[size]

    @torch.no_grad()
    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        size = self.input_size if input_size is None else _check_size(input_size)
        names = self.heads if heads is None else tuple(heads)
        boxed = self._box(size)({"img": frame})
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
    """A deployment runtime: the model exported on first use of each head subset (and size).

    Args:
        model: the PyTorch model to export (kept only for exporting).
        backend: ``'onnxruntime'``, ``'executorch'`` or ``'openvino'``.
        input_size: default square letterbox size.
        threads: intra-op threads of the runtime.
        export_dir: where the files go (default: a temp folder removed on close).
        int8: export int8 files (ExecuTorch and OpenVINO), calibrated on ``calibration``.
        calibration: normalised ``float32 (N, 3, H, W)`` batches of real frames for int8.
    """

    def __init__(
        self,
        model: nn.Module,
        backend: str = "onnxruntime",
        input_size: int = 320,
        threads: int = 2,
        export_dir: str | os.PathLike | None = None,
        int8: bool = False,
        calibration: Sequence[np.ndarray] | None = None,
    ) -> None:
        if backend == "torch" or check_backend(backend) not in EXPORT_SUFFIXES:
            raise ValueError(f"ExportedFrameRunner runs {sorted(EXPORT_SUFFIXES)}, got {backend!r}")
        if int8 and not calibration:
            raise ValueError("int8 needs calibration batches of real frames")
        self.backend = backend
        self.model = model.eval()
        self.input_size = _check_size(input_size)
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

    def runner(self, heads: Sequence[str] | None = None, input_size: int | None = None) -> DeployedRunner:
        """The deployed file of a head subset (and, on fixed-size runtimes, a size), made on first use."""
        names = tuple(sorted(self.heads if heads is None else heads))
        unknown = [h for h in names if h not in self.heads]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; the model has {list(self.heads)}")
        size = self.input_size if input_size is None else _check_size(input_size)
        dynamic = self.backend in DYNAMIC_SIZE_BACKENDS
        key = names if dynamic else (*names, size)
        if key not in self._runners:
            stem = (
                "model_" + "_".join(names) + ("" if dynamic else f"_{size}") + ("_int8" if self.int8 else "")
            )
            path = self.export_dir / (stem + EXPORT_SUFFIXES[self.backend])
            export_for_backend(
                self.model,
                self.backend,
                path,
                heads=list(names),
                input_size=size,
                dynamic_size=dynamic,
                int8=self.int8,
                calibration=self.calibration,
            )
            self._runners[key] = DeployedRunner(path, threads=self.threads, input_color="rgb")
        return self._runners[key]

    def warm_up(self, head_sets: Sequence[Sequence[str]], sizes: Sequence[int] = ()) -> None:
        """Export and open the files of the given head subsets (and sizes) now, not mid-video."""
        for heads in head_sets:
            for size in sizes or (None,):
                self.runner(heads, size)

    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        size = self.input_size if input_size is None else _check_size(input_size)
        run = self.runner(heads, size)
        if run.input_size != (size, size):
            run.set_input_size((size, size))
        return run.predict(frame)

    def close(self) -> None:
        self._runners.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class DeployedFrameRunner:
    """A deployed file (already exported, int8 or fp32) as a frame runner.

    The file runs every head it holds on each frame; ``heads`` must be among
    them. Its input size is the file's (a dynamic-size file takes any multiple
    of its size divisor).

    Args:
        path: the deployed file (``.onnx``, ``.pte``, ``.xml``) with its sidecar.
        model: the PyTorch model it was exported from (its heads' tasks are looked up there).
        threads: intra-op threads of the runtime.
    """

    def __init__(self, path: str | os.PathLike, model: nn.Module, threads: int = 2) -> None:
        self.model = model.eval()
        self.deployed = DeployedRunner(path, threads=threads, input_color="rgb")
        self.backend = self.deployed.backend
        self.heads = tuple(self.deployed.meta["heads"])
        self.input_size = self.deployed.input_size[0]

    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        missing = [h for h in heads or () if h not in self.heads]
        if missing:
            raise ValueError(f"heads {missing} are not in the deployed file; it has {list(self.heads)}")
        if input_size is not None and self.deployed.input_size != (input_size, input_size):
            self.deployed.set_input_size((input_size, input_size))
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
    calibration: Sequence[np.ndarray] | None = None,
) -> TorchFrameRunner | ExportedFrameRunner:
    """The frame runner of ``backend``: one of :data:`~mtmnv3.runtime.sessions.BACKENDS`.

    Raises:
        ValueError: an unknown backend (the message lists the installed ones), or int8 on torch.
        ImportError: the runtime is not installed (the message names the package).
    """
    check_backend(backend)
    if backend == "torch":
        if int8:
            raise ValueError("int8 runs on a deployment runtime (executorch, openvino), not on torch")
        torch.set_num_threads(threads)
        return TorchFrameRunner(model, input_size)
    return ExportedFrameRunner(
        model, backend, input_size, threads=threads, export_dir=export_dir, int8=int8, calibration=calibration
    )
