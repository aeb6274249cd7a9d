"""ONNX Runtime execution of exported models, with the same pre- and post-processing as PyTorch.

Frames go in as uint8 ``(H, W, 3)`` arrays, **BGR by default** (what OpenCV's
``VideoCapture``/``imread`` give; pass ``input_color='rgb'`` for RGB frames).
The model was trained on RGB images letterboxed to its input size (grey 114
padding, :class:`mtmnv3.data.transforms.Letterbox`) and normalised with the
ImageNet mean/std of its data preprocessor; the runner reproduces exactly
that from the export's sidecar, runs the session(s), and decodes with the
torch code the model itself uses (:func:`mtmnv3.heads.center_head.decode_centers`,
batched NMS, :func:`mtmnv3.heads.embedding_head.gather_embeddings`), so
detections match ``MultiTaskPerceptor.predict``. Boxes come back in the
original frame's pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from mtmnv3.data.transforms import Letterbox
from mtmnv3.heads.base import CLASSIFICATION, DETECTION, EMBEDDING, heads_by_task
from mtmnv3.heads.center_head import decode_centers, to_original_coords
from mtmnv3.heads.embedding_head import gather_embeddings
from mtmnv3.runtime.export_meta import sidecar_path
from mtmnv3.runtime.onnx_export import EXPORT_FORMAT, FORMAT_VERSION, INPUT_NAME, SPLIT_FORMAT

__all__ = ["FramePrediction", "OrtMultiTaskRunner", "OrtPipeline", "make_session", "load_export_meta"]

#: The execution provider this runtime is built and measured for.
CPU_PROVIDER = "CPUExecutionProvider"
#: Graph optimisation level of :func:`make_session` by default (a ``GraphOptimizationLevel`` name).
DEFAULT_OPTIMIZATION = "ORT_ENABLE_ALL"
#: ONNX Runtime log severity that shows errors only (hides its informational notices).
ORT_LOG_ERRORS_ONLY = 3
#: Frame colour orders the runner accepts.
INPUT_COLORS = ("bgr", "rgb")


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


def load_export_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of an export: a model's sidecar (given the ``.onnx``) or a split manifest (``.json``).

    Raises:
        FileNotFoundError: the model, its sidecar or the manifest is missing.
        ValueError: the JSON is not an mtmnv3 export of a supported version.
    """
    path = Path(path)
    meta_file = path if path.suffix == ".json" else sidecar_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"export not found: {path}")
    if not meta_file.is_file():
        raise FileNotFoundError(
            f"export metadata not found: {meta_file} (written by export_onnx next to the model)"
        )
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_file} is not valid JSON: {e}") from e
    expected = SPLIT_FORMAT if path.suffix == ".json" else EXPORT_FORMAT
    if not isinstance(meta, dict) or meta.get("format") != expected:
        raise ValueError(
            f"{meta_file} is not an {expected} file (format {meta.get('format') if isinstance(meta, dict) else None!r})"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_file} has version {meta.get('version')!r}; this mtmnv3 reads {FORMAT_VERSION}"
        )
    return meta


class OrtPipeline:
    """Run a split export's pieces in order, each in its own session.

    Tensors pass between pieces by name (``images``, ``stage{i}``), so any
    piece could equally run elsewhere (another process or device).

    Args:
        manifest: the ``*.split.json`` written by :func:`~mtmnv3.runtime.onnx_export.export_split`.
        threads: intra-op threads of each session.
        providers: execution providers of each session.
    """

    def __init__(
        self, manifest: str | os.PathLike, threads: int = 1, providers: Sequence[str] | None = None
    ) -> None:
        self.meta = load_export_meta(manifest)
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


@dataclass
class FramePrediction:
    """Predictions for one frame (numpy arrays; boxes in original frame pixels).

    Attributes:
        bboxes: ``(K, 4)`` float32 xyxy (empty without a detection head).
        scores: ``(K,)`` float32.
        labels: ``(K,)`` int64 object classes.
        embeddings: ``(K, D)`` float32 L2-normalised, or None without an embedding head.
        class_probs: ``(C,)`` float32 softmax of the classification head, or None.
    """

    bboxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    class_probs: np.ndarray | None = None

    @property
    def class_label(self) -> int | None:
        """The most probable image class, or None without a classification head."""
        return None if self.class_probs is None else int(self.class_probs.argmax())


class OrtMultiTaskRunner:
    """Letterbox + normalise -> ONNX Runtime -> shared torch decode.

    Args:
        onnx_path: an exported ``.onnx`` (with its ``.onnx.json`` sidecar) or a
            split manifest ``*.split.json`` (pieces run in separate sessions).
        threads: intra-op threads per session.
        providers: execution providers (default CPU only; checked after creation).
        input_color: channel order of the frames given: ``'bgr'`` (OpenCV, the
            default) or ``'rgb'``.
        input_size: ``(height, width)`` letterbox size for a dynamic-size
            export (default: the export's size; fixed-size exports refuse others).
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        threads: int = 1,
        providers: Sequence[str] | None = None,
        input_color: str = "bgr",
        input_size: Sequence[int] | None = None,
    ) -> None:
        if input_color not in INPUT_COLORS:
            raise ValueError(f"input_color must be one of {INPUT_COLORS}, got {input_color!r}")
        path = Path(onnx_path)
        self.meta = load_export_meta(path)
        self.threads = threads
        if path.suffix == ".json":
            self._pipeline: OrtPipeline | None = OrtPipeline(path, threads, providers)
            self.session: ort.InferenceSession | None = None
            self.providers = self._pipeline.sessions[0].get_providers()
        else:
            self._pipeline = None
            self.session = make_session(path, threads, providers)
            self.providers = self.session.get_providers()
        inp = self.meta["input"]
        self.fixed_batch: int | None = inp["batch"]
        self.set_input_size(input_size)
        # Reverse the channels iff the frames' order differs from the network's.
        self._swap = input_color != inp["color"].lower()
        self._mean = np.asarray(inp["mean"], np.float32)
        self._inv_std = (1.0 / np.asarray(inp["std"], np.float32)).astype(np.float32)
        self.output_names = [o["name"] for o in self.meta["outputs"]]
        heads = self.meta["heads"]
        by_task = heads_by_task({h: m["task"] for h, m in heads.items()})
        self.det_head, self.emb_head, self.cls_head = (
            by_task.get(t) for t in (DETECTION, EMBEDDING, CLASSIFICATION)
        )
        if self.emb_head is not None and self.det_head is None:
            raise ValueError("an export with an embedding head but no detection head cannot place embeddings")

    def set_input_size(self, input_size: Sequence[int] | None) -> None:
        """Letterbox size ``(height, width)`` of the next frames (None: the export's).

        Raises:
            ValueError: another size on a fixed-size export, or a size that is not
                a multiple of the export's size divisor.
        """
        inp = self.meta["input"]
        size = tuple(inp["size"]) if input_size is None else tuple(int(s) for s in input_size)
        if size != tuple(inp["size"]) and not inp["dynamic_size"]:
            raise ValueError(
                f"this export has a fixed input size {inp['size']}, got input_size={input_size!r}"
            )
        if len(size) != 2 or any(s <= 0 or s % inp["size_divisor"] for s in size):
            raise ValueError(
                f"input_size must be (height, width), multiples of {inp['size_divisor']}, got {size}"
            )
        self.input_size: tuple[int, int] = (int(size[0]), int(size[1]))
        self._letterbox = Letterbox(
            (self.input_size[1], self.input_size[0]), pad_val=inp["letterbox_pad_value"]
        )

    @property
    def is_cpu(self) -> bool:
        """Whether the (first) session runs on ONNX Runtime's CPU provider."""
        return self.providers[0] == CPU_PROVIDER

    # ---- steps -------------------------------------------------------------------------
    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """uint8 ``(H, W, 3)`` frame -> normalised ``(3, h, w)`` float32 and its letterbox metainfo."""
        if not (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and frame.ndim == 3
            and frame.shape[2] == 3
        ):
            what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"expected a uint8 (H, W, 3) frame, got {what}")
        ori_shape = frame.shape[:2]
        boxed = self._letterbox({"img": frame})
        img = boxed["img"][..., ::-1] if self._swap else boxed["img"]
        chw = ((img.astype(np.float32) - self._mean) * self._inv_std).transpose(2, 0, 1)
        meta = dict(ori_shape=ori_shape, pad_param=boxed["pad_param"], scale_factor=boxed["scale_factor"])
        return np.ascontiguousarray(chw), meta

    def run_raw(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Normalised ``(N, 3, H, W)`` float32 -> the export's raw outputs by name."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        if self._pipeline is not None:
            return self._pipeline.run(images)
        return dict(zip(self.output_names, self.session.run(self.output_names, {INPUT_NAME: images})))

    def postprocess(
        self, raw: Mapping[str, np.ndarray], metas: Sequence[dict[str, Any]]
    ) -> list[FramePrediction]:
        """Raw outputs of a batch -> per-frame predictions (the model's own decode code)."""
        heads = self.meta["heads"]
        n = len(metas)
        probs = None
        if self.cls_head is not None:
            logits = torch.from_numpy(raw[heads[self.cls_head]["outputs"][""]])
            probs = logits.softmax(-1).numpy()
        if self.det_head is None:
            empty = np.zeros((0, 4), np.float32)
            return [
                FramePrediction(empty, np.zeros(0, np.float32), np.zeros(0, np.int64), None, probs[i])
                for i in range(n)
            ]
        det = heads[self.det_head]
        maps = {k: torch.from_numpy(raw[name]) for k, name in det["outputs"].items()}
        decoded = decode_centers(maps, det["stride"], det["max_per_img"], det["score_thr"], det["nms_iou"])
        emb_map = (
            None if self.emb_head is None else torch.from_numpy(raw[heads[self.emb_head]["outputs"][""]])
        )
        results = []
        for i, (d, meta) in enumerate(zip(decoded, metas)):
            emb = None if emb_map is None else gather_embeddings(emb_map[i], d["cells"]).numpy()
            results.append(
                FramePrediction(
                    bboxes=to_original_coords(d["bboxes"], meta).numpy(),
                    scores=d["scores"].numpy(),
                    labels=d["labels"].numpy(),
                    embeddings=emb,
                    class_probs=None if probs is None else probs[i],
                )
            )
        return results

    # ---- end to end ----------------------------------------------------------------------
    def predict(self, frame: np.ndarray) -> FramePrediction:
        """One uint8 ``(H, W, 3)`` frame -> its predictions."""
        return self.predict_batch([frame])[0]

    __call__ = predict

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[FramePrediction]:
        """Several frames (any sizes) -> predictions; batched when the export allows it."""
        if len(frames) == 0:
            return []
        prepared = [self.preprocess(f) for f in frames]
        step = self.fixed_batch or len(prepared)
        results: list[FramePrediction] = []
        for s in range(0, len(prepared), step):
            chunk = prepared[s : s + step]
            if len(chunk) != step:  # a fixed-batch export: run the rest one batch-sized pad at a time
                chunk = chunk + [chunk[-1]] * (step - len(chunk))
            raw = self.run_raw(np.stack([c[0] for c in chunk]))
            results.extend(self.postprocess(raw, [c[1] for c in chunk]))
        return results[: len(frames)]
