"""Shared trunk vs single-task models, same data and training budget.

Trains (or reuses, when a run's final checkpoint exists) the three-task
config and the single-task classification and detection configs, then prints
each task's metric for the shared and the single-task model, plus training
wall time and the models' size.

One held-out split ranks runs badly (the default model's top-1 spans 0.71 to
0.78 over four regenerated splits), so ``--splits 0 1 2 3`` evaluates each
run's final checkpoint on the test split regenerated with each seed
(``mtmnv3 test --splits``) and compares the means, with their standard
deviations; without it the runs' own end-of-training validation is used.

Usage: python benchmarks/shared_vs_single.py [--arch small] [--work-root work_dirs/shared_vs_single]
                                             [--data-root data/synth] [--splits S ...] [--cfg-options k=v ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mtmnv3.engine import dataset_keys, load_config
from mtmnv3.evaluation import split_means

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "3task": "mtmnv3_{arch}_3task_synth.py",
    "cls": "mtmnv3_{arch}_cls_synth.py",
    "det": "mtmnv3_{arch}_det_synth.py",
}
TASK_METRICS = {"cls": "cls/top1", "det": "det/mAP_50"}


def final_metrics(work: Path) -> dict:
    scalars = sorted(work.glob("*/vis_data/scalars.json"))
    for path in reversed(scalars):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        vals = [r for r in rows if any(k in r for k in TASK_METRICS.values())]
        if vals:
            return vals[-1]
    raise FileNotFoundError(f"no validation metrics under {work}")


def has_metrics(work: Path) -> bool:
    """Whether a finished run (one that logged validation metrics) is in ``work``."""
    return any(
        any(k in line for k in TASK_METRICS.values())
        for path in work.glob("*/vis_data/scalars.json")
        for line in path.read_text().splitlines()
    )


def train(config: Path, work: Path, options: list[str]) -> float | None:
    """Train unless a finished run is already there; returns wall seconds (None if reused)."""
    if has_metrics(work):
        return None
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "mtmnv3", "train", str(config), "--work-dir", str(work)]
    subprocess.run(cmd + (["--cfg-options", *options] if options else []), check=True, cwd=ROOT)
    return time.perf_counter() - start


def final_checkpoint(work: Path) -> Path:
    """The checkpoint named in the run's ``last_checkpoint`` file."""
    marker = work / "last_checkpoint"
    if not marker.is_file():
        raise FileNotFoundError(f"no last_checkpoint in {work}: the run did not finish")
    path = Path(marker.read_text().strip())
    return path if path.is_absolute() else ROOT / path


def split_metrics(work: Path, options: list[str], seeds: list[int]) -> tuple[dict, dict]:
    """``mtmnv3 test --splits`` on a finished run: ``({metric: mean}, {metric: std})``."""
    configs = sorted(work.glob("*.py"))
    if not configs:
        raise FileNotFoundError(f"no dumped config in {work}")
    out = work / f"splits_{'_'.join(map(str, seeds))}.json"
    if not out.is_file():
        cmd = [sys.executable, "-m", "mtmnv3", "test", str(configs[-1]), str(final_checkpoint(work))]
        cmd += ["--splits", *map(str, seeds), "--out-json", str(out), "--work-dir", str(work / "splits_eval")]
        subprocess.run(cmd + (["--cfg-options", *options] if options else []), check=True, cwd=ROOT)
    return split_means(json.loads(out.read_text()))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="small", choices=["small", "large"])
    p.add_argument("--work-root", default="work_dirs/shared_vs_single")
    p.add_argument("--data-root", default="data/synth")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument(
        "--splits", nargs="+", type=int, default=None, help="held-out test split seeds to average over"
    )
    p.add_argument("--cfg-options", nargs="+", default=[])
    args = p.parse_args(argv)
    data_root = Path(args.data_root).resolve()
    results, spreads, walls = {}, {}, {}
    for name in args.runs:
        config = ROOT / "configs" / RUNS[name].format(arch=args.arch)
        cfg = load_config(config)
        options = [
            f"{key}.data_root={data_root}" for s in ("train", "val", "test") for key in dataset_keys(cfg, s)
        ] + args.cfg_options
        work = Path(args.work_root) / f"{args.arch}_{name}"
        walls[name] = train(config, work, options)
        if args.splits:
            results[name], spreads[name] = split_metrics(work, options, args.splits)
        else:
            results[name] = final_metrics(work)
    where = f"mean +- std over test splits {args.splits}" if args.splits else "the validation split"
    print(f"\nShared trunk vs single-task, MobileNetV3-{args.arch}, same data and schedule; {where}\n")
    print("| task | metric | single-task | shared (3 tasks) | shared - single |")
    print("|---|---|---|---|---|")

    def cell(name: str, key: str) -> str:
        return f"{results[name][key]:.4f}" + (f" +- {spreads[name][key]:.4f}" if name in spreads else "")

    for task, key in TASK_METRICS.items():
        if task in results and "3task" in results:
            diff = results["3task"][key] - results[task][key]
            print(f"| {task} | {key} | {cell(task, key)} | {cell('3task', key)} | {diff:+.4f} |")
    print("\n| run | train wall time |")
    print("|---|---|")
    for name, wall in walls.items():
        print(f"| {name} | {'reused' if wall is None else f'{wall / 60:.1f} min'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
