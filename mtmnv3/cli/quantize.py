"""``mtmnv3 quantize``: quantize a trained multi-task model to int8 and measure it against fp32.

CHECKPOINT may be ``none`` (initial weights: latency and SQNR only). Writes
``quantize_<method>.json`` and ``.md`` (latency fp32 vs int8 per thread
count, per-layer SQNR, task metrics fp32 vs int8 when the config's
validation data exists) and the ONNX files to ``--out-dir``, atomically.
Exit status 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.engine import DictAction, load_config
from mtmnv3.studies.quantization import (
    CALIBRATION_METHODS,
    INT8_RECIPES,
    METHODS,
    StudyOptions,
    quantization_study,
    study_markdown,
    with_config,
)

DESCRIPTION = "int8 quantization study of a model against fp32"
EXAMPLE = """\
mtmnv3 quantize configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --method ort-static"""


def _threads(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threads must be comma-separated ints, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"--threads must be positive ints, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``quantize`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("quantize", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config")
    p.add_argument("checkpoint", help="mmengine checkpoint, or 'none' for the initial weights")
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument(
        "--variant",
        help="trunk variant (mtmnv3.backbone.variants.TRUNK_VARIANTS) replacing the config's trunk",
    )
    p.add_argument("--calib-samples", type=int, default=64)
    p.add_argument("--size", type=int, help="input size (default: the config's letterbox size)")
    p.add_argument("--threads", type=_threads, default=(1, 2))
    p.add_argument("--out-dir", default="work_dirs/quantize")
    p.add_argument("--recipe", choices=sorted(INT8_RECIPES), default="fast", help="ORT quantization recipe")
    p.add_argument("--calibrate-method", choices=sorted(CALIBRATION_METHODS))
    p.add_argument(
        "--exclude-op-types", type=_names, default=None, help="op types kept float, comma-separated"
    )
    p.add_argument(
        "--exclude-nodes", type=_names, default=None, help="node names kept float, comma-separated"
    )
    p.add_argument(
        "--exclude-kinds",
        type=_names,
        default=None,
        help="layer kinds kept float (hard_swish,se_multiply,...)",
    )
    p.add_argument(
        "--exclude-modules", type=_names, default=None, help="module path prefixes kept float (heads.cls,...)"
    )
    p.add_argument("--qat-steps", type=int, default=50)
    p.add_argument("--eval-samples", type=int, help="validation frames for the metrics (default: all)")
    p.add_argument("--latency-repeats", type=int, default=3)
    p.add_argument("--no-eval", action="store_true", help="skip the task metrics")
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile the PT2E graphs")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p


def _options(args: argparse.Namespace) -> StudyOptions:
    ort_config = INT8_RECIPES[args.recipe]
    changes = {}
    if args.calibrate_method is not None:
        changes["calibrate_method"] = args.calibrate_method
    if args.exclude_op_types is not None:
        changes["exclude_op_types"] = args.exclude_op_types
    for key in ("exclude_nodes", "exclude_kinds", "exclude_modules"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if changes:
        ort_config = with_config(ort_config, **changes)
    if args.size is not None and (args.size < 32 or args.size % 32):
        raise ValueError(f"--size must be a positive multiple of 32, got {args.size}")
    if args.eval_samples is not None and args.eval_samples < 1:
        raise ValueError(f"--eval-samples must be positive, got {args.eval_samples}")
    return StudyOptions(
        method=args.method,
        size=args.size,
        calib_samples=args.calib_samples,
        threads=args.threads,
        ort_config=ort_config,
        eval_samples=args.eval_samples,
        latency_repeats=args.latency_repeats,
        qat_steps=args.qat_steps,
        compile=not args.no_compile,
    )


def _has_val_data(cfg: object) -> bool:
    try:
        return "val_dataloader" in cfg and "val_evaluator" in cfg  # type: ignore[operator]
    except TypeError:
        return False


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 quantize`` for parsed ``args``; returns the exit status."""
    try:
        if not os.path.isfile(args.config):
            raise FileNotFoundError(f"config not found: {args.config}")
        checkpoint = None if args.checkpoint.lower() == "none" else args.checkpoint
        if checkpoint is not None and not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        options = _options(args)
        cfg_options = dict(args.cfg_options or {})
        if args.variant is not None:
            from mtmnv3.backbone.variants import TRUNK_VARIANTS

            if args.variant not in TRUNK_VARIANTS:
                raise ValueError(
                    f"unknown --variant {args.variant!r}; expected one of {sorted(TRUNK_VARIANTS)}"
                )
            cfg_options["model.trunk"] = dict(type="MobileNetV3Trunk", **TRUNK_VARIANTS[args.variant])
        from mtmnv3.apis import init_model

        cfg = load_config(args.config, cfg_options or None)
        model = init_model(args.config, checkpoint, cfg_options or None)
        name = args.variant or os.path.splitext(os.path.basename(args.config))[0]
        evaluate = not args.no_eval and checkpoint is not None and _has_val_data(cfg)
        results = quantization_study(model, cfg, args.out_dir, options, evaluate=evaluate, name=name)
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stem = os.path.join(args.out_dir, f"quantize_{args.method.replace('-', '_')}")
    markdown = study_markdown(results)
    results.pop("sqnr_rows", None)
    results.update(config=args.config, checkpoint=args.checkpoint, variant=args.variant)
    atomic_write_json(stem + ".json", results)
    with atomic_open(stem + ".md", "w") as f:
        f.write(markdown)
    print(markdown)
    print(f"wrote {stem}.json and {stem}.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 quantize`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("quantize", argv)
    return run(args)
