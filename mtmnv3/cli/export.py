"""``mtmnv3 export``: export a trained multi-task model's raw outputs to ONNX (whole model or stage pieces).

Writes ``model.onnx`` and its ``model.onnx.json`` sidecar; with ``--split-plan``
writes ``model.piece{k}.onnx``, ``model.heads.onnx`` and the manifest
``model.split.json`` next to ``--out`` instead. Files are written atomically;
on an error nothing new is left behind and the exit status is 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mtmnv3.apis import init_model
from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.engine import DictAction
from mtmnv3.runtime.onnx_export import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    EXPORTERS,
    export_onnx,
    export_split,
)

DESCRIPTION = "export a trained model to ONNX (whole model or stage pieces)"
EXAMPLE = """\
mtmnv3 export configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --out work_dirs/onnx/model.onnx"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``export`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("export", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="output .onnx file (pieces are named after it)")
    p.add_argument("--size", type=int, default=320, help="square input size, a multiple of 32 (default 320)")
    p.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER)
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--heads", help="comma-separated head names to export (default: all)")
    p.add_argument("--split-plan", help="stage plan JSON: export one ONNX per piece plus a heads piece")
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension")
    p.add_argument("--dynamic-size", action="store_true", help="symbolic height and width")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 export`` for parsed ``args``; returns the exit status."""
    try:
        for what, path in (("config", args.config), ("checkpoint", args.checkpoint)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} not found: {path}")
        if args.split_plan is not None and not os.path.isfile(args.split_plan):
            raise FileNotFoundError(f"stage plan not found: {args.split_plan}")
        if not args.out.endswith(".onnx"):
            raise ValueError(f"--out must name a .onnx file, got {args.out!r}")
        model = init_model(args.config, args.checkpoint, args.cfg_options)
        common = dict(
            heads=args.heads,
            input_size=args.size,
            exporter=args.exporter,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            dynamic_size=args.dynamic_size,
        )
        if args.split_plan is None:
            meta = export_onnx(model, args.out, **common)
            print(f"wrote {args.out} (+ .json): outputs {[o['name'] for o in meta['outputs']]}")
        else:
            folder = os.path.dirname(os.path.abspath(args.out))
            prefix = os.path.basename(args.out)[: -len(".onnx")]
            manifest = export_split(model, folder, plan=args.split_plan, prefix=prefix, **common)
            files = [p["file"] for p in manifest["pieces"]]
            print(f"wrote {files} and {prefix}.split.json to {folder}")
    except (FileNotFoundError, KeyError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 export`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("export", argv)
    return run(args)
