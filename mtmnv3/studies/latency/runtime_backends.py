"""OpenVINO and ExecuTorch runners of the latency table: one module on fixed inputs as a runtime call.

The deployment exporters (:mod:`mtmnv3.runtime.openvino_runtime`,
:mod:`mtmnv3.runtime.executorch_runtime`) take a whole model; the latency
table times single trunk blocks, pairs of blocks, heads and the trunk, so
these runners convert one ``nn.Module`` at its fixed example inputs:

* OpenVINO: ``openvino.convert_model(module, example_input=...)``, int8 with
  ``nncf.quantize`` (performance preset: symmetric int8 weights and
  activations) on the given calibration inputs, compiled for the CPU with
  ``INFERENCE_NUM_THREADS = threads``, the latency hint, one stream and fp32
  inference precision; timed as ``InferRequest.infer`` on shared inputs.
* ExecuTorch: ``torch.export`` + ``to_edge_transform_and_lower`` with the
  XNNPACK partitioner, int8 with PT2E (``XNNPACKQuantizer``, per-channel
  symmetric weights, static activations; torchao ``prepare_pt2e`` /
  ``convert_pt2e``); the ``.pte`` buffer is loaded from bytes by
  ``executorch.runtime.Runtime`` and timed as ``Method.execute``. Threads:
  executorch has one process-wide threadpool (XNNPACK runs on it), resized
  with ``portable_lib._unsafe_reset_threadpool`` for the measurement and
  restored afterwards; where a build lacks that control, only the pool's
  current size is accepted.

A package that does not import raises
:class:`~mtmnv3.studies.latency.table.BackendUnavailableError` naming it and
its install hint (:data:`mtmnv3.runtime.sessions.INSTALL_HINTS`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import logging
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.runtime.sessions import INSTALL_HINTS
from mtmnv3.studies.latency.table import BackendUnavailableError, DeviceProfile

__all__ = ["ExecuTorchBuilder", "OpenVINOBuilder", "import_runtime"]

#: OpenVINO compile settings of every timed graph (``INFERENCE_NUM_THREADS`` is added per profile).
OPENVINO_DEVICE = "CPU"
OPENVINO_CONFIG: dict[str, Any] = {
    "PERFORMANCE_HINT": "LATENCY",
    "NUM_STREAMS": 1,
    "INFERENCE_PRECISION_HINT": "f32",
}
#: The program method ExecuTorch runs.
EXECUTORCH_METHOD = "forward"
#: Longest piece of an exception's text quoted in an error message.
ERROR_CHARS = 300


def import_runtime(backend: str, module: str) -> ModuleType:
    """Import ``module`` for ``backend``, or raise :class:`BackendUnavailableError` with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"backend {backend!r} needs the {module.split('.')[0]} package ({type(e).__name__}: {e}); "
            f"install it with: {INSTALL_HINTS[backend]}"
        ) from e


def _plain(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Contiguous, ordinary (not inference-mode) copies, which tracers and exporters accept."""
    with torch.inference_mode(False):
        return tuple(t.detach().clone().contiguous() for t in tensors)


def _failure(what: str, tag: str, e: Exception) -> BackendUnavailableError:
    return BackendUnavailableError(f"{what} of {tag} failed ({type(e).__name__}: {str(e)[:ERROR_CHARS]})")


class OpenVINOBuilder:
    """Builds ``module(*inputs)`` as an OpenVINO CPU infer request (fp32, or NNCF int8)."""

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.ov = import_runtime("openvino", "openvino")
        self.nncf = import_runtime("openvino", "nncf") if profile.dtype == "int8" else None
        if self.nncf is not None:
            self.nncf.set_log_level(logging.ERROR)
        self.core = self.ov.Core()
        self.config = {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": profile.threads}

    def build(
        self,
        tag: str,
        module: nn.Module,
        inputs: Sequence[Tensor],
        calibration: Sequence[Sequence[Tensor]] | None,
        quantize: bool,
    ) -> Callable[[], object]:
        """A zero-argument callable that runs the compiled ``module`` once on ``inputs``."""
        example = _plain(inputs)
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
                warnings.simplefilter("ignore")
                model = self.ov.convert_model(module, example_input=example)
        except Exception as e:  # noqa: BLE001 - report which module failed to convert
            raise _failure("OpenVINO conversion", tag, e) from e
        if self.nncf is not None and quantize:
            model = self._quantize(tag, model, calibration or [inputs])
        try:
            compiled = self.core.compile_model(model, OPENVINO_DEVICE, self.config)
        except Exception as e:  # noqa: BLE001
            raise _failure("OpenVINO compilation", tag, e) from e
        return _OpenVINORun(compiled, [t.numpy() for t in example])

    def _quantize(self, tag: str, model: Any, calibration: Sequence[Sequence[Tensor]]) -> Any:
        from mtmnv3.runtime.openvino_runtime import nncf_quantize

        samples = [[t.detach().contiguous().numpy() for t in sample] for sample in calibration]
        try:
            # NNCF draws progress bars on stdout; the table's own progress goes to stderr.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                return nncf_quantize(model, samples)[0]
        except Exception as e:  # noqa: BLE001
            raise _failure("NNCF int8 quantization", tag, e) from e


class _OpenVINORun:
    """One compiled model's infer request on fixed inputs (keeps the compiled model alive)."""

    def __init__(self, compiled: Any, feed: list[np.ndarray]) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.feed = feed

    def __call__(self) -> object:
        return self.request.infer(self.feed, share_inputs=True)


class ExecuTorchBuilder:
    """Builds ``module(*inputs)`` as an XNNPACK ExecuTorch method (fp32, or PT2E int8).

    The threadpool is resized to ``profile.threads`` here and restored by :meth:`close`.
    """

    def __init__(self, profile: DeviceProfile) -> None:
        self.profile = profile
        self.runtime = import_runtime("executorch", "executorch.runtime").Runtime.get()
        self._restore_threads = _set_threadpool(profile.threads)

    def close(self) -> None:
        """Give executorch's threadpool back its size from before this builder."""
        if self._restore_threads is not None:
            _set_threadpool(self._restore_threads)
            self._restore_threads = None

    def build(
        self,
        tag: str,
        module: nn.Module,
        inputs: Sequence[Tensor],
        calibration: Sequence[Sequence[Tensor]] | None,
        quantize: bool,
    ) -> Callable[[], object]:
        """A zero-argument callable that runs the lowered ``module`` once on ``inputs``."""
        example = _plain(inputs)
        with torch.inference_mode(False), torch.no_grad():
            graph = copy.deepcopy(module).eval().to(memory_format=torch.contiguous_format)
            if self.profile.dtype == "int8" and quantize:
                graph = self._quantize(tag, graph, example, calibration or [inputs])
            data = self._lower(tag, graph, example)
        try:
            program = self.runtime.load_program(data)
            method = program.load_method(EXECUTORCH_METHOD)
        except Exception as e:  # noqa: BLE001
            raise _failure("ExecuTorch program load", tag, e) from e
        return _ExecuTorchRun(program, method, example)

    def _quantize(
        self,
        tag: str,
        graph: nn.Module,
        example: tuple[Tensor, ...],
        calibration: Sequence[Sequence[Tensor]],
    ) -> nn.Module:
        try:
            from mtmnv3.runtime.executorch_runtime import quantize_for_xnnpack
        except ImportError as e:
            raise BackendUnavailableError(
                f"int8 with backend 'executorch' needs XNNPACKQuantizer and torchao's PT2E "
                f"({type(e).__name__}: {e}); install it with: {INSTALL_HINTS['executorch']}"
            ) from e
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return quantize_for_xnnpack(graph, example, [_plain(sample) for sample in calibration])
        except Exception as e:  # noqa: BLE001
            raise _failure("XNNPACK PT2E int8 quantization", tag, e) from e

    @staticmethod
    def _lower(tag: str, graph: nn.Module, example: tuple[Tensor, ...]) -> bytes:
        from mtmnv3.runtime.executorch_runtime import lower_to_xnnpack

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return lower_to_xnnpack(graph, example)
        except Exception as e:  # noqa: BLE001
            raise _failure("ExecuTorch export / XNNPACK lowering", tag, e) from e


class _ExecuTorchRun:
    """One loaded method on fixed inputs (keeps its program alive)."""

    def __init__(self, program: Any, method: Any, inputs: tuple[Tensor, ...]) -> None:
        self.program = program
        self.method = method
        self.inputs = inputs

    def __call__(self) -> object:
        return self.method.execute(self.inputs)


def _set_threadpool(threads: int) -> int | None:
    """Resize executorch's threadpool to ``threads``; the previous size (None: unchanged).

    Raises:
        BackendUnavailableError: this executorch build cannot resize its pool and
            ``threads`` differs from the pool's size (or the size is unknown).
    """
    portable_lib = import_runtime("executorch", "executorch.extension.pybindings.portable_lib")
    get_count = getattr(portable_lib, "_threadpool_get_thread_count", None)
    reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
    current = int(get_count()) if get_count is not None else None
    if current == threads:
        return None
    if reset is None:
        raise BackendUnavailableError(
            f"this executorch build cannot set its thread count (no _unsafe_reset_threadpool in its "
            f"pybindings); its threadpool has {current if current is not None else 'an unknown number of'} "
            f"threads, so only threads={current} can be measured, got threads={threads}"
        )
    reset(threads)
    return current
