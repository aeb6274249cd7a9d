"""``mtmnv3 export``: a trained multi-task model as a deployed file for ONNX Runtime, ExecuTorch or OpenVINO.

``--format onnx|executorch|openvino`` writes ``model.onnx``, ``model.pte`` or
``model.xml`` (+ ``.bin``) and its ``<file>.json`` sidecar; ``--int8``
quantizes with the runtime's own tools on ``--calib-images`` training frames.
Every export is checked against PyTorch on held-out (test split) frames, per
raw output, and the sidecar records the format, precision, parity, input
size and the config's hash. The input is the ``--size`` square by default;
``--input-size WxH`` gives the file a rectangular input shape instead (e.g.
``320x192`` for 16:9 video), and ``--frame-size WxH`` derives that rectangle
from a sample frame size: the smallest one that keeps the frame's aspect at
long side ``--size`` with both sides multiples of 32 (1920x1080 at 320 ->
320x192). Frames of any shape are letterboxed into the file's shape at run
time, aspect kept. With ``--pieces PLAN`` (ONNX) it writes
``model.piece{k}.onnx``, ``model.heads.onnx`` and the manifest
``model.split.json`` next to ``--out`` instead. A failed parity check exits 1
and leaves nothing behind; bad input exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from mtmnv3.apis import init_model
from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.cli._deploy import (
    DEFAULT_CALIB_IMAGES,
    DEFAULT_PARITY_FRAMES,
    FORMATS,
    DeployError,
    export_deployed,
)
from mtmnv3.data.transforms import keep_aspect_shape
from mtmnv3.engine import DictAction, input_size, load_config
from mtmnv3.runtime.export_meta import resolve_size, size_divisor, size_text
from mtmnv3.runtime.onnx_export import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, export_split

#: Input size of a config without test data when --size is not given.
DEFAULT_SIZE = 320
DESCRIPTION = (
    "export a trained model for ONNX Runtime, ExecuTorch or OpenVINO (fp32 or int8), checked against PyTorch"
)
EXAMPLE = """\
mtmnv3 export configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --out work_dirs/deploy/model.onnx
mtmnv3 export configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --frame-size 1920x1080 \\
    --out work_dirs/deploy/model_16x9.onnx
mtmnv3 export configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --format executorch --int8 \\
    --out work_dirs/deploy/model_int8.pte"""


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``export`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("export", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True, help="output file: .onnx, .pte or .xml as --format says")
    p.add_argument(
        "--format", choices=sorted(FORMATS), default="onnx", help="deployment runtime (default onnx)"
    )
    p.add_argument("--int8", action="store_true", help="int8 with the runtime's own quantizer")
    p.add_argument(
        "--calib-images",
        type=int,
        default=DEFAULT_CALIB_IMAGES,
        help=f"training frames that calibrate int8 (default {DEFAULT_CALIB_IMAGES})",
    )
    p.add_argument(
        "--parity-frames",
        type=int,
        default=DEFAULT_PARITY_FRAMES,
        help=f"held-out frames compared against PyTorch (default {DEFAULT_PARITY_FRAMES})",
    )
    p.add_argument(
        "--size",
        type=int,
        help="square input size, or the long side with --frame-size; a multiple of 32 "
        "(default: the config's test size)",
    )
    p.add_argument(
        "--input-size",
        type=parse_wxh,
        metavar="WxH",
        help="the file's input shape, width x height, multiples of 32 (e.g. 320x192); instead of --size",
    )
    p.add_argument(
        "--frame-size",
        type=parse_wxh,
        metavar="WxH",
        help="sample frame size (e.g. 1920x1080): the input is the smallest rectangle that keeps "
        "its aspect at long side --size, sides multiples of 32",
    )
    p.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER, help="ONNX exporter")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--heads", help="comma-separated head names to export (default: all)")
    p.add_argument(
        "--pieces",
        "--split-plan",
        dest="split_plan",
        metavar="PLAN",
        help="stage plan JSON: export one ONNX per piece plus a heads piece",
    )
    p.add_argument("--dynamic-batch", action="store_true", help="symbolic batch dimension (ONNX)")
    p.add_argument("--dynamic-size", action="store_true", help="symbolic height and width (ONNX)")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, help="override config entries, key=value")
    return p


def parse_wxh(text: str) -> tuple[int, int]:
    """``'320x192'`` -> ``(320, 192)`` (width, height); an ``ArgumentTypeError`` otherwise."""
    parts = text.lower().split("x")
    try:
        w, h = (int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 320x192, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"width and height must be positive, got {text!r}")
    return w, h


def input_shape(args: argparse.Namespace, model, long_side: int) -> tuple[int, int]:
    """The file's input ``(height, width)`` from ``--input-size``, ``--frame-size`` or the ``long_side`` square."""
    if args.input_size is not None:
        shape = (args.input_size[1], args.input_size[0])
    elif args.frame_size is not None:
        shape = keep_aspect_shape((args.frame_size[1], args.frame_size[0]), long_side, size_divisor(model))
    else:
        shape = (long_side, long_side)
    return resolve_size(model, shape)


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 export`` for parsed ``args``; returns the exit status."""
    try:
        if args.input_size is not None and (args.size is not None or args.frame_size is not None):
            raise ValueError("--input-size gives the whole input shape; drop --size and --frame-size")
        for what, path in (("config", args.config), ("checkpoint", args.checkpoint)):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{what} not found: {path}")
        if args.split_plan is not None:
            if not os.path.isfile(args.split_plan):
                raise FileNotFoundError(f"stage plan not found: {args.split_plan}")
            if args.format != "onnx" or args.int8:
                raise ValueError("--pieces exports fp32 ONNX pieces; drop --format/--int8")
        cfg = load_config(args.config, args.cfg_options)
        model = init_model(args.config, args.checkpoint, args.cfg_options)
        test_data = cfg.get("test_dataloader")
        long_side = args.size or (input_size(test_data.dataset) if test_data else DEFAULT_SIZE)
        shape = input_shape(args, model, long_side)
        onnx_options = dict(exporter=args.exporter, opset=args.opset)
        onnx_options.update({k: True for k in ("dynamic_batch", "dynamic_size") if getattr(args, k)})
        if args.split_plan is None:
            meta = export_deployed(
                model,
                args.format,
                args.out,
                args.config,
                cfg,
                shape,
                heads=args.heads,
                int8=args.int8,
                calib_images=args.calib_images,
                parity_frames=args.parity_frames,
                export_options=onnx_options if args.format == "onnx" else None,
            )
            worst = max(p["rel"] for p in meta["parity"]["outputs"].values())
            print(
                f"wrote {args.out} (+ .json): {meta['precision']} {args.format}, input {size_text(shape)} "
                f"(WxH), outputs {[o['name'] for o in meta['outputs']]}; "
                f"parity on {meta['parity']['frames']} held-out frames: "
                f"largest error {worst:.2e} of the output range (limit {meta['parity']['rel_tol']:g})"
            )
        else:
            if not args.out.endswith(".onnx"):
                raise ValueError(f"--out must name a .onnx file, got {args.out!r}")
            folder = os.path.dirname(os.path.abspath(args.out))
            prefix = os.path.basename(args.out)[: -len(".onnx")]
            manifest = export_split(
                model,
                folder,
                plan=args.split_plan,
                prefix=prefix,
                heads=args.heads,
                input_size=shape,
                **onnx_options,
            )
            files = [p["file"] for p in manifest["pieces"]]
            print(f"wrote {files} and {prefix}.split.json to {folder}")
    except DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, KeyError, ValueError, TypeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 export`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("export", argv)
    return run(args)
