"""The ``mtmnv3`` command line: one subcommand per module of this package, dispatched by :func:`main`.

``mtmnv3 SUBCOMMAND --help`` shows a subcommand's flags and an example. Only
the module of the subcommand that runs is imported, so ``mtmnv3 --help`` and
``mtmnv3 make-synth`` do not pay for torch.compile or onnxruntime imports.
Each subcommand module exposes ``add_parser(subparsers=None)``, ``run(args) -> int``
and ``main(argv=None) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import PROG

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module under mtmnv3.cli, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model from an mmengine config"),
    "test": ("test", "evaluate a checkpoint: per-task metrics (and MOT with --track)"),
    "demo": (
        "demo",
        "the default job (the shipped model or training, evaluation, demo, report), or the live demo on --source",
    ),
    "export": (
        "export",
        "export for ONNX Runtime, ExecuTorch or OpenVINO (fp32 or int8), checked against PyTorch",
    ),
    "quantize": ("quantize", "int8 quantization study of a model against fp32"),
    "profile": ("profile", "measure a per-block latency table of a trunk variant"),
    "split": ("split", "search a stage split from a latency table"),
    "robustness": ("robustness", "every task's metric under corruptions and attacks"),
    "calibrate-tracker": ("calibrate_tracker", "tune the tracker's score thresholds to one model"),
    "make-synth": ("make_synth", "write a procedural multi-task dataset"),
    "publish": ("publish", "a weights-only release file (and its model card) from a training checkpoint"),
    "summary": (
        "summary",
        "trunk summary (params, MACs, latency); --update-metafile writes configs/metafile.yml",
    ),
    "sweep": ("sweep", "train configs x seeds as trials on Ray (local cluster, or --address), resumable"),
    "scorecard": (
        "scorecard",
        "trunks side by side: accuracy, latency per runtime, int8, robustness (trains or reuses a sweep)",
    ),
}

EXAMPLES = """examples:
  mtmnv3 demo                                          # the default job: outputs under work_dirs/demo
  mtmnv3 train configs/mtmnv3_small_3task_synth.py
  mtmnv3 test configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --track
  mtmnv3 demo configs/mtmnv3_small_3task_synth.py work_dirs/demo/model.pth --source 0"""


def _parser(command: str | None) -> tuple[argparse.ArgumentParser, object | None]:
    """The top-level parser; only ``command``'s module is imported and its flags added."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Multi-task perception on edge devices with a shared MobileNetV3 trunk.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from mtmnv3.core.version import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", title="subcommands")
    module = None
    for name, (module_name, help_text) in COMMANDS.items():
        if name == command:
            module = importlib.import_module(f"mtmnv3.cli.{module_name}")
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser, module


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mtmnv3 SUBCOMMAND ...``; returns the exit status.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        0 on success; 2 on bad input (an unknown subcommand, a missing file, a bad
        value: printed as ``error: ...``); 1 when a run fails for another reason.
    """
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    command = argv[0] if argv and not argv[0].startswith("-") else None
    if command is not None and command not in COMMANDS:
        print(
            f"error: unknown subcommand {command!r}; known subcommands: {', '.join(COMMANDS)}\n"
            f"run '{PROG} --help' for what each does",
            file=sys.stderr,
        )
        return 2
    parser, module = _parser(command)
    if command is None:
        if argv:
            parser.parse_args(argv)  # --help, --version, or an argparse error (exit 2)
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    args.command_line = shlex.join([PROG, *argv])
    return module.run(args)
