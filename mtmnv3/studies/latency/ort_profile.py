"""Where an ONNX Runtime graph spends its time, operator by operator.

ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) records every
kernel call of every run. :func:`profile_ops` runs a model with it on, drops the
warm-up runs and sums the kernel time per operator type, so an fp32 graph and
its int8 graph can be set side by side (:func:`op_profile_table`): which
kernels got faster, which got slower, and what the int8 graph added (the
QuantizeLinear/DequantizeLinear steps at float boundaries, layout reorders).

The profiler adds a little time to every kernel call; compare shares and
fp32/int8 pairs from the same run, not these times with unprofiled latencies.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OpTime", "OpProfile", "profile_nodes", "profile_ops", "median_profile", "op_profile_table"]


@dataclass(frozen=True)
class OpTime:
    """The kernel time of one operator type, per run.

    Attributes:
        op_type: the kernel's operator name as ONNX Runtime runs it (after
            graph optimisation: fused and layout-transformed nodes included);
            convolutions carry their kind, e.g. ``'QLinearConv (depthwise)'``.
        ms: summed kernel time per run, milliseconds (median over runs).
        nodes: how many distinct nodes of this type ran.
    """

    op_type: str
    ms: float
    nodes: int


@dataclass(frozen=True)
class OpProfile:
    """One model's profile.

    Attributes:
        ops: per operator type, slowest first.
        run_ms: median whole-run time as the profiler saw it (kernels plus
            the executor's own work between them).
        runs: profiled runs (after warm-up).
        threads: intra-op threads.
    """

    ops: tuple[OpTime, ...]
    run_ms: float
    runs: int
    threads: int

    @property
    def kernel_ms(self) -> float:
        """Summed kernel time per run."""
        return sum(o.ms for o in self.ops)


def profile_ops(
    path: str | os.PathLike, example: np.ndarray, threads: int = 1, runs: int = 20, warmup: int = 5
) -> OpProfile:
    """Run ``path`` on ``example`` with ONNX Runtime's profiler and sum kernel time per op type.

    Args:
        path: an ``.onnx`` file.
        example: one input batch (float32, the model's input shape).
        threads: intra-op threads.
        runs: profiled runs, after ``warmup`` runs that are left out.

    Raises:
        FileNotFoundError: no such model.
        ValueError: ``runs`` < 1 or ``warmup`` < 0.
    """
    events, weights = _profile_events(path, example, threads, runs, warmup)
    return _summarise(events, warmup, threads, weights)


def _profile_events(
    path: str | os.PathLike,
    example: np.ndarray,
    threads: int,
    runs: int,
    warmup: int,
    optimization: str | None = None,
) -> tuple[list[dict], dict[str, list[int]]]:
    """The profiler's events of ``warmup + runs`` runs, and the optimised graph's convolution weight shapes."""
    from mtmnv3.runtime.ort_runtime import ORT_LOG_ERRORS_ONLY, make_session

    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    with tempfile.TemporaryDirectory() as tmp:
        # The graph as it runs (fused, layout-transformed) is saved too: where
        # prepacked int8 kernels do not report their weight's shape, it is read
        # from there. Errors-only logging hides its "hardware-specific graph" notice.
        session = make_session(
            path,
            threads,
            allow_spinning=True,
            log_severity=ORT_LOG_ERRORS_ONLY,
            profile_prefix=Path(tmp) / "ort_profile",
            optimized_model_path=Path(tmp) / "optimized.onnx",
            **({} if optimization is None else {"optimization": optimization}),
        )
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(example, np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        weights = _conv_weight_shapes(Path(tmp) / "optimized.onnx")
    return events, weights


def profile_nodes(
    path: str | os.PathLike,
    example: np.ndarray,
    threads: int = 1,
    runs: int = 20,
    warmup: int = 5,
    optimization: str = "ORT_DISABLE_ALL",
) -> dict[str, float]:
    """Kernel time per graph node (median ms per run), warm-up runs left out.

    With the default ``optimization='ORT_DISABLE_ALL'`` the graph runs as
    written, so the node names are the exported file's and every node's time
    is its own (no fused kernels that hide an activation inside a convolution).
    A function operator that ONNX Runtime expands when it creates the kernels
    (``HardSwish``) appears as the nodes it expands to (``HardSigmoid_<n>``,
    ``Mul_<n>``), names that are not in the file.

    Raises:
        FileNotFoundError: no such model.
        ValueError: ``runs`` < 1 or ``warmup`` < 0, or no run after the warm-up.
    """
    events, _ = _profile_events(path, example, threads, runs, warmup, optimization)
    model_runs, kernels = _profiled_kernels(events, warmup)
    per_node: dict[str, list[float]] = {}
    for i, e in kernels:
        node = e["name"][: -len("_kernel_time")]
        per_node.setdefault(node, [0.0] * len(model_runs))[i] += e["dur"] / 1000.0
    return {node: float(np.median(times)) for node, times in per_node.items()}


def _profiled_kernels(
    events: Sequence[Mapping], warmup: int
) -> tuple[list[Mapping], list[tuple[int, Mapping]]]:
    """The runs after the first ``warmup``, and each of their kernel events with its run's index.

    Raises:
        ValueError: no run after the warm-up.
    """
    model_runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup:]
    if not model_runs:
        raise ValueError("the profile holds no runs after the warm-up")
    starts = np.array([r["ts"] for r in model_runs])
    ends = starts + np.array([r["dur"] for r in model_runs])
    kernels = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        i = int(np.searchsorted(starts, e["ts"], side="right")) - 1
        if i >= 0 and e["ts"] <= ends[i]:  # not a warm-up run's kernel
            kernels.append((i, e))
    return model_runs, kernels


def _conv_weight_shapes(path: Path) -> dict[str, list[int]]:
    """Node name -> weight shape of every convolution in a saved (optimised) graph."""
    import onnx

    if not path.is_file():
        return {}
    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    shapes = {}
    for node in graph.node:
        index = _CONV_WEIGHT_INPUT.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in inits:
            shapes[node.name] = inits[node.input[index]]
    return shapes


def _summarise(
    events: Sequence[Mapping], warmup: int, threads: int, weights: Mapping[str, Sequence[int]] | None = None
) -> OpProfile:
    """Per-op kernel time per run from profiler events, the first ``warmup`` runs left out.

    ``weights`` (node name -> weight shape) gives convolutions' kinds where
    the events do not (prepacked int8 weights).
    """
    model_runs, kernels = _profiled_kernels(events, warmup)
    per_run: list[dict[str, float]] = [{} for _ in model_runs]
    nodes: dict[str, set[str]] = {}
    for i, e in kernels:
        args = e.get("args", {})
        op = args.get("op_name", "?")
        node = e["name"][: -len("_kernel_time")]
        kind = _conv_kind(op, args.get("input_type_shape", []), (weights or {}).get(node))
        op = f"{op} ({kind})" if kind else op
        per_run[i][op] = per_run[i].get(op, 0.0) + e["dur"] / 1000.0
        nodes.setdefault(op, set()).add(e["name"])
    ops = [
        OpTime(op, float(np.median([r.get(op, 0.0) for r in per_run])), len(names))
        for op, names in nodes.items()
    ]
    ops.sort(key=lambda o: -o.ms)
    run_ms = float(np.median([r["dur"] for r in model_runs])) / 1000.0
    return OpProfile(tuple(ops), run_ms, len(model_runs), threads)


def median_profile(profiles: Sequence[OpProfile]) -> OpProfile:
    """One profile from several (e.g. fresh sessions profiled in turn): per op
    type the median time, an op absent from a profile counting as 0 there."""
    if not profiles:
        raise ValueError("no profiles to combine")
    ops = []
    for op in {o.op_type for p in profiles for o in p.ops}:
        found = [next((o for o in p.ops if o.op_type == op), None) for p in profiles]
        ms = float(np.median([o.ms if o else 0.0 for o in found]))
        ops.append(OpTime(op, ms, max(o.nodes for o in found if o)))
    ops.sort(key=lambda o: -o.ms)
    run_ms = float(np.median([p.run_ms for p in profiles]))
    return OpProfile(tuple(ops), run_ms, sum(p.runs for p in profiles), profiles[0].threads)


#: Convolution kernels, and which of their inputs holds the weight.
_CONV_WEIGHT_INPUT = {"Conv": 1, "FusedConv": 1, "NhwcFusedConv": 1, "QLinearConv": 3, "ConvInteger": 1}


def _conv_kind(op: str, inputs: Sequence[Mapping], weight: Sequence[int] | None = None) -> str:
    """'depthwise', 'pointwise' (1x1) or 'dense' for a convolution kernel; '' otherwise.

    Read from the weight's shape ``(out, in / groups, kh, kw)``: ``weight`` if
    given, else the event's ``input_type_shape``. Depthwise when one input
    channel per group and a kernel wider than 1.
    """
    index = _CONV_WEIGHT_INPUT.get(op)
    if index is None:
        return ""
    shape = weight
    if shape is None and len(inputs) > index:
        shape = next(iter(inputs[index].values()), None)
    if not shape or len(shape) != 4:
        return ""
    _, per_group, kh, kw = shape
    if kh == kw == 1:
        return "pointwise"
    return "depthwise" if per_group == 1 else "dense"


def op_profile_table(profiles: Mapping[str, OpProfile]) -> str:
    """A markdown table: one row per op type, ``ms (nodes)`` and share of kernel time per model.

    With two models (say fp32, int8) a last column gives the second's kernel
    time minus the first's, per op type.
    """
    names = list(profiles)
    if not names:
        raise ValueError("no profiles to tabulate")
    ops: list[str] = []
    for p in profiles.values():
        ops += [o.op_type for o in p.ops if o.op_type not in ops]
    by = {n: {o.op_type: o for o in p.ops} for n, p in profiles.items()}
    pair = len(names) == 2
    head = ["op type"] + [f"{n} ms (nodes)" for n in names] + [f"{n} share" for n in names]
    head += [f"{names[1]} - {names[0]} ms"] if pair else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(n: str, op: str) -> str:
        o = by[n].get(op)
        return f"{o.ms:.3f} ({o.nodes})" if o else "-"

    def share(n: str, op: str) -> str:
        o = by[n].get(op)
        return f"{100 * o.ms / profiles[n].kernel_ms:.1f}%" if o and profiles[n].kernel_ms > 0 else "-"

    for op in ops:
        row = [op] + [cell(n, op) for n in names] + [share(n, op) for n in names]
        if pair:
            a, b = (by[n][op].ms if op in by[n] else 0.0 for n in names)
            row.append(f"{b - a:+.3f}")
        lines.append("| " + " | ".join(row) + " |")
    total = ["**kernels**"] + [f"{profiles[n].kernel_ms:.3f}" for n in names] + ["100%"] * len(names)
    total += [f"{profiles[names[1]].kernel_ms - profiles[names[0]].kernel_ms:+.3f}"] if pair else []
    lines.append("| " + " | ".join(total) + " |")
    run = ["**whole run**"] + [f"{profiles[n].run_ms:.3f}" for n in names] + [""] * len(names)
    run += [f"{profiles[names[1]].run_ms - profiles[names[0]].run_ms:+.3f}"] if pair else []
    lines.append("| " + " | ".join(run) + " |")
    return "\n".join(lines)
