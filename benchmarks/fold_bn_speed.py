"""BatchNorm folded into the convs (``mtmnv3.core.layers.fold_batchnorm``) against the model as trained.

Times the forward pass of a config's model (random weights, eval mode, all
heads) on a batch of the test split's shape, in channels-last and NCHW memory,
with its BatchNorms and with them folded, for 1 and 2 threads (interleaved
rounds, medians; the ratio is against the unfolded model of the same memory
format). Prints the largest output difference too.

Usage: python benchmarks/fold_bn_speed.py [--config CFG] [--batch 16] [--size 160] [--rounds 5]
"""

from __future__ import annotations

import argparse
import copy
import sys
from functools import partial

import torch

from mtmnv3.core.layers import fold_batchnorm
from mtmnv3.core.profiling import format_table, interleaved_timings, num_threads
from mtmnv3.core.registry import MODELS
from mtmnv3.engine import load_config

DEFAULT_CONFIG = "configs/mtmnv3_small_3task_synth.py"


def _flat(out: dict) -> list[torch.Tensor]:
    return [t for v in out.values() for t in (v.values() if isinstance(v, dict) else [v])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    args = p.parse_args(argv)
    if min(args.batch, args.size, args.rounds) < 1:
        p.error("--batch, --size and --rounds must be >= 1")
    torch.manual_seed(0)
    base = MODELS.build(load_config(args.config).model).eval()
    heads = tuple(base.active_heads)
    x = torch.randn(args.batch, 3, args.size, args.size)
    models = {}
    for channels_last in (True, False):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        plain = copy.deepcopy(base)
        plain.channels_last = channels_last
        plain.to(memory_format=fmt)
        folded = copy.deepcopy(plain)
        fold_batchnorm(folded)
        models[(channels_last, False)], models[(channels_last, True)] = plain, folded
    with torch.no_grad():
        ref = _flat(models[(True, False)].head_outputs(x, heads))
        got = _flat(models[(True, True)].head_outputs(x, heads))
    diff = max(float((a - b).abs().max()) for a, b in zip(ref, got))
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        with num_threads(threads), torch.no_grad():
            times = interleaved_timings(
                {key: partial(m.head_outputs, x, heads) for key, m in models.items()}, rounds=args.rounds
            )
        for channels_last in (True, False):
            plain = times[(channels_last, False)].median_ms
            folded = times[(channels_last, True)].median_ms
            fmt = "channels-last" if channels_last else "NCHW"
            rows.append([threads, fmt, f"{plain:.1f}", f"{folded:.1f}", f"{folded / plain:.3f}"])
    print(
        f"{args.config}, batch {args.batch} x {args.size} px, all heads, random weights "
        f"(median of {args.rounds} interleaved rounds; max |folded - plain| {diff:.1e})\n"
    )
    print(format_table(["threads", "memory", "with BN ms", "folded ms", "folded/with BN"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
