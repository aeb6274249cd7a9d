"""``mtmnv3 summary``: the trunk variants' params, MACs and stage latency, or (``--update-metafile``) the metafile.

``configs/metafile.yml`` follows mmdet's metafile layout: one entry per config
under ``configs/`` with its Name, Config, Metadata (parameters and MACs at the
config's test input size, computed when the file is written) and Results: the
per-task metrics of the evaluation outputs found under ``--work-dirs`` (the
``eval_result.json`` that ``mtmnv3 test --work-dir`` and the demo job leave,
or a demo job's ``metrics.json`` + ``report.md``), each with the command that
produced it. An entry without results says so. The file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtmnv3.backbone.variants import TIMM_VARIANTS, TRUNK_VARIANTS, create_trunk
from mtmnv3.cli._common import command_line, new_parser, report
from mtmnv3.core.fileio import atomic_open
from mtmnv3.core.profiling import format_table, num_threads, stage_latency

__all__ = ["add_parser", "run", "main", "metafile", "find_results", "model_complexity"]

DESCRIPTION = "trunk summary (params, MACs, latency); --update-metafile writes configs/metafile.yml"
EXAMPLE = """\
mtmnv3 summary --size 224 --threads 2 --variants small large
mtmnv3 summary --update-metafile --work-dirs work_dirs"""

#: Metric prefix -> task name in the metafile's Results.
TASKS = {
    "cls": "Image Classification",
    "det": "Object Detection",
    "mot": "Multiple Object Tracking",
    "emb": "Re-identification",
}
NO_RESULTS = (
    "no evaluation output found under {work_dirs} (run `mtmnv3 test CONFIG CHECKPOINT --work-dir DIR`)"
)


def add_parser(subparsers: argparse._SubParsersAction | None = None) -> argparse.ArgumentParser:
    """The ``summary`` parser (under ``subparsers``, or standalone when None)."""
    p = new_parser("summary", DESCRIPTION, EXAMPLE, subparsers)
    p.add_argument("--size", type=int, default=224, help="square input size (default 224)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--repeats", type=int, default=10, help="timed repeats per stage (default 10)")
    p.add_argument("--variants", nargs="+", default=sorted(TRUNK_VARIANTS), help="variants to show")
    p.add_argument(
        "--update-metafile",
        action="store_true",
        help="write the metafile (one entry per config; no trunk timing) instead of the trunk summary",
    )
    p.add_argument("--configs-dir", default="configs", help="configs to list (default configs)")
    p.add_argument(
        "--work-dirs", default="work_dirs", help="where to look for evaluation outputs (default work_dirs)"
    )
    p.add_argument("--metafile", help="the file to write (default CONFIGS_DIR/metafile.yml)")
    return p


def run(args: argparse.Namespace) -> int:
    """Print the trunk summary, or write the metafile; returns the exit status."""
    if args.update_metafile:
        try:
            out = args.metafile or os.path.join(args.configs_dir, "metafile.yml")
            data = metafile(args.configs_dir, args.work_dirs)
            _write_yaml(out, data)
        except (FileNotFoundError, ValueError) as e:
            return report(e)
        rows = [
            [
                m["Name"],
                _fmt(m["Metadata"].get("Parameters")),
                _fmt(m["Metadata"].get("MACs")),
                len(m["Results"]),
            ]
            for m in data["Models"]
        ]
        print(format_table(["config", "params", "MACs", "results"], rows))
        print(f"\nwrote {out} ({len(rows)} configs)")
        return 0
    return _trunk_summary(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``mtmnv3 summary`` with ``argv`` (default ``sys.argv[1:]``)."""
    args = add_parser().parse_args(argv)
    args.command_line = command_line("summary", argv)
    return run(args)


# ---- the trunk summary ---------------------------------------------------------------------------
def _trunk_summary(args: argparse.Namespace) -> int:
    unknown = [v for v in args.variants if v not in TRUNK_VARIANTS and v not in TIMM_VARIANTS]
    if unknown:
        print(
            f"error: unknown variants {unknown}; known: {sorted(TRUNK_VARIANTS)} "
            f"and the timm successors {sorted(TIMM_VARIANTS)}",
            file=sys.stderr,
        )
        return 2
    if args.size < 32 or args.threads < 1 or args.repeats < 1:
        print(
            f"error: need --size >= 32, --threads >= 1, --repeats >= 1; got "
            f"{args.size}, {args.threads}, {args.repeats}",
            file=sys.stderr,
        )
        return 2
    rows, totals = [], []
    with num_threads(args.threads):
        for name in args.variants:
            trunk = create_trunk(name)
            timings = stage_latency(trunk, args.size, repeats=args.repeats)
            macs = trunk.stage_macs(args.size, args.size)
            for info, m, t in zip(trunk.feature_info, macs, timings):
                rows.append(
                    [
                        name,
                        info["name"],
                        info["channels"],
                        info["stride"],
                        info["params"],
                        m / 1e6,
                        t.median_ms,
                    ]
                )
            totals.append(
                [
                    name,
                    sum(i["params"] for i in trunk.feature_info) / 1e6,
                    sum(macs) / 1e6,
                    sum(t.median_ms for t in timings),
                ]
            )
    print(f"Per-stage summary (batch 1, {args.size}x{args.size}, {args.threads} threads, eager, median)\n")
    print(format_table(["variant", "stage", "channels", "stride", "params", "MMACs", "ms"], rows))
    print("\nTotals\n")
    print(format_table(["variant", "Mparams", "MMACs", "ms (sum of stages)"], totals))
    return 0


# ---- the metafile ------------------------------------------------------------------------------------
def model_complexity(config: str | os.PathLike, cfg_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters and MACs (convolutions and linear layers, one forward pass) of a config's model.

    The input is square, at the config's test input size (``cfg_options`` merged on top). Returns the metafile's
    Metadata; a model that cannot be built here (e.g. mmdet not installed) gets a
    ``Note`` saying why instead of the counts.
    """
    import torch
    from mmengine.registry import init_default_scope
    from torch import nn

    from mtmnv3.core.registry import MODELS
    from mtmnv3.engine import input_size, load_config

    try:
        cfg = load_config(config, cfg_options)
    except ImportError as e:  # custom_imports of an optional extra (mmdet)
        return {"Note": f"config not loaded here (it imports {_missing_module(e)}); counts left out"}
    size = int(input_size(cfg.test_dataloader.dataset)) if cfg.get("test_dataloader") else 320
    meta: dict[str, Any] = {"Input Size": size}
    try:
        init_default_scope(cfg.get("default_scope", "mtmnv3"))
        model = MODELS.build(cfg.model).eval()
    except (ImportError, KeyError, ValueError, TypeError) as e:
        meta["Note"] = f"model not built here: {type(e).__name__}: {e}"
        return meta
    macs = [0]

    def count(module: nn.Module, inputs: tuple, output: Any) -> None:
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs[0] += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            macs[0] += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size), mode="tensor")
    finally:
        for h in hooks:
            h.remove()
    meta["Parameters"] = int(sum(p.numel() for p in model.parameters()))
    meta["MACs"] = int(macs[0])
    if hasattr(model, "heads"):
        meta["Tasks"] = list(model.heads)
    return meta


def _missing_module(error: BaseException) -> str:
    """The module an import error chain failed on (``mmdet``), or its first message line."""
    seen = error
    while seen is not None:
        if getattr(seen, "name", None):
            return seen.name
        seen = seen.__cause__ or seen.__context__
    return str(error).splitlines()[0]


def _metrics_of(data: dict[str, Any]) -> dict[str, float]:
    """Flat ``{task/metric: value}`` of an ``--out-json`` (one split, or the means of ``--splits``)."""
    if "summary" in data and "splits" in data:
        return {k: float(v["mean"]) for k, v in data["summary"].items()}
    return {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}


def find_results(work_dirs: str | os.PathLike) -> list[dict[str, Any]]:
    """Evaluation outputs under ``work_dirs``: ``{config, metrics, command, source}`` each.

    Reads ``eval_result.json`` (``mtmnv3 test --work-dir``) and a demo job's
    ``metrics.json`` next to its ``report.md`` when the job left no
    ``test/eval_result.json``.
    """
    root = Path(work_dirs)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.rglob("eval_result.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if data.get("format") == "mtmnv3.EvalResult" and isinstance(data.get("metrics"), dict):
            metrics = _metrics_of(data["metrics"])
            found.append(
                dict(config=data["config"], metrics=metrics, command=data["command"], source=str(path))
            )
    for report_md in sorted(root.rglob("report.md")):
        job = report_md.parent
        metrics_json = job / "metrics.json"
        if (job / "test" / "eval_result.json").is_file() or not metrics_json.is_file():
            continue
        line = next((ln for ln in report_md.read_text().splitlines() if ln.startswith("Config: `")), None)
        if line is None:
            continue
        config = line.split("`")[1]
        command = f"mtmnv3 test {config} {job / 'model.pth'} --track --work-dir {job / 'test'}"
        metrics = _metrics_of(json.loads(metrics_json.read_text()))
        found.append(dict(config=config, metrics=metrics, command=command, source=str(metrics_json)))
    return found


def _results(config: Path, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    results = []
    for item in found:
        if Path(item["config"]).resolve() != config.resolve():
            continue
        by_task: dict[str, dict[str, float]] = {}
        for key, value in sorted(item["metrics"].items()):
            task, _, metric = key.partition("/")
            by_task.setdefault(task, {})[metric or task] = round(value, 4)
        for task, metrics in by_task.items():
            results.append(
                {
                    "Task": TASKS.get(task, task),
                    "Metrics": metrics,
                    "Command": item["command"],
                    "Source": item["source"],
                }
            )
    return results


def metafile(configs_dir: str | os.PathLike, work_dirs: str | os.PathLike) -> dict[str, Any]:
    """The metafile's content: one model entry per config under ``configs_dir`` (its subfolders too)."""
    root = Path(configs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"configs folder not found: {str(root)!r}")
    configs = sorted(p for p in root.rglob("*.py") if "_base_" not in p.parts)
    if not configs:
        raise ValueError(f"no configs (*.py) under {str(root)!r}")
    found = find_results(work_dirs)
    models = []
    for config in configs:
        entry: dict[str, Any] = {
            "Name": config.stem,
            "In Collection": "mtmnv3",
            "Config": config.as_posix(),
            "Metadata": model_complexity(config),
        }
        entry["Results"] = _results(config, found)
        if not entry["Results"]:
            entry["Results Note"] = NO_RESULTS.format(work_dirs=os.fspath(work_dirs))
        models.append(entry)
    collection = {
        "Name": "mtmnv3",
        "Metadata": {"Architecture": ["MobileNetV3"]},
        "README": "README.md",
    }
    return {"Collections": [collection], "Models": models}


def _write_yaml(path: str | os.PathLike, data: dict[str, Any]) -> None:
    import yaml

    text = yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}M"
