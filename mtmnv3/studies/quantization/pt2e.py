"""int8 with torchao PT2E: capture, post-training quantization, QAT fine-tuning, Inductor compile.

:func:`quantize_pt2e` (export -> ``prepare_pt2e`` with ``X86InductorQuantizer``
-> calibrate -> ``convert_pt2e``), and QAT with :func:`prepare_qat` /
:func:`qat_finetune` / :func:`convert_qat`. The captured graphs return the
model's raw head tensors in the ONNX export's output layout.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mtmnv3.runtime.export_graphs import HeadOutputsGraph, output_layout
from mtmnv3.studies.quantization.evaluate import head_outputs_from_raw

__all__ = [
    "Pt2eGraph",
    "capture_for_pt2e",
    "quantize_pt2e",
    "prepare_qat",
    "qat_finetune",
    "convert_qat",
    "compile_quantized",
]


@dataclass
class Pt2eGraph:
    """A captured (and possibly quantized) model: images -> raw head tensors in ``layout`` order.

    Attributes:
        module: the ``torch.fx.GraphModule``.
        layout: output names and heads (as in the ONNX export's sidecar).
        example: the example input it was captured with, ``(N, 3, H, W)``.
    """

    module: torch.fx.GraphModule
    layout: list[dict[str, Any]]
    example: Tensor

    def __call__(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.module(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _heads(model: nn.Module, heads: Sequence[str] | None) -> tuple[str, ...]:
    names = tuple(model.heads) if heads is None else tuple(heads)
    unknown = [h for h in names if h not in model.heads]
    if not names or unknown:
        raise ValueError(f"unknown heads {unknown or list(names)}; the model's heads are {list(model.heads)}")
    return names


def capture_for_pt2e(
    model: nn.Module,
    example: Tensor,
    heads: Sequence[str] | None = None,
    train: bool = False,
    dynamic_batch: bool = False,
) -> Pt2eGraph:
    """``torch.export`` the model's raw head outputs for PT2E quantization.

    Args:
        model: a MultiTaskPerceptor (not modified; a copy is captured).
        example: a normalised ``(N, 3, H, W)`` input.
        heads: head names (default all).
        train: capture in training mode (QAT needs the BatchNorm training ops).
        dynamic_batch: leave the batch dimension symbolic (QAT trains on
            batches and evaluates on single frames); a batch-1 example is
            repeated, since torch.export specialises size-1 dimensions.
    """
    names = _heads(model, heads)
    model = copy.deepcopy(model).train(train)
    # The layout in the captured mode: a head may return more in training (the
    # classification head's tap, for its object loss). Probed on a throwaway
    # copy, so training-mode BatchNorm does not touch the captured statistics.
    with torch.no_grad():
        layout = output_layout(copy.deepcopy(model).head_outputs(example, names), names)
    graph = HeadOutputsGraph(model, names, layout).train(train)
    dynamic_shapes = None
    if dynamic_batch:
        if len(example) == 1:
            example = example.repeat(2, 1, 1, 1)
        dynamic_shapes = ({0: torch.export.Dim.AUTO},)
    exported = torch.export.export(graph, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    return Pt2eGraph(exported.module(), layout, example)


def _x86_quantizer(is_qat: bool, reduce_range: bool = False) -> Any:
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer()
    quantizer.set_global(
        get_default_x86_inductor_quantization_config(is_qat=is_qat, reduce_range=reduce_range)
    )
    return quantizer


def _as_tensor_batches(batches: Iterable[np.ndarray | Tensor]) -> Iterator[Tensor]:
    for b in batches:
        t = torch.from_numpy(np.asarray(b)) if not isinstance(b, Tensor) else b
        yield t[None] if t.ndim == 3 else t


@torch.no_grad()
def quantize_pt2e(
    model: nn.Module,
    calibration: Iterable[np.ndarray | Tensor],
    heads: Sequence[str] | None = None,
    quantizer: Any = None,
) -> Pt2eGraph:
    """Post-training static int8 quantization with torchao PT2E.

    Steps: export -> ``prepare_pt2e`` (X86InductorQuantizer: per-channel s8
    weights, u8 activations; conv+bn folded) -> run the calibration batches
    through the observers -> ``convert_pt2e`` (Q/DQ reference graph).

    Args:
        model: the fp32 MultiTaskPerceptor.
        calibration: normalised images ``(3, H, W)`` or ``(N, 3, H, W)``; the
            first one is also the export example.
        heads: head names (default all).
        quantizer: a torchao ``Quantizer`` (default X86InductorQuantizer).

    Returns:
        The converted graph (eval mode); ``torch.compile`` it to get int8 kernels
        (:func:`compile_quantized`).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    batches = list(_as_tensor_batches(calibration))
    if not batches:
        raise ValueError("no calibration batches given")
    captured = capture_for_pt2e(model, batches[0][:1], heads)
    prepared = prepare_pt2e(captured.module, quantizer or _x86_quantizer(is_qat=False))
    for b in batches:
        for i in range(len(b)):
            prepared(b[i : i + 1].float())
    converted = convert_pt2e(prepared)
    return Pt2eGraph(converted, captured.layout, captured.example)


def prepare_qat(
    model: nn.Module, example: Tensor, heads: Sequence[str] | None = None, quantizer: Any = None
) -> Pt2eGraph:
    """Capture in training mode and insert fake-quant modules (``prepare_qat_pt2e``).

    The result trains like a module: call it on batches, back-propagate a loss
    of its outputs (:func:`qat_finetune`), then :func:`convert_qat`.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    captured = capture_for_pt2e(model, example, heads, train=True, dynamic_batch=True)
    prepared = prepare_qat_pt2e(captured.module, quantizer or _x86_quantizer(is_qat=True))
    return Pt2eGraph(prepared, captured.layout, captured.example)


def qat_finetune(
    qat: Pt2eGraph,
    batches: Iterable[Any],
    loss_fn: Callable[[dict[str, Any], Any], Tensor],
    steps: int,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-4,
    freeze_bn_after: int | None = None,
    images_of: Callable[[Any], Tensor] | None = None,
) -> list[float]:
    """A short quantization-aware fine-tuning loop.

    Args:
        qat: from :func:`prepare_qat`.
        batches: an iterable of batches (cycled until ``steps``).
        loss_fn: ``(head outputs {head: tensor | {key: tensor}}, batch) -> scalar loss``;
            e.g. built from the model's heads' ``loss`` (see the CLI).
        steps: optimisation steps.
        optimizer: default SGD(momentum 0.9, ``lr``) over the graph's parameters.
        lr: learning rate of the default optimizer.
        freeze_bn_after: after this many steps BatchNorm statistics stop updating
            (the usual QAT schedule); None never.
        images_of: ``batch -> normalised images`` (default: the batch itself, or ``batch['inputs']``).

    Returns:
        The loss of each step.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    module = qat.module
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = optimizer or torch.optim.SGD(params, lr=lr, momentum=0.9)
    images_of = images_of or (lambda b: b["inputs"] if isinstance(b, Mapping) else b)
    move_exported_model_to_train(module)
    losses: list[float] = []
    source = iter(())
    batches_list = batches if isinstance(batches, Sequence) else None
    while len(losses) < steps:
        batch = next(source, None)
        if batch is None:
            source = iter(batches_list if batches_list is not None else batches)
            batch = next(source, None)
            if batch is None:
                raise ValueError("no fine-tuning batches given")
        if freeze_bn_after is not None and len(losses) == freeze_bn_after:
            move_exported_model_to_eval(module)  # BN statistics frozen; fake-quant keeps training
        outputs = head_outputs_from_raw(qat(images_of(batch)), qat.layout)
        loss = loss_fn(outputs, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite QAT loss {loss.item()} at step {len(losses) + 1}")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    move_exported_model_to_eval(module)
    return losses


def convert_qat(qat: Pt2eGraph) -> Pt2eGraph:
    """Fine-tuned fake-quant graph -> converted int8 (Q/DQ) graph in eval mode."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    module = move_exported_model_to_eval(qat.module)
    return Pt2eGraph(convert_pt2e(module), qat.layout, qat.example)


def compile_quantized(graph: Pt2eGraph) -> tuple[Callable[[Tensor], tuple[Tensor, ...]] | None, str | None]:
    """``torch.compile`` a converted PT2E graph (Inductor lowers Q/DQ patterns to int8 kernels).

    Returns:
        ``(compiled callable, None)``, or ``(None, reason)`` when compilation
        fails on this machine (e.g. no C++ compiler for Inductor).
    """
    try:
        import torch._inductor.config as inductor_config

        # Freezing folds the int8 weights into constants, which the x86 int8 conv lowering needs.
        compiled = torch.compile(graph.module)
        with torch.no_grad(), inductor_config.patch(freezing=True):
            compiled(graph.example)
    except Exception as e:  # noqa: BLE001 - any backend failure means "not available here"
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"

    def run(images: Tensor) -> tuple[Tensor, ...]:
        with torch.no_grad(), inductor_config.patch(freezing=True):
            out = compiled(images)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return run, None
