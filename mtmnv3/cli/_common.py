"""Shared pieces of the subcommands: parser construction with an example epilog, and error reporting."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["new_parser", "report", "command_line", "PROG"]

PROG = "mtmnv3"


def new_parser(
    name: str,
    description: str,
    example: str,
    subparsers: argparse._SubParsersAction | None = None,
) -> argparse.ArgumentParser:
    """A subcommand's parser: under ``subparsers`` when given, else standalone as ``mtmnv3 NAME``.

    Args:
        name: the subcommand (``train``, ``calibrate-tracker``, ...).
        description: one line, shown in ``mtmnv3 --help`` and ``mtmnv3 NAME --help``.
        example: one or more example command lines, shown in the epilog of ``--help``.
        subparsers: the top-level parser's subparsers, or None for a standalone parser.
    """
    lines = "\n".join(f"  {line}" for line in example.strip().splitlines())
    kwargs = dict(
        description=description,
        epilog=f"example:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if subparsers is None:
        return argparse.ArgumentParser(prog=f"{PROG} {name}", **kwargs)
    return subparsers.add_parser(name, help=description, **kwargs)


def report(error: BaseException, code: int = 2) -> int:
    """Print ``error: ...`` to stderr (no traceback) and return the exit status."""
    print(f"error: {error}", file=sys.stderr)
    return code


def command_line(name: str, argv: Sequence[str] | None) -> str:
    """The shell command that ran subcommand ``name`` with ``argv`` (for provenance records)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([PROG, name, *map(str, args)])
