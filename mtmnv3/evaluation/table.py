"""The per-task metrics table printed after evaluation."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

__all__ = ["format_metrics_table", "TASK_ORDER"]

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
