"""Backend runners of the latency table: one module on fixed inputs as a call on the profile's backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.runtime.onnx_export import BLOCK_EXPORTER, BLOCK_OPSET, export_module
from mtmnv3.studies.latency.runtime_backends import ExecuTorchBuilder, OpenVINOBuilder
from mtmnv3.studies.latency.table import BackendUnavailableError, DeviceProfile

__all__ = ["INT8_OPTIONS", "BackendBuilder", "TapHead", "TrivialModel"]

#: Static int8 quantization of every timed graph (``dtype='int8'``): QDQ,
#: per-channel signed int8 weights and activations, MinMax calibration
#: (fields of :class:`~mtmnv3.studies.quantization.OrtQuantConfig`).
INT8_OPTIONS: dict[str, Any] = dict(
    quant_format="qdq", per_channel=True, activation_type="s8", weight_type="s8", calibrate_method="minmax"
)


class TrivialModel(nn.Module):
    """``y = x + 1`` on a one-element tensor: measures a backend's per-call cost."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 1


class TapHead(nn.Module):
    """Adapts a head that reads ``{tap: tensor}`` to positional tensor inputs."""

    def __init__(self, head: nn.Module, taps: Sequence[int]) -> None:
        super().__init__()
        self.head = head
        self.taps = tuple(taps)

    def forward(self, *xs: Tensor) -> Any:
        return self.head(dict(zip(self.taps, xs)))


class BackendBuilder:
    """Builds a zero-argument callable that runs one module on fixed inputs.

    OpenVINO and ExecuTorch are delegated to
    :mod:`~mtmnv3.studies.latency.runtime_backends`; call :meth:`close` when
    the timing is done (it restores executorch's threadpool size).
    """

    def __init__(self, profile: DeviceProfile, workdir: Path) -> None:
        self.profile = profile
        self.workdir = workdir
        self.make_session = _import_make_session() if profile.backend == "onnxruntime" else None
        self.runtime: OpenVINOBuilder | ExecuTorchBuilder | None = None
        if profile.backend == "openvino":
            self.runtime = OpenVINOBuilder(profile)
        elif profile.backend == "executorch":
            self.runtime = ExecuTorchBuilder(profile)

    def close(self) -> None:
        """Undo process-wide settings made for the measurement (executorch's threadpool size)."""
        if isinstance(self.runtime, ExecuTorchBuilder):
            self.runtime.close()

    def build(
        self,
        tag: str,
        module: nn.Module,
        inputs: Sequence[Tensor],
        calibration: Sequence[Sequence[Tensor]] | None = None,
        quantize: bool = True,
    ) -> Callable[[], object]:
        inputs = tuple(inputs)
        backend = self.profile.backend
        if backend == "eager":
            return partial(module, *inputs)
        if backend == "compile":
            return self._compiled(tag, module, inputs)
        if self.runtime is not None:
            return self.runtime.build(tag, module, inputs, calibration, quantize)
        return self._onnxruntime(tag, module, inputs, calibration, quantize)

    def _compiled(self, tag: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> Callable[[], object]:
        compiled = torch.compile(module, dynamic=False)
        try:
            compiled(*inputs)  # compiles now, so that timing sees no compilation
        except Exception as e:  # noqa: BLE001 - any compiler failure means the backend is unusable here
            raise BackendUnavailableError(
                f"torch.compile failed for {tag} on this machine ({type(e).__name__}: {str(e)[:300]}); "
                f"the 'compile' backend needs a working C++ toolchain for inductor on CPU"
            ) from e
        return partial(compiled, *inputs)

    def _onnxruntime(
        self,
        tag: str,
        module: nn.Module,
        inputs: tuple[Tensor, ...],
        calibration: Sequence[Sequence[Tensor]] | None,
        quantize: bool,
    ) -> Callable[[], object]:
        names = [f"x{i}" for i in range(len(inputs))]
        path = self.workdir / f"{tag}.onnx"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_module(module, inputs, path, names, exporter=BLOCK_EXPORTER, opset=BLOCK_OPSET)
        except Exception as e:  # noqa: BLE001 - report which module failed to export
            raise BackendUnavailableError(
                f"ONNX export of {tag} failed ({type(e).__name__}: {str(e)[:300]})"
            ) from e
        if self.profile.dtype == "int8" and quantize:
            path = _quantize(path, self.workdir / f"{tag}.int8.onnx", names, calibration or [inputs])
        session = self.make_session(path, self.profile.threads)
        feed = {n: t.detach().contiguous().numpy() for n, t in zip(names, inputs)}
        return partial(session.run, None, feed)


def _quantize(
    src: Path, dst: Path, input_names: Sequence[str], calibration: Sequence[Sequence[Tensor]]
) -> Path:
    """Static int8 quantization (:data:`INT8_OPTIONS`), calibrated on real activations."""
    try:
        from mtmnv3.studies.quantization.calibration import FeedsCalibrationReader
        from mtmnv3.studies.quantization.quantize import OrtQuantConfig, quantize_onnx
    except ImportError as e:
        raise BackendUnavailableError("int8 needs onnxruntime.quantization") from e
    feeds = [{n: t.detach().contiguous().numpy() for n, t in zip(input_names, s)} for s in calibration]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_onnx(src, dst, FeedsCalibrationReader(feeds), OrtQuantConfig(**INT8_OPTIONS))
    except Exception as e:  # noqa: BLE001
        raise BackendUnavailableError(
            f"int8 quantization of {src.stem} failed ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return dst


def _import_make_session() -> Callable[..., Any]:
    """The session factory for timing: ORT's default spinning (back-to-back runs), errors-only log."""
    try:
        from mtmnv3.runtime.ort_runtime import ORT_LOG_ERRORS_ONLY, make_session
    except ImportError as e:
        raise BackendUnavailableError(
            "backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime)"
        ) from e
    return partial(make_session, allow_spinning=True, log_severity=ORT_LOG_ERRORS_ONLY)
