"""The trunk scorecard's measurements and report: one row per trunk, a markdown table, JSON and Pareto plots.

``mtmnv3 scorecard`` (:mod:`mtmnv3.cli.scorecard`) trains or reuses each
trunk's trials (:mod:`mtmnv3.studies.sweep`), measures each stage into the
trunk's cache folder, and calls :func:`build_rows`, :func:`format_markdown`
and :func:`plot_pareto` here. What this module measures itself:

* :func:`time_files`: every deployed file of every trunk timed in the same
  interleaved rounds of one process (batch 1), so that the ratios to the
  reference's ONNX Runtime fp32 file compare like with like;
* :func:`latency_shares`: the share of ONNX Runtime kernel time spent in SE
  (squeeze-and-excitation), hard-swish and attention nodes, from ONNX
  Runtime's profiler on the fp32 graph run as exported (no operator fusion,
  so an activation is not hidden inside a convolution's kernel). OpenVINO and
  ExecuTorch fuse and give no per-layer time here: their cells say so.

Cells a stage could not fill hold ``"n/a: <reason>"`` (text), never nothing.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ATTACK_TARGET_METRIC",
    "CLEAN_METRICS",
    "PRECISIONS",
    "ROBUST_METRICS",
    "RUNTIMES",
    "SHARE_KINDS",
    "build_rows",
    "format_markdown",
    "is_na",
    "latency_shares",
    "mean_std",
    "na",
    "pareto_front",
    "plot_pareto",
    "time_files",
]

#: Runtimes of the latency columns (file suffix), in table order.
RUNTIMES = {"onnxruntime": ".onnx", "openvino": ".xml", "executorch": ".pte"}
RUNTIME_LABELS = {"onnxruntime": "ORT", "openvino": "OV", "executorch": "ET"}
PRECISIONS = ("fp32", "int8")
#: Clean metrics (``mtmnv3 test --track`` keys) -> column label.
CLEAN_METRICS = {"cls/top1": "top-1", "det/mAP_50": "mAP@0.5", "mot/IDF1": "IDF1", "mot/HOTA": "HOTA"}
#: One headline metric per task for mCE and the int8 drop.
ROBUST_METRICS = {"cls": "cls/top1", "det": "det/mAP_50", "mot": "mot/IDF1"}
#: The metric an attack on a head is scored by (its own task's).
ATTACK_TARGET_METRIC = {"cls": "cls/top1", "det": "det/mAP_50", "emb": "mot/IDF1"}
#: Latency share kinds -> how a node is recognised (see :func:`node_share_kind`).
SHARE_KINDS = ("se", "hard_swish", "attention")
#: Module names (path segments) of squeeze-and-excitation and attention blocks.
SE_SEGMENTS = ("se", "squeeze_excite", "squeeze_excitation")
ATTENTION_SEGMENTS = ("attn", "attention", "self_attn")
ATTENTION_OPS = ("Softmax", "Attention", "MultiHeadAttention")
#: Names of the nodes ONNX Runtime runs a ``HardSwish`` node as (not in the exported file).
HARD_SWISH_EXPANSION = ("HardSigmoid_", "Mul_")


def na(reason: str) -> str:
    """The text of a cell that a stage could not fill."""
    return f"n/a: {reason}"


def is_na(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("n/a")


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{'mean', 'std', 'n'}`` (std 0 for one value)."""
    values = [float(v) for v in values]
    return dict(
        mean=statistics.fmean(values), std=statistics.stdev(values) if len(values) > 1 else 0.0, n=len(values)
    )


# ---- measuring ---------------------------------------------------------------------------------------
def time_files(
    files: Mapping[Any, str | os.PathLike], threads: int, size: int, rounds: int = 15
) -> dict[Any, float | str]:
    """Median ms (batch 1) of every file, timed in the same interleaved rounds.

    A file that does not open or run gets ``"n/a: <reason>"`` instead; the others are still timed.
    """
    from mtmnv3.core.profiling import interleaved_timings
    from mtmnv3.runtime.sessions import open_session

    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    out: dict[Any, float | str] = {}
    calls = {}
    for key, path in files.items():
        try:
            session = open_session(path, threads)
            session.run(x)
        except Exception as e:  # noqa: BLE001 - one file that does not run leaves the others timed
            out[key] = na(f"{Path(path).name} does not run: {type(e).__name__}: {str(e)[:120]}")
            continue
        calls[key] = lambda s=session: s.run(x)
    if calls:
        timings = interleaved_timings(calls, rounds=rounds, inner=3, warmup=3)
        out.update({key: t.median_ms for key, t in timings.items()})
    return out


def node_share_kind(module: str, op_type: str, layer_kind: str) -> str | None:
    """``'se'``, ``'hard_swish'``, ``'attention'`` or None for one node of an exported graph.

    Args:
        module: the node's source module path (``layer_kinds.node_module``) or, without one, its name.
        op_type: the ONNX operator.
        layer_kind: its kind from :mod:`~mtmnv3.studies.quantization.layer_kinds`.

    Attention: a node under a module named ``attn``/``attention``, or a softmax /
    attention operator (MobileViT's transformer MLPs and norms are not counted);
    hard-swish: a ``HardSwish`` node, whole or decomposed; SE: a node under a
    module named ``se`` (timm), or one ``layer_kinds`` tags as an SE part (the
    package's MobileNetV3 blocks) outside a transformer MLP.
    """
    parts = [p for p in module.replace("/", ".").split(".") if p]
    if any(p in ATTENTION_SEGMENTS for p in parts) or op_type in ATTENTION_OPS:
        return "attention"
    if layer_kind == "hard_swish":
        return "hard_swish"
    if any(p in SE_SEGMENTS for p in parts) or (layer_kind.startswith("se_") and "mlp" not in parts):
        return "se"
    return None


def _graph_share_kinds(proto: Any) -> dict[str, str | None]:
    from mtmnv3.studies.quantization.layer_kinds import graph_layer_kinds, node_module

    return {
        node.name: node_share_kind(node_module(node) or node.name, node.op_type, kind)
        for node, kind in graph_layer_kinds(proto)
    }


def latency_shares(
    onnx_path: str | os.PathLike, size: int, threads: int = 1, runs: int = 20
) -> dict[str, Any]:
    """Share of ONNX Runtime kernel time per kind (:data:`SHARE_KINDS`) of an fp32 ``.onnx`` file.

    Nodes are told apart in the exported graph (module paths, structure).
    ONNX Runtime runs a ``HardSwish`` node as the hard-sigmoid and multiply it
    expands to, profiled under names of their own that are not in the file
    (``HardSigmoid_<n>``, ``Mul_<n>``): those count as hard-swish.

    Returns:
        ``{'se', 'hard_swish', 'attention'}`` fractions of the summed kernel time
        (0 where the graph has none), ``'kernel_ms'`` and ``'method'``.
    """
    import onnx

    from mtmnv3.studies.latency.ort_profile import profile_nodes

    proto = onnx.load(str(onnx_path), load_external_data=False)
    kinds = _graph_share_kinds(proto)
    has_hswish = any(n.op_type == "HardSwish" for n in proto.graph.node)
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    times = profile_nodes(onnx_path, x, threads=threads, runs=runs, warmup=5)
    for node in times:
        if node not in kinds and has_hswish and node.startswith(HARD_SWISH_EXPANSION):
            kinds[node] = "hard_swish"
    total = sum(times.values())
    out: dict[str, Any] = {k: 0.0 for k in SHARE_KINDS}
    for node, ms in times.items():
        kind = kinds.get(node)
        if kind is not None:
            out[kind] += ms / total if total > 0 else 0.0
    out["kernel_ms"] = total
    out["method"] = (
        f"ONNX Runtime profiler, fp32 graph as exported (no fusion), {threads} thread(s), median of {runs} runs"
    )
    return out


# ---- the rows ---------------------------------------------------------------------------------------
def _metric_drop(after: Mapping[str, float] | None, before: Mapping[str, float] | None, metric: str) -> Any:
    if after is None or before is None or metric not in after or metric not in before:
        return None
    return float(after[metric]) - float(before[metric])


def _ce_summary(results: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """mCE per task (normalised by the reference's errors when given)."""
    from mtmnv3.studies.robustness import summarise

    summary = summarise(
        {**results, "metrics": [m for m in ROBUST_METRICS.values() if m in results["clean"]]}, reference
    )
    return {
        task: summary[m]["mCE"] if m in summary else na(f"{m} not measured")
        for task, m in ROBUST_METRICS.items()
    }


def build_rows(trunks: Sequence[Mapping[str, Any]], reference: str) -> list[dict[str, Any]]:
    """One scorecard row per trunk from its stages' results.

    Args:
        trunks: per trunk ``{'name', 'config', 'complexity', 'clean' ({'seed<k>/split<j>': metrics}),
            'clean_reason' (n/a text when a clean evaluation failed),
            'latency' ({'runtime/precision': ms or n/a}), 'deployed' ({'runtime/precision':
            metrics or n/a}), 'robustness' (results or n/a), 'shares' (dict or n/a)}``.
        reference: the name of the trunk that ratios and mCE are relative to.

    Returns:
        Rows: ``name``, ``params``, ``macs``, ``ms`` and ``ratio`` (per ``runtime/precision``),
        ``int8_speedup`` and ``int8_drop`` (per runtime), ``clean`` (mean/std per metric),
        ``mce`` and ``adv_drop`` (per task/head), ``shares`` (per runtime).
    """
    by_name = {t["name"]: t for t in trunks}
    if reference not in by_name:
        raise ValueError(f"reference trunk {reference!r} is not among {sorted(by_name)}")
    ref = by_name[reference]
    ref_ms = ref["latency"].get("onnxruntime/fp32")
    ref_robust = ref.get("robustness")
    ref_robust = None if is_na(ref_robust) or ref_robust is None else ref_robust
    rows = []
    for t in trunks:
        row: dict[str, Any] = dict(name=t["name"], config=t["config"], reference=t["name"] == reference)
        comp = t.get("complexity") or {}
        row["params"] = comp.get("Parameters", na(comp.get("Note", "not counted")))
        row["macs"] = comp.get("MACs", na(comp.get("Note", "not counted")))
        row["ms"], row["ratio"] = {}, {}
        for runtime in RUNTIMES:
            for precision in PRECISIONS:
                key = f"{runtime}/{precision}"
                ms = t["latency"].get(key, na("not measured"))
                row["ms"][key] = ms
                row["ratio"][key] = (
                    ms / ref_ms
                    if isinstance(ms, float) and isinstance(ref_ms, float)
                    else na("no reference ORT fp32 time" if isinstance(ms, float) else "no time")
                )
        row["exports"] = dict(t.get("exports") or {})  # per file: parity passed, worst relative error
        row["int8_speedup"], row["int8_drop"] = {}, {}
        for runtime in RUNTIMES:
            fp32, int8 = row["ms"][f"{runtime}/fp32"], row["ms"][f"{runtime}/int8"]
            row["int8_speedup"][runtime] = (
                fp32 / int8
                if isinstance(fp32, float) and isinstance(int8, float)
                else na("no fp32/int8 time pair")
            )
            got_fp32 = t["deployed"].get(f"{runtime}/fp32")
            got_int8 = t["deployed"].get(f"{runtime}/int8")
            if is_na(got_int8) or is_na(got_fp32) or got_int8 is None or got_fp32 is None:
                reason = got_int8 if is_na(got_int8) else got_fp32 if is_na(got_fp32) else na("not evaluated")
                row["int8_drop"][runtime] = reason
            else:
                row["int8_drop"][runtime] = {
                    task: _metric_drop(got_int8, got_fp32, m) for task, m in ROBUST_METRICS.items()
                }
        clean = [m for m in (t.get("clean") or {}).values() if isinstance(m, Mapping)]
        no_clean = t.get("clean_reason") or na("not measured")
        row["clean"] = {
            m: mean_std([c[m] for c in clean]) if clean and all(m in c for c in clean) else no_clean
            for m in CLEAN_METRICS
        }
        robust = t.get("robustness")
        if robust is None or is_na(robust):
            row["mce"] = {task: robust or na("not measured") for task in ROBUST_METRICS}
            row["adv_drop"] = {head: robust or na("not measured") for head in ATTACK_TARGET_METRIC}
        else:
            row["mce"] = _ce_summary(robust, ref_robust)
            row["adv_drop"] = _attack_drops(robust)
        shares = t.get("shares")
        row["shares"] = {
            "onnxruntime": shares if shares is not None else na("not measured"),
            "openvino": na("OpenVINO fuses layers and gives no per-layer time here"),
            "executorch": na("ExecuTorch's XNNPACK delegate gives no per-layer time here"),
        }
        rows.append(row)
    return rows


def _attack_drops(results: Mapping[str, Any]) -> dict[str, Any]:
    """Per head: clean minus attacked value of its own task's metric (FGSM at the first eps)."""
    attacks = results.get("attacks") or {}
    fgsm = attacks.get("fgsm") or {}
    if not fgsm:
        return {head: na("no attack run") for head in ATTACK_TARGET_METRIC}
    label = next(iter(fgsm))
    out: dict[str, Any] = {}
    for head, metric in ATTACK_TARGET_METRIC.items():
        got = fgsm[label].get(head)
        if got is None or metric not in got or metric not in results["clean"]:
            out[head] = na(f"no {metric} under an attack on {head}")
        else:
            out[head] = float(results["clean"][metric]) - float(got[metric])
    return out


# ---- the report --------------------------------------------------------------------------------------
def _num(value: Any, fmt: str = "{:.3f}") -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a: not measured"
    return fmt.format(value)


def _triple(values: Mapping[str, Any], keys: Sequence[str], fmt: str = "{:+.3f}") -> str:
    if is_na(values):
        return values
    return " / ".join(_num(values.get(k), fmt) for k in keys)


def table_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and cells of the scorecard table."""
    headers = ["trunk", "Mparams", "GMACs"]
    for runtime in RUNTIMES:
        for precision in PRECISIONS:
            headers.append(f"{RUNTIME_LABELS[runtime]} {precision} ms (x ref)")
    headers += [
        "int8 speed-up ORT / OV / ET",
        "int8 drop top-1 / mAP@0.5 / IDF1: ORT; OV; ET",
        *[f"{label} (clean)" for label in CLEAN_METRICS.values()],
        "mCE top-1 / mAP@0.5 / IDF1",
        "FGSM drop cls / det / emb",
        "SE / hswish / attention share (ORT fp32)",
    ]
    cells = []
    for r in rows:
        line = [
            r["name"] + (" (ref)" if r["reference"] else ""),
            _num(r["params"] / 1e6 if isinstance(r["params"], (int, float)) else r["params"], "{:.2f}"),
            _num(r["macs"] / 1e9 if isinstance(r["macs"], (int, float)) else r["macs"], "{:.3f}"),
        ]
        for key, ms in r["ms"].items():
            ratio = r["ratio"][key]
            line.append(
                f"{ms:.2f} ({ratio:.2f}x)" if isinstance(ms, float) and isinstance(ratio, float) else _num(ms)
            )
        line.append(" / ".join(_num(r["int8_speedup"][rt], "{:.2f}x") for rt in RUNTIMES))
        line.append("; ".join(_triple(r["int8_drop"][rt], list(ROBUST_METRICS)) for rt in RUNTIMES))
        for metric in CLEAN_METRICS:
            c = r["clean"][metric]
            line.append(c if is_na(c) else f"{c['mean']:.3f} +- {c['std']:.3f}")
        line.append(_triple(r["mce"], list(ROBUST_METRICS), "{:.3f}"))
        line.append(_triple(r["adv_drop"], list(ATTACK_TARGET_METRIC), "{:+.3f}"))
        shares = r["shares"]["onnxruntime"]
        line.append(shares if is_na(shares) else " / ".join(f"{100 * shares[k]:.1f} %" for k in SHARE_KINDS))
        cells.append(line)
    return headers, cells


def format_markdown(
    rows: Sequence[Mapping[str, Any]], budget: Mapping[str, Any], plots: Sequence[str] = ()
) -> str:
    """``scorecard.md``: the budget, the table, how to read it, the plots."""
    from mtmnv3.core.profiling import format_table

    headers, cells = table_rows(rows)
    lines = ["# Trunk scorecard", "", "## Budget", ""]
    lines += [f"- {key}: {value}" for key, value in budget.items()]
    lines += ["", "## Table", "", format_table(headers, cells), ""]
    lines += [
        "- ms: median model time per call (batch 1) of each deployed file, all files timed in the same "
        "interleaved rounds of one process; (x ref): ratio to the reference trunk's ONNX Runtime fp32 file.",
        "- int8 speed-up: the runtime's fp32 ms over its int8 ms (its own quantizer: ORT static QDQ, NNCF, "
        "XNNPACKQuantizer); int8 drop: the int8 file's metric minus the fp32 file's, same runtime, same frames. "
        "int8 files are kept when their raw outputs miss `mtmnv3 export`'s parity bound (scorecard.json gives "
        "the worst relative error per file); fp32 files must pass it.",
        "- clean: PyTorch fp32, mean +- std over training seeds x held-out test splits.",
        "- mCE: corruption error summed over severities, over the reference trunk's, averaged over the "
        "corruptions (Hendrycks & Dietterich 2019); the reference is 1.000, lower is more robust.",
        "- FGSM drop: clean minus attacked value of the attacked head's own task metric (cls: top-1, "
        "det: mAP@0.5, emb: IDF1).",
        "- SE / hswish / attention share: of ONNX Runtime's summed kernel time, fp32 graph run as exported "
        "(no fusion); OpenVINO and ExecuTorch give no per-layer times here.",
    ]
    for plot in plots:
        lines += ["", f"![{Path(plot).stem}]({Path(plot).name})"]
    return "\n".join(lines) + "\n"


def pareto_front(points: Sequence[tuple[float, float]], higher_is_better: bool = True) -> list[int]:
    """Indices of the points no other point beats (lower x and better y), sorted by x."""
    order = sorted(
        range(len(points)), key=lambda i: (points[i][0], -points[i][1] if higher_is_better else points[i][1])
    )
    front, best = [], None
    for i in order:
        y = points[i][1]
        if best is None or (y > best if higher_is_better else y < best):
            front.append(i)
            best = y
    return front


def plot_pareto(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike) -> list[str]:
    """``pareto_accuracy.png`` (clean metrics against ORT fp32 ms) and ``pareto_robustness.png``
    (mCE against ORT fp32 ms); the Pareto front of each panel drawn as a line. Returns the paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from mtmnv3.core.fileio import atomic_open

    panels = {
        "pareto_accuracy.png": [
            (label, lambda r, m=m: r["clean"][m]["mean"] if not is_na(r["clean"][m]) else None, True)
            for m, label in CLEAN_METRICS.items()
        ],
        "pareto_robustness.png": [
            (
                f"mCE {m} (lower is better)",
                lambda r, t=t: r["mce"][t] if isinstance(r["mce"][t], float) else None,
                False,
            )
            for t, m in ROBUST_METRICS.items()
        ],
    }
    written = []
    for name, metrics in panels.items():
        fig = Figure(figsize=(4.2 * len(metrics), 4.0))
        FigureCanvasAgg(fig)
        for k, (label, value, higher) in enumerate(metrics):
            ax = fig.add_subplot(1, len(metrics), k + 1)
            pts, names = [], []
            for r in rows:
                ms, y = r["ms"]["onnxruntime/fp32"], value(r)
                if isinstance(ms, float) and y is not None:
                    pts.append((ms, float(y)))
                    names.append(r["name"])
            for (x, y), n in zip(pts, names):
                ax.scatter([x], [y], c="k", s=18)
                ax.annotate(n, (x, y), fontsize=6, xytext=(3, 2), textcoords="offset points")
            front = pareto_front(pts, higher)
            if front:
                ax.plot(
                    [pts[i][0] for i in front], [pts[i][1] for i in front], "r-", lw=1, label="Pareto front"
                )
                ax.legend(fontsize=6)
            ax.set_xlabel("ONNX Runtime fp32 ms (batch 1)")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, name)
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=110)
        written.append(path)
    return written
