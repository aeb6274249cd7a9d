"""``mtmnv3 make-synth``: write a procedural multi-task dataset (MOTChallenge + COCO + classification index)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mtmnv3.cli._common import command_line, new_parser
from mtmnv3.data import DOMAINS, SceneConfig, render_preview, write_synth_dataset

DESCRIPTION = "write a procedural multi-task dataset (MOTChallenge + COCO + classification index)"
EXAMPLE = """\
mtmnv3 make-synth --out data/synth_demo --sequences 4 --frames 100 --size 192 --objects 4 --seed 0 --preview preview.png"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``make-synth`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("make-synth", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--sequences", type=int, default=4, help="number of sequences (default 4)")
    p.add_argument("--frames", type=int, default=100, help="frames per sequence (default 100)")
    p.add_argument("--size", type=int, default=192, help="square frame size in pixels (default 192)")
    p.add_argument("--objects", type=int, default=4, help="objects in view at once (default 4)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--preview", help="also write a PNG grid of frames with boxes and ids")
    p.add_argument(
        "--appearance", default="auto", help="auto (Fashion-MNIST if installed), fashion_mnist or sprites"
    )
    p.add_argument(
        "--domains",
        default=",".join(DOMAINS),
        help=f"background families, comma-separated from {','.join(DOMAINS)}",
    )
    p.add_argument("--brightness", type=float, default=0.0, help="additive brightness in [-1, 1]")
    p.add_argument("--contrast", type=float, default=1.0, help="contrast gain (> 0)")
    p.add_argument("--gamma", type=float, default=1.0, help="gamma (> 0)")
    p.add_argument("--color-cast", type=_floats, default=(1.0, 1.0, 1.0), help="R,G,B gains")
    p.add_argument(
        "--lighting-jitter", type=float, default=0.0, help="per-sequence random lighting variation in [0, 1]"
    )
    p.add_argument("--downscale", type=float, default=1.0, help="resolution factor >= 1 (down then up)")
    p.add_argument("--motion-blur", type=int, default=0, help="motion blur length in pixels (0 = off)")
    p.add_argument("--noise", type=float, default=0.0, help="Gaussian noise sigma in grey levels")
    p.add_argument("--workers", type=int, default=1, help="processes rendering sequences in parallel")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 make-synth`` for parsed ``args``; returns the exit status."""
    try:
        cfg = SceneConfig(
            num_sequences=args.sequences,
            num_frames=args.frames,
            image_size=args.size,
            num_objects=args.objects,
            appearance=args.appearance,
            domains=tuple(d.strip() for d in args.domains.split(",") if d.strip()),
            brightness=args.brightness,
            contrast=args.contrast,
            gamma=args.gamma,
            color_cast=args.color_cast,
            lighting_jitter=args.lighting_jitter,
            downscale=args.downscale,
            motion_blur=args.motion_blur,
            noise_std=args.noise,
        )
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        out = write_synth_dataset(
            args.out,
            cfg,
            args.seed,
            workers=args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
        )
        if args.preview:
            render_preview(out, args.preview)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as e:
        print(f"make_synth: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {cfg.num_sequences * cfg.num_frames} frames to {out}"
        + (f"; preview {args.preview}" if args.preview else "")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 make-synth`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("make-synth", argv)
    return run(args)
