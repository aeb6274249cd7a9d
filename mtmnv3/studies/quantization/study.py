"""The end-to-end int8 study (what ``tools/quantize.py`` runs) and its markdown report."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.core.profiling import format_table
from mtmnv3.runtime.onnx_export import export_onnx
from mtmnv3.studies.quantization.calibration import build_loader, calibration_arrays
from mtmnv3.studies.quantization.evaluate import OrtRawFn, evaluate_raw_fn
from mtmnv3.studies.quantization.pt2e import (
    capture_for_pt2e,
    compile_quantized,
    convert_qat,
    prepare_qat,
    qat_finetune,
    quantize_pt2e,
)
from mtmnv3.studies.quantization.quantize import INT8_RECIPES, OrtQuantConfig, quantize_onnx, with_config
from mtmnv3.studies.quantization.speed import LatencyRow, compare_latency, ort_timer
from mtmnv3.studies.quantization.sqnr import ort_layer_sqnr, pt2e_layer_sqnr, sqnr_by_kind, sqnr_markdown

__all__ = ["METHODS", "StudyOptions", "quantization_study", "study_markdown"]

#: Study methods of :func:`quantization_study`.
METHODS = ("ort-static", "pt2e", "qat")


@dataclass
class StudyOptions:
    """Options of :func:`quantization_study` (the CLI's flags).

    Attributes:
        method: ``'ort-static'``, ``'pt2e'`` or ``'qat'``.
        size: square input size (None: the config's letterbox size from the first calibration frame).
        calib_samples: calibration frames from the training split.
        threads: thread counts for the latency comparison.
        ort_config: ONNX Runtime quantization options (``ort-static``).
        sqnr_samples: frames for the per-layer SQNR table.
        eval_samples: validation frames for the task metrics (None: all).
        latency_repeats: interleaved measurements per thread count.
        qat_steps: fine-tuning steps (``qat``).
        qat_batch: images per QAT step.
        qat_lr: QAT learning rate.
        compile: ``torch.compile`` the PT2E/QAT int8 graph for latency.
    """

    method: str = "ort-static"
    size: int | None = None
    calib_samples: int = 64
    threads: tuple[int, ...] = (1, 2)
    ort_config: OrtQuantConfig = field(default_factory=lambda: INT8_RECIPES["fast"])
    sqnr_samples: int = 8
    eval_samples: int | None = None
    latency_repeats: int = 3
    qat_steps: int = 50
    qat_batch: int = 8
    qat_lr: float = 1e-4
    compile: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("calib_samples", "sqnr_samples", "latency_repeats", "qat_steps", "qat_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not self.threads or any(not isinstance(t, int) or t < 1 for t in self.threads):
            raise ValueError(f"threads must be positive ints, got {self.threads!r}")


def _loss_fn(model: nn.Module) -> Callable[[dict[str, Any], Any], Tensor]:
    """QAT loss: the sum of every head's losses (the model's ``task_losses`` terms)."""

    def loss(outputs: dict[str, Any], batch: Mapping[str, Any]) -> Tensor:
        samples = batch["data_samples"]
        return sum(sum(model.heads[n].loss(outputs[n], samples).values()) for n in outputs)

    return loss


def _train_batches(
    cfg: Any, model: nn.Module, n_steps: int, batch_size: int, seed: int = 0
) -> list[dict[str, Any]]:
    loader = build_loader(cfg, "train", shuffle=True, seed=seed, batch_size=batch_size)
    out = []
    for data in loader:
        pre = model.data_preprocessor(data, True)
        out.append(dict(inputs=pre["inputs"].float(), data_samples=pre["data_samples"]))
        if len(out) >= n_steps:
            break
    return out


def _latency_rows_dict(rows: Sequence[LatencyRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def quantization_study(
    model: nn.Module,
    cfg: Any,
    out_dir: str | os.PathLike,
    options: StudyOptions,
    evaluate: bool = True,
    name: str = "model",
) -> dict[str, Any]:
    """Quantize ``model``, then measure int8 against fp32: latency, per-layer SQNR, task metrics.

    ``ort-static``: export fp32 ONNX -> :func:`quantize_onnx` -> ORT latency
    (fp32 vs int8, interleaved) -> :func:`~mtmnv3.studies.quantization.sqnr.ort_layer_sqnr`
    (on a QDQ model) -> metrics of both ORT models. ``pt2e`` / ``qat``: torchao
    flow; latency of the fp32 exported graph vs the int8 graph (compiled with
    Inductor when that works here), SQNR from the graphs, metrics of both.

    Args:
        model: the fp32 MultiTaskPerceptor (eval mode).
        cfg: its loaded config (calibration from the train split, metrics on val).
        out_dir: where the ONNX files go.
        options: see :class:`StudyOptions`.
        evaluate: compute task metrics (needs the config's val data).
        name: file name stem.

    Returns:
        A JSON-ready results dict (see the CLI's output).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    calib = calibration_arrays(cfg, model, options.calib_samples, split="train")
    size = options.size or int(calib[0].shape[-1])
    if calib[0].shape[-2:] != (size, size):
        raise ValueError(
            f"--size {size} differs from the config's letterbox size {tuple(calib[0].shape[-2:])}; "
            "calibration and evaluation frames come from the config's pipeline"
        )
    example = calib[0]
    sqnr_inputs = calib[: options.sqnr_samples]
    results: dict[str, Any] = dict(method=options.method, size=size, calib_samples=len(calib), name=name)
    fp32_path = out_dir / f"{name}.fp32.onnx"
    meta = export_onnx(model, fp32_path, input_size=size)
    layout = meta["outputs"]

    if options.method == "ort-static":
        int8_path = out_dir / f"{name}.int8.onnx"
        ref_path = out_dir / f"{name}.fp32.pre.onnx"
        report = quantize_onnx(fp32_path, int8_path, calib, options.ort_config, preprocessed_path=ref_path)
        results["quantization"] = report
        rows = compare_latency(
            ort_timer(fp32_path, example),
            ort_timer(int8_path, example),
            options.threads,
            name=f"{name} ORT",
            repeats=options.latency_repeats,
        )
        qdq_path = int8_path
        if options.ort_config.quant_format != "qdq":
            qdq_path = out_dir / f"{name}.int8.qdq.onnx"
            quantize_onnx(fp32_path, qdq_path, calib, with_config(options.ort_config, quant_format="qdq"))
        sqnr_rows = ort_layer_sqnr(ref_path, qdq_path, sqnr_inputs)
        fp32_fn: Callable[[Tensor], Sequence[Tensor]] = OrtRawFn(fp32_path)
        int8_fn: Callable[[Tensor], Sequence[Tensor]] = OrtRawFn(int8_path)
    else:
        if options.method == "pt2e":
            graph = quantize_pt2e(model, calib)
        else:
            batches = _train_batches(cfg, model, options.qat_steps, options.qat_batch)
            qat = prepare_qat(model, batches[0]["inputs"].contiguous())
            losses = qat_finetune(qat, batches, _loss_fn(model), options.qat_steps, lr=options.qat_lr)
            results["qat"] = dict(
                steps=options.qat_steps, batch=options.qat_batch, first_loss=losses[0], last_loss=losses[-1]
            )
            graph = convert_qat(qat)
        reference = capture_for_pt2e(model, torch.from_numpy(example))
        sqnr_rows = pt2e_layer_sqnr(
            reference.module, graph.module, [torch.from_numpy(a) for a in sqnr_inputs]
        )
        compiled, reason = compile_quantized(graph) if options.compile else (None, "not requested")
        results["compile"] = dict(ok=compiled is not None, error=reason)
        ex = torch.from_numpy(example)
        fp32_compiled = None
        if compiled is not None:
            fp32_compiled, _ = compile_quantized(reference)
        fp32_run = fp32_compiled or reference
        int8_run = compiled or graph

        def timer(fn: Callable[[Tensor], Any]) -> Callable[[int], Callable[[], object]]:
            def make(threads: int) -> Callable[[], object]:
                def run() -> object:
                    with torch.no_grad():
                        return fn(ex)

                return run

            return make

        rows = compare_latency(
            timer(fp32_run),
            timer(int8_run),
            options.threads,
            name=f"{name} torch{' compiled' if compiled else ' eager'}",
            repeats=options.latency_repeats,
        )
        fp32_fn, int8_fn = reference, graph
        layout = graph.layout
    results["latency"] = _latency_rows_dict(rows)
    results["sqnr"] = dict(by_kind=sqnr_by_kind(sqnr_rows), layers=[r.to_dict() for r in sqnr_rows])
    results["sqnr_rows"] = sqnr_rows
    if evaluate:
        m32 = evaluate_raw_fn(fp32_fn, model, layout, cfg, max_samples=options.eval_samples)
        m8 = evaluate_raw_fn(int8_fn, model, layout, cfg, max_samples=options.eval_samples)
        results["metrics"] = dict(fp32=m32, int8=m8, drop={k: m32[k] - m8[k] for k in m32 if k in m8})
    return results


def study_markdown(results: Mapping[str, Any], sqnr_worst: int = 15) -> str:
    """Markdown report of :func:`quantization_study` results."""
    parts = [f"# int8 study: {results['name']} ({results['method']}, {results['size']}x{results['size']})"]
    parts.append(
        format_table(
            ["threads", "fp32 ms", "int8 ms", "speed-up", "speed-up range", "speed-up of fastest calls"],
            [
                [
                    r["threads"],
                    r["fp32_ms"],
                    r["int8_ms"],
                    r["speedup"],
                    f"{r['speedup_spread'][0]:.2f}-{r['speedup_spread'][1]:.2f}",
                    r["speedup_of_min"],
                ]
                for r in results["latency"]
            ],
        )
    )
    if "metrics" in results:
        m = results["metrics"]
        parts.append(
            format_table(
                ["metric", "fp32", "int8", "drop (points)"],
                [[k, m["fp32"][k], m["int8"][k], 100.0 * m["drop"][k]] for k in m["drop"]],
            )
        )
    if "sqnr_rows" in results:
        parts.append("## Per-layer SQNR\n\n" + sqnr_markdown(results["sqnr_rows"], worst=sqnr_worst))
    return "\n\n".join(parts) + "\n"
