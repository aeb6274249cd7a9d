"""Shared trunk vs three separate single-task models: inference latency, same runtime.

The shared model runs one trunk (and one neck) for classification, detection
and embeddings; the alternative is three single-task models, each with its own
trunk (classification; detection on its own neck; embeddings on their own neck,
detection being needed to place them is not counted, which favours the
separate models). Both are exported to ONNX and timed in ONNX Runtime (and in
eager PyTorch for reference), interleaved in one run so machine drift hits both.

Usage: python benchmarks/shared_vs_separate_latency.py [--config CONFIG] [--size 320] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("cls", "det", "emb")


def build(cfg_model: dict, heads: list[str]):
    from mtmnv3.core.registry import MODELS

    cfg = copy.deepcopy(cfg_model)
    cfg["heads"] = {k: v for k, v in cfg["heads"].items() if k in heads}
    cfg["task_weights"] = {k: v for k, v in (cfg.get("task_weights") or {}).items() if k in heads}
    return MODELS.build(cfg).eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs/mtmnv3_small_3task_synth.py"))
    p.add_argument("--size", type=int, default=320)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)

    from mmengine.registry import init_default_scope

    from mtmnv3.core.profiling import format_table, interleaved_ratio, num_threads
    from mtmnv3.engine import load_config
    from mtmnv3.runtime.onnx_export import export_onnx
    from mtmnv3.runtime.ort_runtime import make_session

    cfg = load_config(args.config, None)
    init_default_scope("mtmnv3")
    torch.manual_seed(0)
    shared = build(cfg.model.to_dict(), list(NAMES))
    separate = [build(cfg.model.to_dict(), [h]) for h in NAMES]
    x = torch.randn(1, 3, args.size, args.size)
    feed = {"images": x.numpy()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, m in enumerate([shared, *separate]):
            path = Path(tmp) / f"m{i}.onnx"
            export_onnx(m, path, input_size=args.size, exporter="torchscript")
            paths.append(path)
        for threads in (int(t) for t in args.threads.split(",")):
            sessions = [make_session(path, threads) for path in paths]
            outs = [[o.name for o in s.get_outputs()] for s in sessions]

            def run_shared(s=sessions, o=outs):
                s[0].run(o[0], feed)

            def run_separate(s=sessions, o=outs):
                for k in (1, 2, 3):
                    s[k].run(o[k], feed)

            ratio, t_shared, t_sep = interleaved_ratio(run_shared, run_separate, rounds=args.rounds)
            rows.append(
                [
                    "onnxruntime",
                    threads,
                    f"{t_shared.median_ms:.2f}",
                    f"{t_sep.median_ms:.2f}",
                    f"{ratio:.3f}",
                ]
            )
            with num_threads(threads), torch.no_grad():
                ratio, t_shared, t_sep = interleaved_ratio(
                    lambda: shared.head_outputs(x, NAMES),
                    lambda: [m.head_outputs(x, [n]) for m, n in zip(separate, NAMES)],
                    rounds=args.rounds,
                )
            rows.append(
                [
                    "torch eager",
                    threads,
                    f"{t_shared.median_ms:.2f}",
                    f"{t_sep.median_ms:.2f}",
                    f"{ratio:.3f}",
                ]
            )
    params = [sum(p.numel() for p in m.parameters()) / 1e6 for m in (shared, *separate)]
    print(f"config {Path(args.config).name}, {args.size}x{args.size}, batch 1")
    print(
        f"params: shared {params[0]:.2f} M, separate {sum(params[1:]):.2f} M ({' + '.join(f'{v:.2f}' for v in params[1:])})"
    )
    print(format_table(["runtime", "threads", "shared ms", "3 separate ms", "shared/separate"], rows))
    return 0 if np.isfinite(ratio) else 1


if __name__ == "__main__":
    sys.exit(main())
