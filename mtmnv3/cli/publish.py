"""``mtmnv3 publish``: a released weights file and its model card, from a training run.

A training checkpoint holds the optimizer, the scheduler, the message hub and
every training sequence's name: tens of megabytes that only resuming needs.
``publish`` keeps what inference needs (mmdet's ``publish_model`` does the
same): the model's ``state_dict`` and a small plain ``meta`` (config name and
SHA-256, iteration, class names, the training data record), written
atomically and checked to load with ``torch.load(weights_only=True)``. With
``--metrics-json`` (the output of ``mtmnv3 test --splits ... --out-json``) it
also writes the model card beside the file:

- ``NAME.json``: the card's data (file SHA-256, config, schedule, training
  data, training time and host, per-seed and mean +- std held-out metrics,
  the commands that made them), which ``mtmnv3 demo --retrain`` compares with;
- ``NAME.md``: the card as a page;
- ``NAME_curve.png``: the training curve (losses and learning rate against
  iteration, from the run's ``scalars.json``).

``--card-only`` re-evaluates a released file without touching it: CHECKPOINT
is the released ``.pth`` (its SHA-256 must be the card's), and the card's
held-out metrics and tracker are replaced by the new ``--metrics-json``
(after a change of the config's tracker, say), the previous ones kept in the
card's history with ``--note`` saying why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtmnv3.cli._common import command_line, new_parser, report

__all__ = [
    "add_parser",
    "run",
    "main",
    "publish_weights",
    "training_record",
    "plot_training_curve",
    "write_card",
    "update_card",
    "CARD_METRICS",
]

DESCRIPTION = "a weights-only release file (and its model card) from a training checkpoint"
EXAMPLE = """\
mtmnv3 publish configs/mtmnv3_small_3task_synth.py work_dirs/shipped/iter_19200.pth \\
    --out weights/mtmnv3_small_3task_synth.pth --metrics-json work_dirs/shipped/heldout.json
mtmnv3 publish configs/mtmnv3_small_3task_synth.py weights/mtmnv3_small_3task_synth.pth \\
    --out weights/mtmnv3_small_3task_synth.pth --card-only --metrics-json heldout.json --note "new tracker"""

#: The card's headline metrics: key in ``mtmnv3 test`` output -> label.
CARD_METRICS = {
    "cls/top1": "top-1",
    "det/mAP_50": "mAP@0.5",
    "det/mAP": "mAP@[.5:.95]",
    "mot/MOTA": "MOTA",
    "mot/IDF1": "IDF1",
    "mot/HOTA": "HOTA",
}


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: the meta stays loadable with ``weights_only=True`` and JSON-able."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe_train_data(config: str) -> list[dict[str, Any]]:
    """The training data record of a config (for checkpoints written before the hook recorded it)."""
    from mmengine.registry import init_default_scope

    import mtmnv3.data  # noqa: F401  (registers the datasets)
    from mtmnv3.core.registry import DATASETS
    from mtmnv3.data.provenance import describe_datasets
    from mtmnv3.engine import load_config

    cfg = load_config(config)
    init_default_scope(cfg.get("default_scope", "mtmnv3"))
    return describe_datasets(DATASETS.build(cfg.train_dataloader.dataset))


def publish_weights(config: str, checkpoint: str, out: str | os.PathLike) -> dict[str, Any]:
    """Write the weights-only file ``out``; returns its meta.

    Raises:
        FileNotFoundError: no config or checkpoint.
        ValueError: the checkpoint does not fit the config's model, or is not a checkpoint.
    """
    import torch

    from mtmnv3.apis.init import init_model
    from mtmnv3.core.checkpoint import allow_mmengine_checkpoint_globals
    from mtmnv3.core.fileio import atomic_torch_save
    from mtmnv3.runtime.export_meta import config_hash

    for path, what in ((config, "config"), (checkpoint, "checkpoint")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what} not found: {path}")
    model = init_model(config, checkpoint)  # refuses a checkpoint of another architecture, naming keys
    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{checkpoint} is not a training checkpoint (no 'state_dict')")
    src_meta = ckpt.get("meta") or {}
    train_data = src_meta.get("train_data")
    if not train_data:
        train_data = _describe_train_data(config)
    dataset_meta = {k: v for k, v in (src_meta.get("dataset_meta") or {}).items() if k != "videos"}
    meta = _plain(
        {
            "config": Path(config).name,
            "config_sha256": config_hash(config),
            "iter": src_meta.get("iter"),
            "seed": src_meta.get("seed"),
            "dataset_meta": dataset_meta,
            "train_data": train_data,
            "mmengine_version": src_meta.get("mmengine_version"),
            "torch_version": str(torch.__version__),
        }
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.unchecked")
    try:
        atomic_torch_save({"state_dict": state, "meta": meta}, tmp)
        check = torch.load(tmp, map_location="cpu", weights_only=True)  # the released file loads safely
        if set(check["state_dict"]) != set(state):
            raise RuntimeError(f"{out}: the written file does not hold the model's tensors")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def training_record(train_dir: str | os.PathLike, until: int | None = None) -> dict[str, Any]:
    """Training time (sum over logged windows of s/iter x iterations) and the logged curve of a run's work dir,
    up to iteration ``until`` (the released checkpoint's) when given."""
    scalars = sorted(Path(train_dir).glob("*/vis_data/scalars.json"))
    if not scalars:
        raise FileNotFoundError(f"no */vis_data/scalars.json under {train_dir}: not an mmengine work dir")
    rows: dict[int, dict[str, float]] = {}
    for path in scalars:  # a resumed run logs into a second timestamped folder
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if "loss" in row and "iter" in row:
                rows[int(row["iter"])] = row
    iters = sorted(rows)
    if until is not None:
        iters = [i for i in iters if i <= until]
    seconds, prev = 0.0, 0
    for it in iters:
        seconds += float(rows[it].get("time", 0.0)) * (it - prev)
        prev = it
    return {"iters": iters, "rows": [rows[i] for i in iters], "train_seconds": seconds}


def plot_training_curve(record: Mapping[str, Any], out_png: str | os.PathLike) -> None:
    """Total and per-task losses (log scale) and the learning rate against iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mtmnv3.core.fileio import atomic_open

    iters, rows = record["iters"], record["rows"]
    keys = ["loss"] + sorted({k for r in rows for k in r if k.startswith("loss_")})
    fig, (ax, ax_lr) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(3, 1))
    for key in keys:
        pts = [(i, r[key]) for i, r in zip(iters, rows) if key in r and r[key] > 0]
        if pts:
            x, y = zip(*pts)
            ax.plot(x, y, lw=1.6 if key == "loss" else 0.9, label=key)
    ax.set_yscale("log")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7, ncol=3)
    lr = [(i, r["lr"]) for i, r in zip(iters, rows) if "lr" in r]
    if lr:
        x, y = zip(*lr)
        ax_lr.plot(x, y, color="tab:gray")
    ax_lr.set_ylabel("lr")
    ax_lr.set_xlabel("iteration")
    fig.tight_layout()
    with atomic_open(out_png, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _call(cfg: Mapping[str, Any]) -> str:
    """``{'type': 'T', 'a': 1}`` -> ``T(a=1)``."""
    args = ", ".join(f"{k}={v!r}" for k, v in cfg.items() if k != "type")
    return f"{cfg.get('type', '')}({args})"


def update_card(
    out: str | os.PathLike, metrics: Mapping[str, Any], tracker: Any, note: str, commands: Sequence[str]
) -> dict:
    """Replace a released file's card metrics (and tracker), keeping the old ones in its history."""
    from mtmnv3.core.fileio import atomic_write_json

    out = Path(out)
    card_json = out.with_suffix(".json")
    if not card_json.is_file():
        raise FileNotFoundError(
            f"no model card {card_json} to update (publish the file with --metrics-json first)"
        )
    card = json.loads(card_json.read_text())
    sha = _sha256(out)
    if card.get("sha256") != sha:
        raise ValueError(
            f"{out} is not the file of its card {card_json}: SHA-256 {sha[:12]}... against the card's "
            f"{str(card.get('sha256'))[:12]}..."
        )
    history = list(card.get("history", []))
    history.append({"metrics": card["metrics"], "tracker": card.get("tracker"), "note": note})
    card.update(
        metrics=dict(metrics), tracker=tracker, history=history, commands=[*card["commands"], *commands]
    )
    atomic_write_json(card_json, card)
    write_card(out.with_suffix(".md"), card)
    return card


def write_card(out: str | os.PathLike, card: Mapping[str, Any]) -> None:
    """``NAME.md``: the model card page from the card's data."""
    from mtmnv3.core.fileio import atomic_open
    from mtmnv3.data.provenance import format_train_data

    seeds = list(card["metrics"]["splits"])
    summary = card["metrics"]["summary"]
    head = "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |"
    lines = [
        f"# Model card: `{card['weights']}`",
        "",
        f"MobileNetV3 multi-task model (classification, detection, re-ID embedding) from `{card['config']}`.",
        "",
        "## Training",
        "",
        f"- Data: {format_train_data(card['train_data'])}.",
        f"- Schedule: {card['schedule']}; these weights are iteration {card['iter']}"
        + (
            " (the end of the schedule)."
            if card["iter"] == card["max_iters"]
            else f" of {card['max_iters']}."
        ),
        f"- Training time: {card['train_seconds'] / 60:.1f} min on {card['host']}.",
        f"- Released file: {card['size_bytes'] / 1e6:.1f} MB, weights only (loads with "
        f"`torch.load(..., weights_only=True)`), SHA-256 `{card['sha256']}`.",
        "",
        f"![training curve]({Path(card['weights']).stem}_curve.png)",
        "",
        "## Held-out metrics",
        "",
        f"Held-out synthetic test splits (unseen object images and sequences), seeds {', '.join(seeds)}:",
        "",
        head,
        "|---" * (len(seeds) + 2) + "|",
    ]
    for key, label in CARD_METRICS.items():
        if key not in summary:
            continue
        vals = [card["metrics"]["splits"][s].get(key) for s in seeds]
        s = summary[key]
        lines.append(
            f"| {label} | " + " | ".join(_fmt(v) for v in vals) + f" | {s['mean']:.4f} +- {s['std']:.4f} |"
        )
    if card.get("tracker"):
        lines += ["", f"Tracking metrics with the config's tracker: `{_call(card['tracker'])}`."]
    for old in card.get("history", []):
        before = old["metrics"]["summary"]
        values = ", ".join(
            f"{label} {before[key]['mean']:.4f}" for key, label in CARD_METRICS.items() if key in before
        )
        tracker = f" with `{_call(old['tracker'])}`" if old.get("tracker") else ""
        lines += ["", f"Before re-evaluation ({old['note']}): {values}{tracker}."]
    lines += [
        "",
        "## Limits",
        "",
        "Trained only on the package's synthetic scenes (Fashion-MNIST objects moving over procedural "
        "backgrounds): on real camera footage it finds little. Train on your own data for that "
        "(docs: *Train on your own data*).",
        "",
        "## How it was made",
        "",
        "```",
        *card["commands"],
        "```",
        "",
    ]
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``publish`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("publish", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("config")
    p.add_argument("checkpoint", help="a training checkpoint of this config")
    p.add_argument("--out", required=True, help="the weights file to write (.pth)")
    p.add_argument(
        "--metrics-json",
        help="held-out metrics from `mtmnv3 test --splits ... --track --out-json`: also write the model card",
    )
    p.add_argument(
        "--train-dir", help="the run's work dir (training curve and time; default: the checkpoint's)"
    )
    p.add_argument(
        "--host", default=None, help="the training host, for the card (default: CPU count and model)"
    )
    p.add_argument(
        "--card-only",
        action="store_true",
        help="CHECKPOINT is the released file (--out): only replace its card's held-out metrics with "
        "--metrics-json, keeping the old ones in the card's history",
    )
    p.add_argument("--note", default="re-evaluated", help="--card-only: why it was re-evaluated")
    p.add_argument(
        "--command",
        action="append",
        default=[],
        help="a command that made the model or its metrics, for the card (repeatable)",
    )
    return p


def _host() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu})"


def run(args: argparse.Namespace) -> int:
    """Run ``mtmnv3 publish`` for parsed ``args``; returns the exit status."""
    from mtmnv3.core.fileio import atomic_write_json

    out = Path(args.out)
    if out.suffix != ".pth":
        return report(ValueError(f"--out must end in .pth, got {args.out!r}"))
    metrics = None
    if args.metrics_json:
        try:
            metrics = json.loads(Path(args.metrics_json).read_text())
        except (OSError, json.JSONDecodeError) as err:
            return report(ValueError(f"--metrics-json {args.metrics_json}: {err}"))
        if "splits" not in metrics or "summary" not in metrics:
            return report(
                ValueError(
                    f"--metrics-json {args.metrics_json} has no 'splits'/'summary': expected the output of "
                    "`mtmnv3 test CONFIG CKPT --splits 0 1 2 3 --track --out-json FILE`"
                )
            )
    if args.card_only:
        if metrics is None:
            return report(ValueError("--card-only needs --metrics-json (the new held-out metrics)"))
        if Path(args.checkpoint).resolve() != out.resolve():
            return report(
                ValueError(
                    f"--card-only re-evaluates the released file itself: CHECKPOINT must be --out ({out})"
                )
            )
        from mmengine.config import Config

        tracker = Config.fromfile(args.config).get("tracker")
        try:
            update_card(out, metrics, _plain(tracker), args.note, [*args.command, args.command_line])
        except (FileNotFoundError, ValueError) as err:
            return report(err)
        print(f"updated the model card {out.with_suffix('.md')} (+ .json)")
        return 0
    try:
        meta = publish_weights(args.config, args.checkpoint, out)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        return report(err)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, weights only)")
    if metrics is None:
        return 0
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    train_dir = args.train_dir or os.path.dirname(os.path.abspath(args.checkpoint))
    try:
        record = training_record(train_dir, until=meta.get("iter"))
    except FileNotFoundError as err:
        return report(err)
    plot_training_curve(record, out.with_name(f"{out.stem}_curve.png"))
    opt = cfg.optim_wrapper.optimizer
    card = {
        "weights": out.name,
        "sha256": _sha256(out),
        "size_bytes": out.stat().st_size,
        "config": args.config,
        "config_sha256": meta["config_sha256"],
        "schedule": f"{cfg.train_cfg.max_iters} iterations, batch {cfg.train_dataloader.batch_size}, "
        f"{opt.type} lr {opt.lr} with warm-up and cosine decay",
        "train_data": meta["train_data"],
        "iter": meta["iter"],
        "max_iters": int(cfg.train_cfg.max_iters),
        "train_seconds": record["train_seconds"],
        "host": args.host or _host(),
        "metrics": metrics,
        "tracker": _plain(cfg.get("tracker")),
        "commands": [*args.command, args.command_line],
    }
    atomic_write_json(out.with_suffix(".json"), card)
    write_card(out.with_suffix(".md"), card)
    print(f"wrote the model card {out.with_suffix('.md')} (+ .json, _curve.png)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 publish ARGS``; returns the exit status."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("publish", argv)
    return run(args)
