"""Per-frame inference with either runtime behind one interface.

:class:`TorchFrameRunner` (eager PyTorch) and :class:`OrtFrameRunner` (ONNX
Runtime sessions, one per head subset, exported on demand with a dynamic
input size) both take an RGB ``uint8 (H, W, 3)`` frame plus the heads and
input size a frame plan asks for, and return a
:class:`~mtmnv3.runtime.ort_runtime.FramePrediction` in original frame pixels.
Both use the same letterbox transform and the same decode code, so switching
runtime changes speed, not results (the parity tests hold them within 1e-4).
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
from mtmnv3.runtime.export_meta import LETTERBOX_PAD_VALUE
from mtmnv3.runtime.onnx_export import export_onnx
from mtmnv3.runtime.ort_runtime import FramePrediction, OrtMultiTaskRunner

__all__ = [
    "BACKENDS",
    "OrtFrameRunner",
    "TorchFrameRunner",
    "build_frame_runner",
]

BACKENDS = ("torch", "onnxruntime")


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


class OrtFrameRunner:
    """ONNX Runtime: one dynamic-size session per head subset, exported on first use.

    Args:
        model: the PyTorch model to export (kept only for exporting).
        input_size: default square letterbox size.
        threads: intra-op threads per session.
        export_dir: where the ONNX files go (default: a temp folder removed on close).
        exporter: ``'torchscript'`` (fast to export, the default here because
            sessions are made at start-up) or ``'dynamo'``.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model: nn.Module,
        input_size: int = 320,
        threads: int = 2,
        export_dir: str | os.PathLike | None = None,
        exporter: str = "torchscript",
    ) -> None:
        self.model = model.eval()
        self.input_size = _check_size(input_size)
        self.threads = int(threads)
        self.exporter = exporter
        self.heads = tuple(model.heads)
        self._tmp = None
        if export_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mtmnv3-onnx-")
            export_dir = self._tmp.name
        self.export_dir = Path(export_dir)
        self._runners: dict[tuple[str, ...], OrtMultiTaskRunner] = {}

    def runner(self, heads: Sequence[str] | None = None) -> OrtMultiTaskRunner:
        """The session for a head subset (exported and created on first use)."""
        key = tuple(sorted(self.heads if heads is None else heads))
        unknown = [h for h in key if h not in self.heads]
        if unknown:
            raise ValueError(f"unknown heads {unknown}; the model has {list(self.heads)}")
        if key not in self._runners:
            path = self.export_dir / f"model_{'_'.join(key)}.onnx"
            export_onnx(
                self.model,
                path,
                heads=list(key),
                input_size=self.input_size,
                exporter=self.exporter,
                dynamic_size=True,
            )
            self._runners[key] = OrtMultiTaskRunner(path, threads=self.threads, input_color="rgb")
        return self._runners[key]

    def warm_up(self, head_sets: Sequence[Sequence[str]]) -> None:
        """Export and open the sessions of the given head subsets now (not mid-video)."""
        for heads in head_sets:
            self.runner(heads)

    def predict(
        self, frame: np.ndarray, heads: Sequence[str] | None = None, input_size: int | None = None
    ) -> FramePrediction:
        _check_frame(frame)
        run = self.runner(heads)
        size = self.input_size if input_size is None else _check_size(input_size)
        if run.input_size != (size, size):
            run.set_input_size((size, size))
        return run.predict(frame)

    def close(self) -> None:
        self._runners.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def build_frame_runner(
    model: nn.Module,
    backend: str,
    input_size: int = 320,
    threads: int = 2,
    export_dir: str | os.PathLike | None = None,
) -> TorchFrameRunner | OrtFrameRunner:
    """``backend``: ``'torch'`` or ``'onnxruntime'``."""
    if backend == "torch":
        torch.set_num_threads(threads)
        return TorchFrameRunner(model, input_size)
    if backend == "onnxruntime":
        return OrtFrameRunner(model, input_size, threads=threads, export_dir=export_dir)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
