"""Every loss-balancing method on the same three-task config and budget.

For each method: train (or reuse) the three-task config with
``model.loss_weighting.type=METHOD`` for the same number of iterations, then
evaluate on the held-out split with ``mtmnv3 test --track`` (cls top-1, det
mAP@0.5, MOT IDF1 of the embedding-based tracker). Single-task references (the
cls-only, det-only and det+emb configs, same iterations) give the combined
delta-m % (Maninis et al. 2019: the mean relative change of each task's metric
against its single-task model, higher-is-better metrics). Separately, each
method's time per training step and peak memory (max RSS of a fresh process running
a few steps) relative to equal weights; step times come from one process
that runs every method round-robin on the same real batch.

One held-out split ranks runs badly (the default model's top-1 spans 0.71 to
0.78 over four regenerated splits), so ``--splits 0 1 2 3`` evaluates every
run on the test split regenerated with each seed (``mtmnv3 test --splits``)
and compares the means; delta-m % is then computed from the means.

Usage: python benchmarks/loss_balancing.py [--iters 3000] [--methods EqualWeighting,FAMO,...]
           [--work-root work_dirs/loss_balancing] [--skip-train] [--splits S ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["EqualWeighting", "UncertaintyWeighting", "DWA", "GradNorm", "PCGrad", "CAGrad", "FAMO"]
CONFIG = ROOT / "configs/mtmnv3_small_3task_synth.py"
SINGLE = {
    "cls": "mtmnv3_small_cls_synth.py",
    "det": "mtmnv3_small_det_synth.py",
    "emb": "mtmnv3_small_detemb_synth.py",
}
METRIC = {"cls": "cls/top1", "det": "det/mAP_50", "emb": "mot/IDF1"}

STEP_PROBE = r"""
import json, resource, sys, time, torch
from mmengine.registry import init_default_scope
from mmengine.optim import build_optim_wrapper
from mmengine.dataset import pseudo_collate
from mtmnv3.engine import load_config
from mtmnv3.core.registry import DATASETS, MODELS
cfg = load_config(sys.argv[1], None)
init_default_scope("mtmnv3")
methods = sys.argv[2].split(",")
rounds = int(sys.argv[3])
ds = DATASETS.build(cfg.train_dataloader.dataset)
batch = pseudo_collate([ds[i] for i in range(cfg.train_dataloader.batch_size)])
runs = {}
for m in methods:
    cfg.model.loss_weighting = dict(type=m)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).train()
    runs[m] = (model, build_optim_wrapper(model, cfg.optim_wrapper))
times = {m: [] for m in methods}
for r in range(rounds + 2):  # round-robin so machine drift hits every method alike
    for m in methods if r % 2 == 0 else methods[::-1]:
        model, wrapper = runs[m]
        t = time.perf_counter()
        model.train_step(batch, wrapper)
        if r >= 2:
            times[m].append(time.perf_counter() - t)
out = {m: sorted(v)[len(v) // 2] for m, v in times.items()}
out["_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def train_and_test(
    config: Path, work: Path, iters: int, options: list[str], skip_train: bool, seeds: list[int] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Train (or reuse) one run and test it: ``({metric: value}, {metric: std})``.

    With ``seeds``, values are means over the test splits regenerated with those
    seeds and the second dict holds their standard deviations; without, the
    config's own test split and an empty dict.
    """
    name = f"metrics_splits_{'_'.join(map(str, seeds))}.json" if seeds else "metrics.json"
    metrics_json = work / name
    if metrics_json.is_file():
        return _read_metrics(metrics_json)
    sched = [
        f"train_cfg.max_iters={iters}",
        f"train_cfg.val_interval={iters}",
        f"param_scheduler.1.end={iters}",
        f"default_hooks.checkpoint.interval={iters}",
    ]
    ckpt = work / f"iter_{iters}.pth"
    if not ckpt.is_file():
        if skip_train:
            raise FileNotFoundError(f"{ckpt} missing and --skip-train given")
        resume = ["--resume"] if (work / "last_checkpoint").is_file() else []
        r = run(
            [
                sys.executable,
                "-m",
                "mtmnv3",
                "train",
                str(config),
                "--work-dir",
                str(work),
                *resume,
                "--cfg-options",
                *sched,
                *options,
            ]
        )
        if r.returncode != 0:
            raise RuntimeError(f"training {config.name} {options} failed:\n{r.stderr[-3000:]}")
    test = [
        sys.executable,
        "-m",
        "mtmnv3",
        "test",
        str(config),
        str(ckpt),
        "--work-dir",
        str(work / "test"),
        "--out-json",
        str(metrics_json),
    ]
    if "det" in config.name or "3task" in config.name:
        test.append("--track")
    if seeds:
        test += ["--splits", *map(str, seeds)]
    r = run([*test, "--cfg-options", *options] if options else test)
    if r.returncode != 0:
        raise RuntimeError(f"testing {ckpt} failed:\n{r.stderr[-3000:]}")
    return _read_metrics(metrics_json)


def _read_metrics(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    from mtmnv3.evaluation import split_means

    return split_means(json.loads(path.read_text()))


def delta_m(metrics: dict[str, float], single: dict[str, float]) -> float:
    """Mean relative change (%) of each task's metric against its single-task model."""
    changes = [(metrics[METRIC[t]] - single[t]) / single[t] for t in METRIC if single.get(t)]
    return 100.0 * sum(changes) / len(changes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3000, help="training iterations per run (default 3000)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--work-root", default=str(ROOT / "work_dirs/loss_balancing"))
    p.add_argument("--skip-train", action="store_true", help="only use finished runs")
    p.add_argument("--probe-only", action="store_true", help="only measure step time and peak memory")
    p.add_argument("--probe-rounds", type=int, default=12, help="interleaved timing rounds (default 12)")
    p.add_argument(
        "--splits", nargs="+", type=int, default=None, help="held-out test split seeds to average over"
    )
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        print(f"error: unknown methods {unknown}; known: {METHODS}", file=sys.stderr)
        return 2
    root = Path(args.work_root) / f"iters{args.iters}"

    # step time: all methods in one process, interleaved; peak memory: a fresh process per method
    r = run([sys.executable, "-c", STEP_PROBE, str(CONFIG), ",".join(methods), str(args.probe_rounds)])
    if r.returncode != 0:
        raise RuntimeError(f"step probe failed:\n{r.stderr[-3000:]}")
    steps = json.loads(r.stdout.strip().splitlines()[-1])
    probe = {}
    for m in methods:
        r = run([sys.executable, "-c", STEP_PROBE, str(CONFIG), m, "3"])
        if r.returncode != 0:
            raise RuntimeError(f"memory probe {m} failed:\n{r.stderr[-3000:]}")
        probe[m] = dict(
            step_s=steps[m], maxrss_mb=json.loads(r.stdout.strip().splitlines()[-1])["_maxrss_mb"]
        )
    ref = probe.get("EqualWeighting") or next(iter(probe.values()))
    if args.probe_only:
        from mtmnv3.core.profiling import format_table

        rows = [
            [
                m,
                f"{v['step_s'] * 1e3:.0f}",
                f"{v['step_s'] / ref['step_s']:.2f}",
                f"{v['maxrss_mb'] / ref['maxrss_mb']:.2f}",
            ]
            for m, v in probe.items()
        ]
        print(format_table(["method", "step ms", "step time x", "peak mem x"], rows))
        return 0

    single = {}
    for task, cfg in SINGLE.items():
        met, _ = train_and_test(
            ROOT / "configs" / cfg, root / f"single_{task}", args.iters, [], args.skip_train, args.splits
        )
        single[task] = met[METRIC[task]]

    def cell(met: dict, std: dict, key: str) -> str:
        return f"{met[key]:.3f} +- {std[key]:.3f}" if key in std else f"{met[key]:.3f}"

    cls_det = {t: single[t] for t in ("cls", "det")}
    rows = []
    for m in methods:
        met, std = train_and_test(
            CONFIG, root / m, args.iters, [f"model.loss_weighting.type={m}"], args.skip_train, args.splits
        )
        rows.append(
            [m, *(cell(met, std, METRIC[t]) for t in METRIC), f"{delta_m(met, single):+.2f}",
             f"{delta_m(met, cls_det):+.2f}", f"{probe[m]['step_s'] / ref['step_s']:.2f}",
             f"{probe[m]['maxrss_mb'] / ref['maxrss_mb']:.2f}"]
        )  # fmt: skip
    from mtmnv3.core.profiling import format_table

    where = f"mean +- std over test splits {args.splits}" if args.splits else "the config's test split"
    print(f"Three-task Small, {args.iters} iterations each, {where}; single-task references: "
          + ", ".join(f"{t} {v:.3f}" for t, v in single.items()))  # fmt: skip
    print(
        format_table(
            [
                "method",
                "cls top-1",
                "det mAP@0.5",
                "MOT IDF1",
                "delta-m %",
                "delta-m % (cls, det)",
                "step time x",
                "peak mem x",
            ],
            rows,
        )  # fmt: skip
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
