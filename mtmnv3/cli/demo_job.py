"""The default job of ``mtmnv3 demo`` (``make demo``): the shipped model (or a training run), evaluated, tracking a held-out video, reported.

Steps, each reusing what an earlier run left in ``WORK_DIR`` (default
``work_dirs/demo``):

1. the model: the released weights of the config (``weights/<config
   name>.pth``, with its model card beside it) when they exist, else (or
   with ``--retrain``) train the config from scratch with ``mtmnv3 train``
   (resumes an interrupted run; skipped when the final checkpoint exists);
   copied to ``WORK_DIR/model.pth``;
2. evaluate it with ``mtmnv3 test --track``: classification, detection and
   MOT tables on the held-out split, ``WORK_DIR/metrics.json`` (and
   ``WORK_DIR/test/eval_result.json``, read by ``mtmnv3 summary``); after a
   retraining, also on the model card's held-out seeds, compared with the
   card in ``WORK_DIR/compare.md`` (``make train-demo``);
3. encode a held-out sequence as ``WORK_DIR/heldout.mp4`` and run the tracking
   demo on it under a per-frame budget (ONNX Runtime): ``demo.mp4``,
   ``demo_mot.txt``, ``demo_summary.json``, ``budget_log.json``;
4. write ``WORK_DIR/report.md`` with the tables and ``latency.png`` (per-frame
   latency against the budget, coloured by what ran).

Every step runs in this process (the subcommands' ``main`` functions), not
as a child process.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtmnv3.core.fileio import atomic_open

__all__ = [
    "run_job",
    "JobStepError",
    "JOB_DEFAULTS",
    "DEFAULT_CONFIG",
    "plot_latency",
    "write_report",
    "shipped_weights",
    "compare_with_card",
]

DEFAULT_CONFIG = "configs/mtmnv3_small_3task_synth.py"
#: The job's option defaults (``mtmnv3 demo`` without CONFIG CHECKPOINT).
JOB_DEFAULTS: dict[str, Any] = dict(
    config=DEFAULT_CONFIG,
    work_dir="work_dirs/demo",
    budget_ms=33.0,
    backend="onnxruntime",
    frames=300,
    video_size=256,
    seed=7,
    retrain=False,
)


class JobStepError(RuntimeError):
    """A step of the job failed; it printed its error, and ``code`` is its exit status."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what} failed (exit {code})")
        self.code = code


def _step(main: Callable[[Sequence[str]], int], name: str, argv: list[str], what: str) -> None:
    """Run subcommand ``name`` in this process; a failure stops the job with its exit status."""
    print(f"\n== {what}: {shlex.join(['mtmnv3', name, *argv])}", flush=True)
    code = main(argv)
    if code != 0:
        print(f"error: {what} failed (exit {code})", file=sys.stderr)
        raise JobStepError(what, code)


def _final_checkpoint(train_dir: Path, max_iters: int) -> Path:
    return train_dir / f"iter_{max_iters}.pth"


def shipped_weights(config: str | os.PathLike) -> Path | None:
    """The released weights of a config, ``<repo>/weights/<config stem>.pth`` beside ``configs/``; None if absent."""
    path = Path(config).resolve().parent.parent / "weights" / f"{Path(config).stem}.pth"
    return path if path.is_file() else None


def compare_with_card(card: dict[str, Any], retrained: dict[str, Any]) -> str:
    """A markdown table: the model card's held-out mean +- std against a retraining's, per headline metric."""
    from mtmnv3.cli.publish import CARD_METRICS

    lines = [
        "| metric | model card | retrained | difference | within 2 std of the card |",
        "|---|---|---|---|---|",
    ]
    for key, label in CARD_METRICS.items():
        ref, new = card["metrics"]["summary"].get(key), retrained["summary"].get(key)
        if ref is None or new is None:
            continue
        diff = new["mean"] - ref["mean"]
        tol = 2 * max(ref["std"], new["std"], 1e-3)
        lines.append(
            f"| {label} | {ref['mean']:.4f} +- {ref['std']:.4f} | {new['mean']:.4f} +- {new['std']:.4f} | "
            f"{diff:+.4f} | {'yes' if abs(diff) <= tol else 'no'} |"
        )
    return "\n".join(lines)


def plot_latency(budget_log: dict[str, Any], out_png: str | os.PathLike, budget_ms: float | None) -> None:
    """Per-frame measured latency, coloured by the frame's mode, with the budget line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = budget_log["records"]
    colors = {"full": "tab:blue", "det": "tab:orange", "motion": "tab:green", "skip": "tab:gray"}
    fig, ax = plt.subplots(figsize=(8, 3))
    for mode, color in colors.items():
        pts = [(r["frame_index"], r["measured_ms"]) for r in records if r["plan"]["mode"] == mode]
        if pts:
            x, y = zip(*pts)
            ax.scatter(x, y, s=6, color=color, label=mode)
    if budget_ms:
        ax.axhline(budget_ms, color="red", lw=1, ls="--", label=f"budget {budget_ms:g} ms")
    ax.set_xlabel("frame")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper right", fontsize=7, ncol=5)
    fig.tight_layout()
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def _table(rows: dict[str, Any]) -> str:
    from mtmnv3.evaluation import format_metrics_table

    return format_metrics_table(rows)


def write_report(
    path: str | os.PathLike,
    config: str,
    metrics: dict[str, float],
    demo: dict[str, Any],
    demo_mot: dict[str, float],
) -> None:
    lat = demo["latency_ms"]
    lines = [
        "# mtmnv3 demo report",
        "",
        f"Config: `{config}`; checkpoint `model.pth`.",
        "",
        "## Held-out metrics (mtmnv3 test --track)",
        "",
        _table(metrics),
        "",
        "## Tracking demo on a held-out video",
        "",
        f"Backend {demo['backend']}, budget {demo['budget_ms']} ms ({demo['policy']} policy), "
        f"association {demo['association']}.",
        "",
        "| frames | FPS | p50 ms | p95 ms | max ms | deadline misses | miss rate |",
        "|---|---|---|---|---|---|---|",
        f"| {demo['frames']} | {demo['fps']} | {lat['p50']:.2f} | {lat['p95']:.2f} | {lat['max']:.2f} | "
        f"{demo['deadline_misses']} | {100 * (demo['miss_rate'] or 0):.2f}% |",
        "",
        "Share of frames per mode: "
        + ", ".join(f"{k} {100 * v:.0f}%" for k, v in (demo.get("mode_share") or {}).items()),
        "",
        "Mean staleness (frames since the task last ran): "
        + ", ".join(f"{k} {v:.2f}" for k, v in (demo.get("mean_staleness") or {}).items()),
        "",
        "MOT metrics of the budgeted demo run on this video:",
        "",
        _table({f"mot/{k}": v for k, v in demo_mot.items()}),
        "",
        "![per-frame latency](latency.png)",
        "",
        "Files: `demo.mp4` (annotated), `demo_mot.txt` (MOTChallenge results), `budget_log.json` (per-frame plan, "
        "latency, deadline, staleness), `metrics.json`.",
        "",
    ]
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def write_heldout_video(cfg: Any, work: Path, frames: int, size: int, seed: int) -> tuple[Path, Path]:
    """``work/heldout.mp4``: one generated sequence of the config's test scene with unseen
    object images (``size`` x ``size``, ``frames`` long), and its MOTChallenge folder under
    ``work/heldout``; both are reused when present."""
    from mtmnv3.apis.inference import mot_sequence_dirs
    from mtmnv3.data import SceneConfig, write_synth_dataset
    from mtmnv3.runtime.video import write_sequence_video

    heldout = work / "heldout"
    if not (heldout / "mot").is_dir():
        scene_cfg = SceneConfig(
            num_sequences=1,
            num_frames=frames,
            image_size=size,
            num_objects=int(cfg.test_dataloader.dataset.get("num_objects", 4)),
            appearance_pool="test",
            **dict(cfg.test_dataloader.dataset.get("scene") or {}),
        )
        write_synth_dataset(heldout, scene_cfg, seed=seed, name_prefix="heldout", progress=False)
    seq = mot_sequence_dirs(heldout / "mot")[0]
    video = work / "heldout.mp4"
    if not video.is_file():
        write_sequence_video(seq, video)
    return video, seq


def run_job(
    config: str = DEFAULT_CONFIG,
    work_dir: str | os.PathLike = "work_dirs/demo",
    budget_ms: float = 33.0,
    backend: str = "onnxruntime",
    frames: int = 300,
    video_size: int = 256,
    seed: int = 7,
    cfg_options: Sequence[str] = (),
    retrain: bool = False,
) -> int:
    """The shipped model (or train one), evaluate, demo on a held-out video and write the report; returns the exit status.

    Args:
        config: the model config.
        work_dir: where every output goes (an earlier run's outputs are reused).
        budget_ms: the demo's per-frame budget.
        backend: the demo's runtime (``torch`` or ``onnxruntime``).
        frames: frames of the held-out demo video.
        video_size: its frame size in pixels.
        seed: its seed.
        cfg_options: ``key=value`` config overrides (training and evaluation too).
        retrain: train from scratch even when the config has released weights, and
            compare the result with their model card. With ``cfg_options`` the
            config is not the released one: it trains too.

    Raises:
        FileNotFoundError: the config does not exist.
        ValueError: a bad option value.
    """
    from mtmnv3.cli import test as test_cli
    from mtmnv3.cli import train as train_cli
    from mtmnv3.cli.live_demo import live_namespace, parse_cfg_options, run_demo
    from mtmnv3.core.fileio import atomic_write_json
    from mtmnv3.engine import load_config
    from mtmnv3.evaluation import evaluate_mot_files

    if not os.path.isfile(config):
        raise FileNotFoundError(f"config not found: {config!r}")
    for name, value in (("--frames", frames), ("--video-size", video_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    cfg_options = list(cfg_options)
    work = Path(work_dir)
    cfg = load_config(config, parse_cfg_options(cfg_options) or None)
    work.mkdir(parents=True, exist_ok=True)
    opts = ["--cfg-options", *cfg_options] if cfg_options else []

    # 1. the shipped model, or train (or reuse a finished training run)
    # Released weights are the config as released: overrides (a smaller model, other data) train instead.
    shipped = None if retrain or cfg_options else shipped_weights(config)
    if shipped is None and not retrain and shipped_weights(config) is not None:
        print("== --cfg-options given: training the changed config instead of using its released weights")
    if shipped is not None:
        final = shipped
        card = shipped.with_suffix(".md")
        print(
            f"== the released model {shipped}"
            + (f" (model card {card})" if card.is_file() else "")
            + "; `make train-demo` trains it again from scratch",
            flush=True,
        )
    else:
        train_dir = work / "train"
        final = _final_checkpoint(train_dir, int(cfg.train_cfg.max_iters))
        if final.is_file():
            print(f"== reusing {final}")
        else:
            resume = ["--resume"] if (train_dir / "last_checkpoint").is_file() else []
            _step(train_cli.main, "train", [config, "--work-dir", str(train_dir), *resume, *opts], "training")
    model_path = work / "model.pth"
    with atomic_open(model_path, "wb") as f, open(final, "rb") as src:
        shutil.copyfileobj(src, f)

    # 2. evaluate: cls, det and MOT tables
    metrics_json = work / "metrics.json"
    test_argv = [config, str(model_path), "--track", "--work-dir", str(work / "test")]
    _step(test_cli.main, "test", [*test_argv, "--out-json", str(metrics_json), *opts], "evaluation")
    metrics = json.loads(metrics_json.read_text())
    released = shipped_weights(config)
    card_json = released.with_suffix(".json") if released is not None else None
    if retrain and card_json is not None and card_json.is_file():
        card = json.loads(card_json.read_text())
        seeds = list(card["metrics"]["splits"])
        splits_json = work / "heldout_splits.json"
        _step(
            test_cli.main,
            "test",
            [*test_argv, "--splits", *seeds, "--out-json", str(splits_json), *opts],
            "evaluation on the model card's held-out seeds",
        )
        table = compare_with_card(card, json.loads(splits_json.read_text()))
        with atomic_open(work / "compare.md", "w", encoding="utf-8") as f:
            f.write(f"# Retrained from scratch against the model card of {released.name}\n\n{table}\n")
        print(f"\nretrained against the model card ({card_json}):\n{table}", flush=True)

    # 3. a held-out video (one long sequence of unseen object images) and the budgeted demo
    video, seq = write_heldout_video(cfg, work, frames, video_size, seed)
    demo_args = live_namespace(
        config,
        str(model_path),
        source=str(video),
        backend=backend,
        budget_ms=float(budget_ms),
        out=str(work / "demo.mp4"),
        mot_out=str(work / "demo_mot.txt"),
        summary_json=str(work / "demo_summary.json"),
        budget_log=str(work / "budget_log.json"),
        synthetic_source=True,  # a held-out synthetic scene: no real-footage notice
        cfg_options=cfg_options,
    )
    print(f"\n== tracking demo on {video} (held-out sequence {seq.name}), budget {budget_ms} ms", flush=True)
    summary = run_demo(demo_args)
    demo_mot = evaluate_mot_files({seq.name: seq / "gt" / "gt.txt"}, {seq.name: work / "demo_mot.txt"})
    summary["mot"] = {k: float(v) for k, v in demo_mot.items()}
    atomic_write_json(work / "demo_summary.json", summary)

    # 4. report
    plot_latency(json.loads((work / "budget_log.json").read_text()), work / "latency.png", budget_ms)
    write_report(work / "report.md", config, metrics, summary, summary["mot"])
    print((work / "report.md").read_text())
    print(f"outputs in {work}/: model.pth, demo.mp4, report.md, latency.png, metrics.json")
    return 0
