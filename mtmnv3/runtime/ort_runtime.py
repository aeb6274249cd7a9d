"""ONNX Runtime sessions: the one session factory, a raw session over one file, split pieces in order.

Frames, letterboxing and decoding are :mod:`mtmnv3.runtime.deployed`'s job;
this module only runs normalised ``float32 (N, 3, H, W)`` inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from mtmnv3.runtime.onnx_export import INPUT_NAME

__all__ = ["CPU_PROVIDER", "OrtPipeline", "OrtSession", "make_session"]

#: The execution provider this runtime is built and measured for.
CPU_PROVIDER = "CPUExecutionProvider"
#: Graph optimisation level of :func:`make_session` by default (a ``GraphOptimizationLevel`` name).
DEFAULT_OPTIMIZATION = "ORT_ENABLE_ALL"
#: ONNX Runtime log severity that shows errors only (hides its informational notices).
ORT_LOG_ERRORS_ONLY = 3


def make_session(
    model: str | os.PathLike | bytes,
    threads: int | None = 1,
    providers: Sequence[str] | None = None,
    allow_spinning: bool = False,
    optimization: str = DEFAULT_OPTIMIZATION,
    log_severity: int | None = None,
    profile_prefix: str | os.PathLike | None = None,
    optimized_model_path: str | os.PathLike | None = None,
) -> ort.InferenceSession:
    """An ONNX Runtime session: ``threads`` intra-op threads, one inter-op thread, sequential execution.

    This is the package's one place that creates ONNX Runtime sessions.

    ``allow_spinning=False`` (the default here, unlike ONNX Runtime's) makes
    idle intra-op threads sleep instead of spin-waiting for the next run. A
    perception loop does other work between runs (decoding, torch box
    decoding and NMS, tracking, drawing), and on a machine with few cores
    spinning pool threads take the cores from it (``benchmarks/demo_pipeline.py``
    measures the frame rate both ways). Back-to-back latency measurements
    pass ``True``, ONNX Runtime's own default.

    Args:
        model: an ``.onnx`` file, or a serialised ``ModelProto``.
        threads: intra-op threads; None leaves ONNX Runtime's default (one per core).
        providers: execution providers (default CPU only).
        allow_spinning: let idle intra-op threads spin (see above).
        optimization: a ``onnxruntime.GraphOptimizationLevel`` name (default all
            optimisations; ``'ORT_DISABLE_ALL'`` runs the graph as written).
        log_severity: ONNX Runtime's log severity level (None: its default; 3 errors only).
        profile_prefix: turn on ONNX Runtime's profiler, writing to files with this prefix.
        optimized_model_path: also save the optimised graph here.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``threads`` < 1, an unknown optimisation level, or a provider
            this onnxruntime build lacks.
        RuntimeError: the session did not get the requested first provider
            (ONNX Runtime falls back silently).
    """
    if not isinstance(model, bytes) and not os.path.isfile(model):
        raise FileNotFoundError(f"ONNX model not found: {model}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    level = (
        getattr(ort.GraphOptimizationLevel, optimization, None) if optimization.startswith("ORT_") else None
    )
    if level is None:
        raise ValueError(f"unknown graph optimisation level {optimization!r}")
    providers = list(providers) if providers is not None else [CPU_PROVIDER]
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if not providers or missing:
        raise ValueError(
            f"execution providers {missing or providers} not available; this build has {available}"
        )
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    if log_severity is not None:
        options.log_severity_level = log_severity
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    source = model if isinstance(model, bytes) else str(model)
    session = ort.InferenceSession(source, sess_options=options, providers=providers)
    got = session.get_providers()
    if not got or got[0] != providers[0]:
        raise RuntimeError(f"ONNX Runtime session runs on {got}, not the requested {providers[0]}")
    return session


class OrtPipeline:
    """Run a split export's pieces in order, each in its own session.

    Tensors pass between pieces by name (``images``, ``stage{i}``), so any
    piece could equally run elsewhere (another process or device).

    Args:
        manifest: the ``*.split.json`` written by :func:`~mtmnv3.runtime.onnx_export.export_split`.
        meta: the manifest's contents (:func:`mtmnv3.runtime.export_meta.load_export_meta`).
        threads: intra-op threads of each session.
        providers: execution providers of each session.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        manifest: str | os.PathLike,
        meta: Mapping[str, Any],
        threads: int = 1,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.meta = meta
        folder = Path(manifest).parent
        self.sessions = [make_session(folder / p["file"], threads, providers) for p in self.meta["pieces"]]
        self.output_names = [o["name"] for o in self.meta["outputs"]]

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised ``(N, 3, H, W)`` float32 -> ``{output name: array}``."""
        env: dict[str, np.ndarray] = {INPUT_NAME: images}
        for session in self.sessions:
            feed = {i.name: env[i.name] for i in session.get_inputs()}
            names = [o.name for o in session.get_outputs()]
            env.update(zip(names, session.run(names, feed)))
        return {n: env[n] for n in self.output_names}

    @property
    def providers(self) -> list[str]:
        """Execution providers of the first piece's session."""
        return self.sessions[0].get_providers()


class OrtSession:
    """One exported ``.onnx`` in one session: normalised images in, raw outputs by name out.

    Args:
        path: the ``.onnx`` file.
        meta: its sidecar (:func:`mtmnv3.runtime.export_meta.load_export_meta`).
        threads: intra-op threads.
        providers: execution providers (checked after creation).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Mapping[str, Any],
        threads: int = 1,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.meta = meta
        self.session = make_session(path, threads, providers)
        self.output_names = [o["name"] for o in meta["outputs"]]

    @property
    def providers(self) -> list[str]:
        """Execution providers of the session."""
        return self.session.get_providers()

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised ``(N, 3, H, W)`` float32 -> ``{output name: array}``."""
        return dict(zip(self.output_names, self.session.run(self.output_names, {INPUT_NAME: images})))
