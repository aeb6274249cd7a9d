"""The per-task metrics table printed after evaluation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

__all__ = ["format_metrics_table", "format_splits_table", "split_means", "summarize_splits", "TASK_ORDER"]

#: Tasks listed first, in this order; other prefixes follow in order of appearance.
TASK_ORDER = ("cls", "det", "mot")

#: Row label of metric keys that carry no ``task/`` prefix.
NO_TASK = "-"


def _format_value(value: object, precision: int) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) >= 1e4:
            return str(int(value))
        return f"{value:.{precision}f}"
    return str(value).replace("|", "\\|")


def format_metrics_table(metrics: Mapping[str, object], precision: int = 4) -> str:
    """Format flat ``task/metric`` keys as a markdown table, one row per task.

    Columns are the metric names in order of first appearance; a task that has
    no value for a column leaves the cell empty. Integers (counts such as
    ``IDSW``) print without decimals, other numbers with ``precision`` digits.

    Example:
        >>> print(format_metrics_table({'cls/top1': 0.5, 'det/mAP': 0.25}))
        | task | top1 | mAP |
        |---|---|---|
        | cls | 0.5000 |  |
        | det |  | 0.2500 |

    Args:
        metrics: Flat metrics as returned by mmengine's ``Evaluator.evaluate``,
            e.g. ``{'cls/top1': 0.91, 'det/mAP': 0.42, 'mot/IDSW': 3}``. The
            text before the first ``/`` names the task; keys without ``/``
            go to a row named ``-``.
        precision: Decimal places of non-integer values.

    Returns:
        The markdown table (no trailing newline); ``''`` for empty metrics.

    Raises:
        TypeError: If ``metrics`` is not a mapping or a key is not a string.
        ValueError: If ``precision`` is negative.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a mapping of 'task/metric' to value, got {type(metrics).__name__}")
    if not isinstance(precision, int) or precision < 0:
        raise ValueError(f"precision must be a non-negative int, got {precision!r}")
    if not metrics:
        return ""
    rows: dict[str, dict[str, object]] = {}
    columns: list[str] = []
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise TypeError(f"metric keys must be strings, got {key!r}")
        task, sep, name = key.partition("/")
        if not sep:
            task, name = NO_TASK, key
        rows.setdefault(task, {})[name] = value
        if name not in columns:
            columns.append(name)
    order = [t for t in TASK_ORDER if t in rows] + [t for t in rows if t not in TASK_ORDER]
    lines = [
        "| task | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for task in order:
        cells = [_format_value(rows[task][c], precision) if c in rows[task] else "" for c in columns]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize_splits(per_split: Mapping[object, Mapping[str, object]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation of each metric over evaluation splits.

    Args:
        per_split: ``{split name: {'task/metric': value}}``, e.g. one entry per
            held-out seed. A metric missing from some split is summarised over
            the splits that have it.

    Returns:
        ``{'task/metric': {'mean': m, 'std': s, 'n': k}}`` in order of first
        appearance (``std`` is 0.0 for a single split).

    Raises:
        ValueError: If ``per_split`` is empty or a value is not a real number.
    """
    if not per_split:
        raise ValueError("per_split is empty: give at least one split's metrics")
    values: dict[str, list[float]] = {}
    for split, metrics in per_split.items():
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"split {split!r}: metric {key!r} is not a number ({value!r})")
            values.setdefault(key, []).append(float(value))
    out = {}
    for key, vals in values.items():
        n = len(vals)
        mean = sum(vals) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
        out[key] = {"mean": mean, "std": std, "n": n}
    return out


def split_means(results: Mapping[str, object]) -> tuple[dict[str, float], dict[str, float]]:
    """``({metric: mean}, {metric: std})`` of a metrics dict written by ``mtmnv3 test --out-json``.

    A ``--splits`` result (``{'splits': ..., 'summary': ...}``) gives its
    summary's means and standard deviations; a plain ``{metric: value}``
    result gives its values and no standard deviations.
    """
    summary = results.get("summary")
    if isinstance(summary, Mapping):
        return {k: v["mean"] for k, v in summary.items()}, {k: v["std"] for k, v in summary.items()}
    return dict(results), {}


def format_splits_table(per_split: Mapping[object, Mapping[str, object]], precision: int = 4) -> str:
    """A markdown table with one row per split and a final mean +- std row.

    Example:
        >>> print(format_splits_table({0: {'cls/top1': 0.5}, 1: {'cls/top1': 0.7}}))
        | split | cls/top1 |
        |---|---|
        | 0 | 0.5000 |
        | 1 | 0.7000 |
        | mean +- std | 0.6000 +- 0.1414 |
    """
    summary = summarize_splits(per_split)
    keys = list(summary)
    lines = ["| split | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for split, metrics in per_split.items():
        cells = [_format_value(metrics[k], precision) if k in metrics else "" for k in keys]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    cells = [f"{summary[k]['mean']:.{precision}f} +- {summary[k]['std']:.{precision}f}" for k in keys]
    lines.append("| mean +- std | " + " | ".join(cells) + " |")
    return "\n".join(lines)
