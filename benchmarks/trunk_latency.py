"""Our trunk vs torchvision's MobileNetV3 ``features`` with the same weights.

Eager mode, batch 1, inference; sizes 224 and 320; 1 and 2 threads. Each
pair is timed interleaved in one run, and the table reports ours/torchvision
(the stage abstraction should cost nothing: ratio ~1.0).

Usage: python benchmarks/trunk_latency.py [--rounds 15] [--inner 5] [--archs large small]
"""

from __future__ import annotations

import argparse
import sys

import torch
import torchvision

from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.profiling import format_table, interleaved_ratio, num_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--archs", nargs="+", default=["large", "small"], choices=["large", "small"])
    p.add_argument("--sizes", nargs="+", type=int, default=[224, 320])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    args = p.parse_args(argv)
    rows = []
    for arch in args.archs:
        tv = getattr(torchvision.models, f"mobilenet_v3_{arch}")().eval()
        ours = MobileNetV3Trunk.from_torchvision(tv.state_dict(), arch=arch, out_indices=(-1,)).eval()
        for size in args.sizes:
            x = torch.randn(1, 3, size, size)
            with torch.no_grad():
                torch.testing.assert_close(ours(x)[0], tv.features(x), rtol=0, atol=1e-5)
            for threads in args.threads:
                with num_threads(threads), torch.inference_mode():
                    ratio, t_ours, t_tv = interleaved_ratio(
                        lambda ours=ours, x=x: ours(x),
                        lambda tv=tv, x=x: tv.features(x),
                        rounds=args.rounds,
                        inner=args.inner,
                    )
                rows.append([arch, size, threads, t_tv.median_ms, t_ours.median_ms, ratio])
                print(f"{arch} {size} {threads}t: ratio {ratio:.3f}", file=sys.stderr)
    print("Trunk latency, eager, batch 1 (median ms; ratio measured interleaved in one run)\n")
    print(format_table(["arch", "size", "threads", "torchvision ms", "mtmnv3 ms", "ours/torchvision"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
