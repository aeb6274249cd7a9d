"""Deployed files run on frames: letterbox, normalise, the file's runtime, then the model's own decode.

Frames go in as uint8 ``(H, W, 3)`` arrays, **BGR by default** (what OpenCV's
``VideoCapture``/``imread`` give; pass ``input_color='rgb'`` for RGB frames).
The model was trained on RGB images letterboxed to its input size (grey 114
padding, :class:`mtmnv3.data.transforms.Letterbox`) and normalised with the
ImageNet mean/std of its data preprocessor; the runner reproduces exactly
that from the export's sidecar, runs the file on the runtime the sidecar
names (:func:`mtmnv3.runtime.sessions.open_session`), and decodes with the
torch code the model itself uses (:func:`mtmnv3.heads.center_head.decode_centers`,
batched NMS, :func:`mtmnv3.heads.embedding_head.gather_embeddings`), so
detections match ``MultiTaskPerceptor.predict``. Boxes come back in the
original frame's pixels, at any frame size and aspect.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mtmnv3.data.transforms import Letterbox
from mtmnv3.heads.base import CLASSIFICATION, DETECTION, EMBEDDING, heads_by_task
from mtmnv3.heads.center_head import decode_centers, to_original_coords
from mtmnv3.heads.embedding_head import gather_embeddings
from mtmnv3.runtime.export_meta import size_text
from mtmnv3.runtime.ort_runtime import CPU_PROVIDER
from mtmnv3.runtime.sessions import open_session

__all__ = ["DeployedRunner", "FramePrediction", "INPUT_COLORS"]

#: Frame colour orders the runner accepts.
INPUT_COLORS = ("bgr", "rgb")


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


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` inside the block (restored after)."""
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


class DeployedRunner:
    """Letterbox + normalise -> a deployed file on its runtime -> the model's own torch decode.

    Args:
        path: a deployed file with its ``<file>.json`` sidecar (``.onnx``,
            ``.pte``, OpenVINO ``.xml``) or an ONNX split manifest
            ``*.split.json`` (pieces run in separate sessions); the sidecar
            names the runtime.
        threads: intra-op threads of the runtime.
        providers: ONNX Runtime execution providers (default CPU only; checked after creation).
        input_color: channel order of the frames given: ``'bgr'`` (OpenCV, the
            default) or ``'rgb'``.
        input_size: ``(height, width)`` letterbox size for a dynamic-size
            export (default: the export's size, a rectangle or a square;
            fixed-size exports refuse others). Frames of any shape are
            letterboxed into it with their aspect kept.

    The decode (:meth:`postprocess`) runs PyTorch on one intra-op thread: it
    works on small output maps, where a thread pool's fork and join cost more
    than the work, and the pool's threads would compete with the runtime's for
    the cores (benchmarks/demo_pipeline.py).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        threads: int = 1,
        providers: Sequence[str] | None = None,
        input_color: str = "bgr",
        input_size: Sequence[int] | None = None,
    ) -> None:
        if input_color not in INPUT_COLORS:
            raise ValueError(f"input_color must be one of {INPUT_COLORS}, got {input_color!r}")
        self.session = open_session(path, threads, providers)
        self.meta = self.session.meta
        self.backend = self.session.backend
        self.threads = threads
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

        Frames of any shape are letterboxed into it: resized with their aspect
        kept, centred, the rest padded grey; boxes come back in frame pixels.

        Raises:
            ValueError: another size on a fixed-size export, or a size that is not
                a multiple of the export's size divisor.
        """
        inp = self.meta["input"]
        size = tuple(inp["size"]) if input_size is None else tuple(int(s) for s in input_size)
        if size != tuple(inp["size"]) and not inp["dynamic_size"]:
            got = size_text(size) if len(size) == 2 else repr(input_size)
            raise ValueError(
                f"this export has a fixed input size {size_text(inp['size'])} (WxH; (height, width) "
                f"{tuple(inp['size'])}), got input_size={input_size!r} ({got})"
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
    def providers(self) -> list[str]:
        """ONNX Runtime execution providers in use (``['CPU']`` for the other runtimes)."""
        return self.session.providers if self.backend == "onnxruntime" else ["CPU"]

    @property
    def is_cpu(self) -> bool:
        """Whether the file runs on the CPU (ONNX Runtime: its CPU provider comes first)."""
        return self.backend != "onnxruntime" or self.session.providers[0] == CPU_PROVIDER

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
        return self.session.run(np.ascontiguousarray(images, dtype=np.float32))

    def postprocess(
        self, raw: Mapping[str, np.ndarray], metas: Sequence[dict[str, Any]]
    ) -> list[FramePrediction]:
        """Raw outputs of a batch -> per-frame predictions (the model's own decode code, on one thread)."""
        with _torch_threads(1):
            return self._postprocess(raw, metas)

    def _postprocess(
        self, raw: Mapping[str, np.ndarray], metas: Sequence[dict[str, Any]]
    ) -> list[FramePrediction]:
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
