"""Run and evaluate raw-output functions: an ORT session or a PT2E graph through the model's own decode.

:func:`evaluate_raw_fn` runs any "normalised images -> raw head tensors"
callable (an :class:`OrtRawFn`, a PT2E graph) through the model's heads'
``predict`` and the config's ``val_evaluator`` metrics.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.runtime.ort_runtime import DEFAULT_OPTIMIZATION, make_session
from mtmnv3.studies.quantization.calibration import build_loader

__all__ = ["OrtRawFn", "head_outputs_from_raw", "evaluate_raw_fn"]


class OrtRawFn:
    """An ONNX Runtime session as ``(N, 3, H, W) images -> tuple of raw output tensors``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads.
        optimization: graph optimisation level name of ``onnxruntime.GraphOptimizationLevel``
            (default all; ``'ORT_DISABLE_ALL'`` gives the unfused QDQ reference numerics).
    """

    def __init__(
        self, path: str | os.PathLike, threads: int = 1, optimization: str = DEFAULT_OPTIMIZATION
    ) -> None:
        # ORT's spinning default: back-to-back runs, as the fp32/int8 speed-ups are timed.
        self.session = make_session(path, threads, allow_spinning=True, optimization=optimization)
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        shape = self.session.get_inputs()[0].shape
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def run_numpy(self, images: np.ndarray) -> list[np.ndarray]:
        """Float32 images -> the outputs as numpy arrays."""
        return self.session.run(
            self.output_names, {self.input_name: np.ascontiguousarray(images, np.float32)}
        )

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        x = images.detach().float().cpu().numpy()
        step = self.fixed_batch or len(x)
        parts = [self.run_numpy(x[i : i + step]) for i in range(0, len(x), step)]
        return tuple(torch.from_numpy(np.concatenate(p)) for p in zip(*parts))


def head_outputs_from_raw(raw: Sequence[Tensor], layout: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Raw tensors in ``layout`` order -> ``{head: Tensor | {key: Tensor}}`` (what heads' loss/predict take)."""
    if len(raw) != len(layout):
        raise ValueError(f"got {len(raw)} raw outputs for a layout of {len(layout)}")
    out: dict[str, Any] = {}
    for t, o in zip(raw, layout):
        if o["key"] is None:
            out[o["head"]] = t
        else:
            out.setdefault(o["head"], {})[o["key"]] = t
    return out


@torch.no_grad()
def evaluate_raw_fn(
    raw_fn: Callable[[Tensor], Sequence[Tensor]],
    model: nn.Module,
    layout: Sequence[Mapping[str, Any]],
    cfg: Any,
    split: str = "val",
    max_samples: int | None = None,
    batch_size: int = 1,
) -> dict[str, float]:
    """Task metrics of a raw-output function on a config's split, with the model's own decode.

    Args:
        raw_fn: normalised ``(N, 3, H, W)`` -> raw tensors in ``layout`` order
            (an :class:`OrtRawFn`, a :class:`Pt2eGraph`, ...).
        model: the MultiTaskPerceptor (its data preprocessor and heads' ``predict``).
        layout: output layout (sidecar ``outputs`` or ``Pt2eGraph.layout``).
        cfg: the loaded config; its ``val_evaluator`` (or ``test_evaluator``) metrics are used.
        split: ``'val'`` or ``'test'``.
        max_samples: evaluate only the first ones (None: all).
        batch_size: images per call of ``raw_fn``.

    Returns:
        ``{metric name: value}`` as the evaluator reports it.
    """
    from mmengine.evaluator import Evaluator

    from mtmnv3.core.registry import METRICS

    ev_cfg = cfg.get("val_evaluator") if split == "val" else cfg.get("test_evaluator")
    if ev_cfg is None:
        raise ValueError(f"the config has no {split}_evaluator")
    ev_list = ev_cfg if isinstance(ev_cfg, (list, tuple)) else [ev_cfg]
    evaluator = Evaluator([METRICS.build(copy.deepcopy(dict(c))) for c in ev_list])
    loader = build_loader(cfg, split, shuffle=False, seed=0, batch_size=batch_size)
    heads_in_layout = list(dict.fromkeys(o["head"] for o in layout))
    order = model.predict_order(heads_in_layout)
    seen = 0
    for data in loader:
        pre = model.data_preprocessor(data, False)
        outputs = head_outputs_from_raw(raw_fn(pre["inputs"].float()), layout)
        samples = pre["data_samples"]
        for n in order:
            model.heads[n].predict(outputs[n], samples)
        evaluator.process(data_samples=samples, data_batch=data)
        seen += len(samples)
        if max_samples is not None and seen >= max_samples:
            break
    return {k: float(v) for k, v in evaluator.evaluate(seen).items()}
