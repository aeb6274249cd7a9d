"""Input standardisation against robust training, at one budget, for detection mCE.

Fine-tunes the released default model (``weights/mtmnv3_small_3task_synth.pth``)
for the same number of iterations with each recipe:

* ``control``: the default recipe (``mtmnv3_small_3task_ft_synth.py``);
* ``input_norm``: the same with per-image input standardisation before the
  trunk (``mtmnv3_small_3task_ft_inputnorm_synth.py``);
* ``robust``: robust fine-tuning of issue 8 (AugMix consistency, severity <= 3,
  ``mtmnv3_small_3task_robustft_synth.py``), the best point of its detection
  frontier;
* ``robust_input_norm``: both (``mtmnv3_small_3task_robustft_inputnorm_synth.py``);
* ``input_norm_learned``: the input-norm config with ``input_norm='learned'``
  (a learned affine and a learned share of the raw input after the
  standardisation).

Each run is ``mtmnv3 train CONFIG --cfg-options train_cfg.max_iters=N
load_from=<released weights>`` (the schedule's warm-up and cosine scale with
N; validation is left to the test), then ``mtmnv3 test`` (clean metrics on the
held-out split) and ``mtmnv3 robustness`` on the shift suite (``--corruptions``,
``--severities``), with CE normalised by the control's results. The released
model itself is evaluated as one more row. A finished step (its output file
exists) is not run again, so a rerun only does what is missing.

Writes ``results.json``, ``results.md`` (the table) and ``frontier.png``
(detection mAP@0.5 mCE against clean mAP@0.5, with the floor: mCE at least
10 % below the control's at no more than 1 point of clean mAP@0.5) to
``--work-root``.

Usage: python benchmarks/input_norm_study.py [--iters 1200] [--runs control,input_norm,...]
           [--work-root work_dirs/input_norm_study] [--severities 1,3,5] [--corruptions all]
           [--eval-only] [--plot PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "mtmnv3_small_3task_synth.pth"
DEFAULT_CONFIG = ROOT / "configs" / "mtmnv3_small_3task_synth.py"
#: The floor (issue 8's, for detection): mCE at least this much below the control's ...
FLOOR_MCE_DROP = 0.10
#: ... at no more than this loss of clean mAP@0.5.
FLOOR_CLEAN_COST = 0.01
DET, CLS = "det/mAP_50", "cls/top1"
REFERENCE = "control"
#: The timestamp an mmengine log file line starts with.
_STAMP = re.compile(r"^(\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) - mmengine - ")


@dataclass(frozen=True)
class Run:
    name: str
    config: str
    options: tuple[str, ...] = ()
    label: str = ""


RUNS = (
    Run("control", "configs/mtmnv3_small_3task_ft_synth.py", label="default recipe (control)"),
    Run("input_norm", "configs/mtmnv3_small_3task_ft_inputnorm_synth.py", label="+ input_norm='per_image'"),
    Run(
        "robust",
        "configs/mtmnv3_small_3task_robustft_synth.py",
        label="robust fine-tuning (AugMix, sev <= 3)",
    ),
    Run(
        "robust_input_norm",
        "configs/mtmnv3_small_3task_robustft_inputnorm_synth.py",
        label="robust fine-tuning + input_norm='per_image'",
    ),
    Run(
        "input_norm_learned",
        "configs/mtmnv3_small_3task_ft_inputnorm_synth.py",
        ("model.trunk.input_norm=learned",),
        label="+ input_norm='learned'",
    ),
)
RELEASED = Run("released", "configs/mtmnv3_small_3task_synth.py", label="released default (no fine-tuning)")


def _run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` from the repository root with its output in ``log``; raise naming the log on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(cmd[2:] if cmd[:3] == [sys.executable, "-m", "mtmnv3"] else cmd), flush=True)
    t = time.time()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    print(f"  {time.time() - t:.0f} s, log {log}", flush=True)
    if rc:
        raise RuntimeError(f"{' '.join(cmd)} exited with {rc}; see {log}")


def _mtmnv3(*args: str) -> list[str]:
    return [sys.executable, "-m", "mtmnv3", *args]


def _metric(metrics: dict, key: str) -> float | None:
    """``key`` from a flat ``{'det/mAP_50': ...}`` dict or one nested under 'metrics' or a split."""
    if key in metrics:
        value = metrics[key]
        return float(value["mean"] if isinstance(value, dict) else value)
    for value in metrics.values():
        if isinstance(value, dict):
            found = _metric(value, key)
            if found is not None:
                return found
    return None


def run_one(run: Run, args: argparse.Namespace, root: Path) -> dict:
    out = root / run.name
    if run is RELEASED:
        ckpt = WEIGHTS
    else:
        ckpt = out / f"iter_{args.iters}.pth"
        if not ckpt.is_file():
            if args.eval_only:
                raise FileNotFoundError(f"{ckpt} not found (--eval-only trains nothing)")
            _run(
                _mtmnv3(
                    "train",
                    run.config,
                    "--work-dir",
                    str(out),
                    "--cfg-options",
                    f"train_cfg.max_iters={args.iters}",
                    "train_cfg.val_interval=1000000000",  # no validation: the test below measures
                    f"default_hooks.checkpoint.interval={args.iters}",
                    f"load_from={WEIGHTS}",
                    *run.options,
                ),
                out / "train.log",
            )
    options = ["--cfg-options", *run.options] if run.options else []
    test_json = out / "test.json"
    if not test_json.is_file():
        _run(_mtmnv3("test", run.config, str(ckpt), "--out-json", str(test_json), *options), out / "test.log")
    rob_dir = out / "robustness"
    rob_json = rob_dir / "robustness.json"
    ref_json = root / REFERENCE / "robustness" / "robustness.json"
    if not rob_json.is_file():
        cmd = [
            "robustness",
            run.config,
            str(ckpt),
            "--corruptions",
            args.corruptions,
            "--severities",
            args.severities,
            "--workers",
            str(args.workers),
            "--no-progress",
            "--out-dir",
            str(rob_dir),
        ]
        if run.name != REFERENCE:
            cmd += ["--reference-json", str(ref_json)]
        _run(_mtmnv3(*cmd, *options), out / "robustness.log")
    test = json.loads(test_json.read_text())
    rob = json.loads(rob_json.read_text())
    summary = rob["summary"]
    normalised = summary[DET].get("normalised", False)
    return dict(
        name=run.name,
        label=run.label,
        config=run.config,
        options=list(run.options),
        checkpoint=str(ckpt.relative_to(ROOT) if ckpt.is_relative_to(ROOT) else ckpt),
        clean_map50=_metric(test, DET),
        clean_top1=_metric(test, CLS),
        mce_det=summary[DET]["mCE"] if normalised else 1.0,
        mce_cls=summary[CLS]["mCE"] if normalised else 1.0,
        ce_det=summary[DET]["CE"] if normalised else {c: 1.0 for c in summary[DET]["CE"]},
        train_s=_train_seconds(out) if run is not RELEASED else None,
    )


def _train_seconds(out: Path) -> float | None:
    """Wall time of the training run, from the first to the last timestamp of its mmengine log."""
    logs = sorted(out.glob("*/*.log"))
    if not logs:
        return None
    stamps = [
        datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S")
        for m in map(_STAMP.match, logs[-1].read_text(errors="replace").splitlines())
        if m
    ]
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def table(rows: list[dict], args: argparse.Namespace) -> str:
    ref = next(r for r in rows if r["name"] == REFERENCE)
    lines = [
        f"Fine-tuning budget: {args.iters} iterations from the released default model; shift suite: "
        f"{args.corruptions} corruptions at severities {args.severities}; CE normalised by the control's.",
        "",
        "| run | clean mAP@0.5 | change (pts) | mCE det (mAP@0.5) | vs control | contrast CE det | "
        "clean top-1 | mCE cls | floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        change = 100 * (r["clean_map50"] - ref["clean_map50"])
        rel = r["mce_det"] - 1.0
        meets = rel <= -FLOOR_MCE_DROP and change >= -100 * FLOOR_CLEAN_COST
        contrast = r["ce_det"].get("contrast")
        lines.append(
            f"| {r['name']}: {r['label']} | {r['clean_map50']:.4f} | {change:+.2f} | {r['mce_det']:.3f} | "
            f"{100 * rel:+.1f} % | {'-' if contrast is None else f'{contrast:.3f}'} | {r['clean_top1']:.4f} | "
            f"{r['mce_cls']:.3f} | {'met' if meets else 'no'} |"
        )
    return "\n".join(lines)


def pareto(rows: list[dict]) -> list[dict]:
    """The rows no other row beats on both clean mAP@0.5 (higher) and mCE (lower), by clean mAP."""
    front = [
        r
        for r in rows
        if not any(
            o is not r
            and o["clean_map50"] >= r["clean_map50"]
            and o["mce_det"] <= r["mce_det"]
            and (o["clean_map50"] > r["clean_map50"] or o["mce_det"] < r["mce_det"])
            for o in rows
        )
    ]
    return sorted(front, key=lambda r: r["clean_map50"])


def plot(rows: list[dict], path: Path, args: argparse.Namespace) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ref = next(r for r in rows if r["name"] == REFERENCE)
    fig = Figure(figsize=(7.5, 5.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    xs = [r["clean_map50"] for r in rows]
    lo, hi = min(xs + [ref["clean_map50"] - FLOOR_CLEAN_COST]) - 0.01, max(xs) + 0.01
    ax.axhspan(
        0,
        1.0 - FLOOR_MCE_DROP,
        xmin=(ref["clean_map50"] - FLOOR_CLEAN_COST - lo) / (hi - lo),
        color="tab:green",
        alpha=0.12,
        label="floor: mCE <= 0.90 at <= 1 pt clean cost",
    )
    front = pareto(rows)
    ax.plot(
        [r["clean_map50"] for r in front],
        [r["mce_det"] for r in front],
        "--",
        color="0.5",
        label="frontier (measured)",
    )
    for r in rows:
        marker = "s" if "robust" in r["name"] else ("D" if r["name"] == "released" else "o")
        colour = "tab:orange" if "input_norm" in r["name"] else "tab:blue"
        ax.scatter([r["clean_map50"]], [r["mce_det"]], marker=marker, color=colour, s=50, zorder=3)
        ax.annotate(r["name"], (r["clean_map50"], r["mce_det"]), textcoords="offset points", xytext=(6, 4))
    ys = [r["mce_det"] for r in rows]
    ax.set_xlim(lo, hi)
    ax.set_ylim(min(ys + [1.0 - FLOOR_MCE_DROP]) - 0.05, max(ys) + 0.05)
    ax.set_xlabel("clean detection mAP@0.5 (held-out split)")
    ax.set_ylabel("detection mAP@0.5 mCE (control = 1)")
    ax.set_title(
        f"Input standardisation vs robust fine-tuning ({args.iters} it.; sev. {args.severities})", fontsize=10
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=1200, help="fine-tuning iterations of every run")
    p.add_argument("--runs", default=",".join(r.name for r in RUNS), help="comma-separated run names")
    p.add_argument("--work-root", default="work_dirs/input_norm_study")
    p.add_argument("--corruptions", default="all")
    p.add_argument("--severities", default="1,3,5")
    p.add_argument("--workers", type=int, default=2, help="mtmnv3 robustness --workers")
    p.add_argument("--no-released", action="store_true", help="leave out the released model's row")
    p.add_argument("--eval-only", action="store_true", help="train nothing; evaluate finished runs")
    p.add_argument("--plot", help="also write the frontier plot here (e.g. under docs/)")
    args = p.parse_args(argv)
    if args.iters < 1:
        p.error(f"--iters must be >= 1, got {args.iters}")
    known = {r.name: r for r in RUNS}
    names = [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown runs {unknown}; expected some of {list(known)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)  # every CE is normalised by the control's
    if not WEIGHTS.is_file():
        p.error(f"the released weights {WEIGHTS} are missing: every run fine-tunes them")
    root = Path(args.work_root)
    root = root if root.is_absolute() else ROOT / root
    plan = [known[n] for n in sorted(names, key=lambda n: n != REFERENCE)]
    if not args.no_released:
        plan.append(RELEASED)
    rows, failed = [], []
    for run in plan:
        try:
            rows.append(run_one(run, args, root))
        except (RuntimeError, FileNotFoundError) as e:
            if run.name == REFERENCE:
                raise
            print(f"error: {run.name}: {e}", file=sys.stderr)
            failed.append(run.name)
    text = table(rows, args)
    print(text)
    (root / "results.md").write_text(text + "\n")
    (root / "results.json").write_text(
        json.dumps(
            dict(
                iters=args.iters,
                corruptions=args.corruptions,
                severities=args.severities,
                weights=str(WEIGHTS.relative_to(ROOT)),
                rows=rows,
                frontier=[r["name"] for r in pareto(rows)],
                failed=failed,
            ),
            indent=2,
        )
    )
    plot(rows, root / "frontier.png", args)
    if args.plot:
        plot(rows, Path(args.plot), args)
    print(f"wrote {root / 'results.md'}, {root / 'results.json'}, {root / 'frontier.png'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
