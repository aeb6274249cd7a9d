"""One raw session per runtime behind one interface: normalised images in, the export's raw outputs out.

A deployed file's sidecar names its format and so its runtime
(:data:`mtmnv3.runtime.export_meta.FORMAT_BACKENDS`); :func:`open_session`
opens it on that runtime. Every session has ``meta`` (the sidecar),
``backend``, ``output_names`` and ``run(images) -> {output name: array}`` for
a normalised ``float32 (N, 3, H, W)`` batch. Runtimes are optional
packages: :func:`check_backend` names a missing one with its install hint,
and everything else keeps working without it.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtmnv3.runtime.export_meta import FORMAT_BACKENDS, load_export_meta

__all__ = ["BACKENDS", "INSTALL_HINTS", "check_backend", "installed_backends", "open_session"]

#: Every backend a model can run on: PyTorch itself and the three deployment runtimes.
BACKENDS = ("torch", "onnxruntime", "executorch", "openvino")
#: The module whose import tells that a backend is installed.
_BACKEND_MODULES = {
    "torch": "torch",
    "onnxruntime": "onnxruntime",
    "executorch": "executorch.runtime",
    "openvino": "openvino",
}
#: How to install each runtime (the pins are in requirements/constraints.txt).
INSTALL_HINTS = {
    "torch": "pip install torch (see requirements/constraints.txt)",
    "onnxruntime": "pip install onnxruntime (see requirements/constraints.txt)",
    "executorch": "pip install executorch==1.5.1 (see requirements/constraints.txt)",
    "openvino": "pip install openvino==2026.4.1 nncf==3.4.0 (see requirements/constraints.txt)",
}


@functools.cache
def _module_import_error(module: str) -> str | None:
    """None when ``module`` imports, else why not (asked once per process)."""
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any failure to import means the runtime is unusable
        return f"{type(e).__name__}: {e}"
    return None


def _import_error(backend: str) -> str | None:
    """None when the backend imports, else why not."""
    return _module_import_error(_BACKEND_MODULES[backend])


def installed_backends() -> list[str]:
    """The backends that import on this machine, in :data:`BACKENDS` order."""
    return [b for b in BACKENDS if _import_error(b) is None]


def check_backend(backend: str) -> str:
    """``backend`` when it is known and installed.

    Raises:
        ValueError: an unknown backend (the message lists the installed ones).
        ImportError: a known runtime that does not import (the message names the package to install).
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)} "
            f"(installed here: {', '.join(installed_backends())})"
        )
    why = _import_error(backend)
    if why is not None:
        raise ImportError(
            f"backend {backend!r} is not installed ({why}); install it with: {INSTALL_HINTS[backend]}"
        )
    return backend


def open_session(
    path: str | os.PathLike, threads: int | None = 1, providers: Sequence[str] | None = None
) -> Any:
    """Open a deployed file (or an ONNX split manifest) on the runtime its sidecar names.

    Args:
        path: the model file (``.onnx``, ``.pte``, ``.xml``) with its ``<file>.json``
            sidecar, or a ``*.split.json`` manifest.
        threads: intra-op threads of the runtime.
        providers: ONNX Runtime execution providers (ONNX Runtime files only).

    Returns:
        A session with ``meta``, ``backend``, ``output_names`` and
        ``run(images) -> {output name: array}``.

    Raises:
        FileNotFoundError: the file or its sidecar is missing.
        ValueError: the sidecar is not an mtmnv3 export, or ``providers`` given for another runtime.
        ImportError: the file's runtime is not installed.
    """
    path = Path(path)
    meta = load_export_meta(path)
    backend = "onnxruntime" if path.suffix == ".json" else FORMAT_BACKENDS[meta["format"]]
    check_backend(backend)
    if providers is not None and backend != "onnxruntime":
        raise ValueError(f"providers are ONNX Runtime's; {path.name} runs on {backend}")
    if backend == "onnxruntime":
        from mtmnv3.runtime.ort_runtime import OrtPipeline, OrtSession

        session = (
            OrtPipeline(path, meta, threads, providers)
            if path.suffix == ".json"
            else OrtSession(path, meta, threads, providers)
        )
    elif backend == "executorch":
        from mtmnv3.runtime.executorch_runtime import ExecuTorchSession

        session = _NamedOutputs(ExecuTorchSession(path, threads=threads), backend)
    else:
        from mtmnv3.runtime.openvino_runtime import OpenVINOSession

        session = _NamedOutputs(OpenVINOSession(path, threads=threads), backend)
    return session


class _NamedOutputs:
    """A runtime session that returns its outputs as a list, seen as ``{output name: array}``."""

    def __init__(self, session: Any, backend: str) -> None:
        self.inner = session
        self.backend = backend
        self.meta = session.meta
        self.output_names = list(session.output_names)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised ``(N, 3, H, W)`` float32 -> ``{output name: array}``."""
        return dict(zip(self.output_names, self.inner.run(images)))
