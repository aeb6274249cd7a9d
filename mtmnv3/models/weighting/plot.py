"""Plot per-task loss weights and losses of a training run against iteration.

Reads the ``scalars.json`` that mmengine's ``LocalVisBackend`` writes to
``<work_dir>/<timestamp>/vis_data/scalars.json`` (the Runner's default
visualizer has that backend): one JSON object per logged interval, with the
model's log variables (``weight_<task>``, ``loss_*``) and ``iter``/``step``.

Usage: ``python -m mtmnv3.models.weighting.plot WORK_DIR_OR_SCALARS_JSON OUT.png``
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

from mtmnv3.core.fileio import atomic_open

__all__ = ["read_scalars", "find_scalars_json", "plot_weights", "main"]

WEIGHT_PREFIX = "weight_"
LOSS_PREFIX = "loss_"


def find_scalars_json(path: str | os.PathLike) -> Path:
    """``path`` itself if it is a file, else the newest ``*/vis_data/scalars.json`` under it."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or work dir: {path}")
    found = sorted(path.glob("*/vis_data/scalars.json"), key=lambda p: p.parent.parent.name)
    if not found:
        raise FileNotFoundError(f"no <timestamp>/vis_data/scalars.json under {path}")
    return found[-1]


def read_scalars(scalars_json: str | os.PathLike) -> dict[str, tuple[list[int], list[float]]]:
    """Series of the ``weight_*`` and ``loss*`` keys: ``{key: (iterations, values)}``.

    Raises:
        ValueError: a line that is not a JSON object (naming file and line).
    """
    series: dict[str, tuple[list[int], list[float]]] = {}
    path = Path(scalars_json)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            it = record.get("iter", record.get("step"))
            if it is None:
                continue
            for key, value in record.items():
                if (key.startswith(WEIGHT_PREFIX) or key.startswith("loss")) and isinstance(
                    value, (int, float)
                ):
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(int(it))
                    ys.append(float(value))
    return series


def plot_weights(scalars_json: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Plot the per-task weights (top) and losses (bottom, log scale) vs iteration.

    Args:
        scalars_json: an mmengine ``scalars.json`` or a work dir (newest run).
        out_png: where to write the figure.

    Returns:
        The path of the written figure.

    Raises:
        ValueError: the file logs no ``weight_<task>`` values (a run without
            loss-weighting logging).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source = find_scalars_json(scalars_json)
    series = read_scalars(source)
    weights = sorted(k for k in series if k.startswith(WEIGHT_PREFIX))
    if not weights:
        raise ValueError(f"{source} has no '{WEIGHT_PREFIX}<task>' scalars; keys: {sorted(series)}")
    losses = sorted(k for k in series if k.startswith(LOSS_PREFIX))

    fig, (ax_w, ax_l) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for key in weights:
        ax_w.plot(*series[key], label=key[len(WEIGHT_PREFIX) :])
    ax_w.set_ylabel("task weight")
    ax_w.legend(loc="best")
    ax_w.grid(alpha=0.3)
    for key in losses:
        ax_l.plot(*series[key], label=key)
    if losses and all(v > 0 for key in losses for v in series[key][1]):
        ax_l.set_yscale("log")
    ax_l.set_xlabel("iteration")
    ax_l.set_ylabel("loss")
    if losses:
        ax_l.legend(loc="best", fontsize="small")
    ax_l.grid(alpha=0.3)
    fig.suptitle(str(source.parent.parent.name))
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out, "wb") as f:  # no half-written figure
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scalars", help="scalars.json or an mmengine work dir")
    parser.add_argument("out", help="output PNG")
    args = parser.parse_args(argv)
    print(plot_weights(args.scalars, args.out))


if __name__ == "__main__":
    main()
