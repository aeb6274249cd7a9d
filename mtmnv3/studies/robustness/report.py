"""The robustness study's reports: the markdown tables, the severity curves and the output files."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtmnv3.core.fileio import atomic_open, atomic_write_json
from mtmnv3.studies.robustness.spec import ATTACK_METHODS

__all__ = [
    "JSON_NAME",
    "MARKDOWN_NAME",
    "PLOT_NAME",
    "format_markdown",
    "plot_severity_curves",
    "write_outputs",
]

#: File names written by :func:`write_outputs`.
JSON_NAME, MARKDOWN_NAME, PLOT_NAME = "robustness.json", "robustness.md", "severity_curves.png"


# ---- reporting -------------------------------------------------------------------------------------
def _fmt(value: Any, precision: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{precision}f}" if isinstance(value, (int, float)) else str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def format_markdown(results: Mapping[str, Any]) -> str:
    """Markdown report: summary, per-metric corruption x severity tables, attack transfer tables."""
    summary = results["summary"]
    norm = any(v["normalised"] for v in summary.values())
    lines = [
        "# Robustness study",
        "",
        f"{results.get('config', '')} / {results.get('checkpoint', '')}: {results['num_samples']} test samples, "
        f"seed {results['seed']}. Error = 1 - metric; "
        + (
            f"CE normalised by the reference {results['reference']} (Hendrycks & Dietterich 2019)."
            if norm
            else "no reference, so CE is the unnormalised mean error over severities."
        ),
        "",
        "## Summary",
        "",
    ]
    extra = [k for k in ("relative_mCE", "mCE_seen", "mCE_unseen") if any(k in v for v in summary.values())]
    lines += _table(
        ["metric", "clean", "mean corrupted", "relative robustness (clean - corrupted)", "mCE", *extra],
        [
            [
                m,
                v["clean"],
                v["mean_corrupted"],
                v["relative_robustness"],
                v["mCE"],
                *(v.get(k) for k in extra),
            ]
            for m, v in summary.items()
        ],
    )
    sevs = [str(s) for s in results["severities"]]
    for metric in results["metrics"]:
        lines += ["", f"## {metric} per corruption and severity", ""]
        rows: list[list[Any]] = [
            ["clean", *[results["clean"][metric]] * len(sevs), results["clean"][metric], "-"]
        ]
        for name, per_sev in results["corruptions"].items():
            vals = [per_sev[s][metric] for s in sevs]
            rows.append([name, *vals, sum(vals) / len(vals), summary[metric]["CE"][name]])
        lines += _table(["corruption", *[f"s{s}" for s in sevs], "mean", "CE"], rows)
    attacks = results.get("attacks")
    if attacks:
        metrics = [m for m in results["metrics"]]
        lines += ["", "## Adversarial transfer (rows: attack target, columns: task metric under attack)", ""]
        for method in ATTACK_METHODS:
            for label in attacks.get(method, {}):
                steps = f", {attacks['pgd_steps']} steps" if method == "pgd" else ""
                lines += [f"### {method.upper()} eps={label}{steps}", ""]
                rows = [["(clean)", *[results["clean"][m] for m in metrics]]]
                rows += [[t, *[r[m] for m in metrics]] for t, r in attacks[method][label].items()]
                lines += [*_table(["target", *metrics], rows), ""]
    timing = results.get("timing", {})
    if timing:
        lines += [
            "",
            f"Time: {_fmt(timing.get('total_s'), 1)} s in total "
            f"(clean {_fmt(timing.get('clean_s'), 1)} s, corruptions {_fmt(timing.get('corruptions_s'), 1)} s"
            + (f", attacks {_fmt(timing['attacks_s'], 1)} s" if "attacks_s" in timing else "")
            + (
                f"; the conditions ran in {timing['workers']} processes, {_fmt(timing['wall_s'], 1)} s"
                " of wall time"
                if timing.get("workers", 1) > 1
                else ""
            )
            + ").",
        ]
    return "\n".join(lines) + "\n"


def plot_severity_curves(results: Mapping[str, Any]) -> bytes:
    """PNG of metric vs severity (0 = clean) per corruption, one panel per headline
    task metric (matplotlib's Agg canvas; the global backend is untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics = results["metrics"]
    sevs = [0, *results["severities"]]
    fig = Figure(figsize=(4.2 * len(metrics) + 2.0, 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        clean = results["clean"][metric]
        for name, per_sev in results["corruptions"].items():
            ax.plot(sevs, [clean, *[per_sev[str(s)][metric] for s in sevs[1:]]], marker="o", ms=3, label=name)
        task, _, short = metric.partition("/")
        ax.set_title(f"{task}: {short}")
        ax.set_xlabel("severity (0 = clean)")
        ax.set_xticks(sevs)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def write_outputs(results: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``robustness.json``, ``robustness.md`` and ``severity_curves.png`` atomically."""
    out = Path(out_dir)
    paths = {"json": out / JSON_NAME, "markdown": out / MARKDOWN_NAME, "plot": out / PLOT_NAME}
    atomic_write_json(paths["json"], results)
    with atomic_open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(format_markdown(results))
    png = plot_severity_curves(results)
    with atomic_open(paths["plot"], "wb") as f:
        f.write(png)
    return paths
