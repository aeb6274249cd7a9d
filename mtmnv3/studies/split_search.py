"""Stage-split searches over a latency table.

* :func:`balanced_stages`: contiguous partition of the trunk's blocks into
  ``k`` pipeline stages that minimises the slowest stage (exact dynamic
  programme), as a :class:`~mtmnv3.backbone.plan.StagePlan`.
* :func:`best_device_server_split`: where to cut the trunk between a device
  and a server, under a bandwidth + round-trip model.
* :func:`fit_budget`: which heads, and how deep a trunk prefix, fit a
  per-frame latency budget.

All three read costs through :meth:`LatencyTable.segment_ms`, so a stage run
as one call is predicted under the table's prediction model (block sum,
minus per-call overhead or measured block-boundary savings), exactly as the
whole-trunk prediction is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.core.profiling import format_table
from mtmnv3.studies.latency import LatencyTable

__all__ = [
    "balanced_partition",
    "balanced_stages",
    "SplitPoint",
    "DeviceServerSplit",
    "best_device_server_split",
    "transfer_ms",
    "BudgetFit",
    "fit_budget",
]

#: Bytes per activation element sent as fp32, or int8-compressed.
FP32_BYTES = 4
INT8_BYTES = 1
#: More heads than this make the exhaustive subset search in fit_budget too slow.
MAX_BUDGET_HEADS = 16


# ---------------------------------------------------------------------------
# (a) balanced pipeline stages
# ---------------------------------------------------------------------------
def balanced_partition(
    costs: Sequence[float] | int, k: int, segment_cost: Callable[[int, int], float] | None = None
) -> tuple[list[int], float]:
    """Split ``n`` items into ``k`` contiguous non-empty groups minimising the largest group cost.

    Exact dynamic programme, ``O(k n^2)``: ``best[j][i]`` is the smallest
    possible maximum over the first ``i`` items in ``j`` groups. Ties go to
    the earliest cut found, so results are deterministic.

    Args:
        costs: per-item costs (the group cost is their sum), or the item count
            ``n`` when ``segment_cost`` is given.
        k: number of groups, ``1 <= k <= n``.
        segment_cost: cost of items ``[a, b)`` as one group (default: sum of costs).

    Returns:
        ``(cuts, bottleneck)``: the ``k - 1`` indices where groups 1.. start,
        and the cost of the largest group.
    """
    if isinstance(costs, int):
        n = costs
        if segment_cost is None:
            raise ValueError("give per-item costs, or an item count with segment_cost")
    else:
        values = [float(c) for c in costs]
        n = len(values)
        if any(not math.isfinite(c) or c < 0 for c in values):
            raise ValueError(f"costs must be finite and >= 0, got {values}")
        if segment_cost is None:
            prefix = [0.0, *itertools.accumulate(values)]

            def segment_cost(a: int, b: int) -> float:
                return prefix[b] - prefix[a]

    if n < 1:
        raise ValueError("need at least one item to partition")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in 1..{n} (the number of blocks), got {k!r}")

    inf = math.inf
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    arg = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for j in range(1, k + 1):
        for i in range(j, n - (k - j) + 1):
            for m in range(j - 1, i):
                value = max(best[j - 1][m], segment_cost(m, i))
                if value < best[j][i]:
                    best[j][i], arg[j][i] = value, m
    cuts, i = [], n
    for j in range(k, 0, -1):
        i = arg[j][i]
        cuts.append(i)
    cuts = sorted(cuts)[1:]  # drop the leading 0
    return cuts, best[k][n]


def balanced_stages(table: LatencyTable, k: int) -> StagePlan:
    """The ``k``-stage pipeline plan whose slowest stage is fastest.

    Args:
        table: the latency table (a stage costs ``table.segment_ms(start, end)``).
        k: number of stages, ``1 <= k <= table.num_blocks``.

    Returns:
        A :class:`StagePlan` named ``'balanced-{k}'`` with ``predicted_ms`` per
        stage and the table's device profile.
    """
    if not isinstance(table, LatencyTable):
        raise TypeError(f"expected a LatencyTable, got {type(table).__name__}")
    n = table.num_blocks
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in 1..{n} (the table has {n} blocks), got {k!r}")
    cuts, bottleneck = balanced_partition(n, k, table.segment_ms)
    bounds = [0, *cuts, n]
    predicted = [table.segment_ms(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    return _table_plan(
        table,
        n,
        cuts,
        f"balanced-{k}",
        predicted,
        {
            "search": "balanced",
            "objective": "min max stage ms (exact DP)",
            "bottleneck_ms": bottleneck,
            "variant": table.variant,
            "predicted_total_ms": table.predicted_total_ms,
            "measured_total_ms": table.measured_total_ms,
        },
    )


def _table_plan(
    table: LatencyTable,
    num_blocks: int,
    cuts: Sequence[int],
    name: str,
    predicted: Sequence[float],
    meta: Mapping[str, Any],
    placement: Sequence[str] | None = None,
) -> StagePlan:
    """A StagePlan over the table's blocks, recording the table's arch and device profile."""
    return StagePlan.from_cuts(
        num_blocks,
        list(cuts),
        name=name,
        arch=table.arch,
        device_profile=table.profile.to_dict(),
        predicted_ms=list(predicted),
        placement=placement,
        meta=dict(meta),
    )


# ---------------------------------------------------------------------------
# (b) device / server split
# ---------------------------------------------------------------------------
def transfer_ms(num_bytes: float, bandwidth_mbps: float, rtt_ms: float) -> float:
    """Time to send ``num_bytes`` at ``bandwidth_mbps`` (megabits/s) plus one round trip."""
    return num_bytes * 8 / (bandwidth_mbps * 1e6) * 1e3 + rtt_ms


@dataclass(frozen=True)
class SplitPoint:
    """One candidate cut: blocks ``[0, cut)`` on the device, ``[cut, n)`` on the server."""

    cut: int
    device_ms: float
    transfer_bytes: int
    transfer_ms: float
    server_ms: float

    @property
    def total_ms(self) -> float:
        return self.device_ms + self.transfer_ms + self.server_ms


@dataclass(frozen=True)
class DeviceServerSplit:
    """The whole latency curve over cut points and its minimum.

    Attributes:
        curve: one :class:`SplitPoint` per cut ``0..n`` (``0``: all on the
            server, the input image is sent; ``n``: all on the device, nothing sent).
        best: the point with the smallest total (earliest on ties).
        num_blocks: trunk blocks.
        meta: the bandwidth model's parameters.
    """

    curve: tuple[SplitPoint, ...]
    best: SplitPoint
    num_blocks: int
    meta: dict[str, Any] = field(default_factory=dict)

    def to_plan(self, table: LatencyTable) -> StagePlan:
        """The best split as a StagePlan with placement ``device``/``server``."""
        b, n = self.best, self.num_blocks
        if b.cut in (0, n):
            cuts, placement, predicted = [], ["server" if b.cut == 0 else "device"], [b.total_ms]
        else:
            cuts, placement, predicted = [b.cut], ["device", "server"], [b.device_ms, b.server_ms]
        return _table_plan(
            table,
            n,
            cuts,
            f"device-server-{b.cut}",
            predicted,
            {
                "search": "device-server",
                **self.meta,
                "cut": b.cut,
                "transfer_bytes": b.transfer_bytes,
                "transfer_ms": b.transfer_ms,
                "total_ms": b.total_ms,
                "variant": table.variant,
            },
            placement,
        )

    def format(self) -> str:
        rows = [
            [
                p.cut,
                p.device_ms,
                p.transfer_bytes,
                p.transfer_ms,
                p.server_ms,
                p.total_ms,
                "<- best" if p.cut == self.best.cut else "",
            ]
            for p in self.curve
        ]
        return format_table(["cut", "device ms", "bytes", "transfer ms", "server ms", "total ms", ""], rows)


def best_device_server_split(
    table: LatencyTable,
    server_table_or_speedup: LatencyTable | float,
    bandwidth_mbps: float,
    rtt_ms: float = 0.0,
    int8_activations: bool = False,
) -> DeviceServerSplit:
    """Latency of every device/server cut point and the best one.

    For cut ``c``: device time of blocks ``[0, c)`` + transfer of the tensor
    crossing the cut (``C*H*W*batch`` elements, 4 bytes each, or 1 byte when
    ``int8_activations``; the input image when ``c == 0``) + one round trip
    + server time of blocks ``[c, n)``. ``c == n`` runs everything on the
    device and sends nothing. The returned results are assumed small (their
    transfer is covered by the round trip).

    Args:
        table: the device's latency table.
        server_table_or_speedup: the server's table for the same trunk, or a
            factor by which the server runs every block faster.
        bandwidth_mbps: uplink bandwidth in megabits per second (> 0).
        rtt_ms: network round-trip time in ms (>= 0).
        int8_activations: send int8-compressed activations.
    """
    if not isinstance(table, LatencyTable):
        raise TypeError(f"expected a LatencyTable, got {type(table).__name__}")
    if not (
        isinstance(bandwidth_mbps, (int, float)) and bandwidth_mbps > 0 and math.isfinite(bandwidth_mbps)
    ):
        raise ValueError(f"bandwidth_mbps must be a positive number, got {bandwidth_mbps!r}")
    if not (isinstance(rtt_ms, (int, float)) and rtt_ms >= 0):
        raise ValueError(f"rtt_ms must be >= 0, got {rtt_ms!r}")
    n = table.num_blocks
    server_segment = _server_segment(table, server_table_or_speedup)
    width = INT8_BYTES if int8_activations else FP32_BYTES
    batch = table.profile.batch
    c_in, h_in, w_in = table.blocks[0].in_shape
    elements = [c_in * h_in * w_in] + [b.out_elements for b in table.blocks]

    curve = []
    for cut in range(n + 1):
        device = table.segment_ms(0, cut) if cut > 0 else 0.0
        server = server_segment(cut, n) if cut < n else 0.0
        sent = elements[cut] * batch * width if cut < n else 0
        wire = transfer_ms(sent, bandwidth_mbps, rtt_ms) if cut < n else 0.0
        curve.append(SplitPoint(cut, device, sent, wire, server))
    best = min(curve, key=lambda p: p.total_ms)
    speedup = server_table_or_speedup if not isinstance(server_table_or_speedup, LatencyTable) else None
    meta = {
        "bandwidth_mbps": float(bandwidth_mbps),
        "rtt_ms": float(rtt_ms),
        "int8_activations": bool(int8_activations),
        "server_speedup": speedup,
        "server_profile": (
            server_table_or_speedup.profile.to_dict()
            if isinstance(server_table_or_speedup, LatencyTable)
            else None
        ),
    }
    return DeviceServerSplit(tuple(curve), best, n, meta)


def _server_segment(table: LatencyTable, server: LatencyTable | float) -> Callable[[int, int], float]:
    if isinstance(server, LatencyTable):
        if server.num_blocks != table.num_blocks:
            raise ValueError(
                f"server table has {server.num_blocks} blocks but the device table has {table.num_blocks}"
            )
        return server.segment_ms
    if isinstance(server, bool) or not isinstance(server, (int, float)) or not server > 0:
        raise ValueError(f"server speed-up must be a positive number or a LatencyTable, got {server!r}")
    return lambda a, b: table.segment_ms(a, b) / float(server)


# ---------------------------------------------------------------------------
# (c) per-frame budget
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetFit:
    """Which heads and which trunk depth fit a per-frame budget.

    Attributes:
        heads: the chosen heads (most total weight; cheapest on ties).
        depth_stage: the deepest trunk stage that must run (-1: none).
        depth_blocks: trunk blocks that run (``[0, depth_blocks)``).
        trunk_ms / heads_ms / total_ms: predicted costs of the choice.
        budget_ms: the budget.
        dropped: heads that did not fit.
        stage_prefix_ms: predicted trunk cost up to and including each stage.
    """

    heads: tuple[str, ...]
    depth_stage: int
    depth_blocks: int
    trunk_ms: float
    heads_ms: float
    total_ms: float
    budget_ms: float
    dropped: tuple[str, ...]
    stage_prefix_ms: tuple[float, ...]

    @property
    def slack_ms(self) -> float:
        return self.budget_ms - self.total_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "heads": list(self.heads),
            "depth_stage": self.depth_stage,
            "depth_blocks": self.depth_blocks,
            "trunk_ms": self.trunk_ms,
            "heads_ms": self.heads_ms,
            "total_ms": self.total_ms,
            "budget_ms": self.budget_ms,
            "slack_ms": self.slack_ms,
            "dropped": list(self.dropped),
            "stage_prefix_ms": list(self.stage_prefix_ms),
        }

    def format(self) -> str:
        chosen = ", ".join(self.heads) or "(none)"
        dropped = ", ".join(self.dropped) or "(none)"
        return "\n".join(
            [
                f"budget {self.budget_ms:.3f} ms: run heads {chosen}; dropped {dropped}",
                f"trunk to stage {self.depth_stage} (blocks 0..{self.depth_blocks - 1}): {self.trunk_ms:.3f} ms, "
                f"heads {self.heads_ms:.3f} ms, total {self.total_ms:.3f} ms, slack {self.slack_ms:.3f} ms",
                "trunk cost to the end of each stage: "
                + ", ".join(f"s{i} {v:.3f}" for i, v in enumerate(self.stage_prefix_ms)),
            ]
        )


def fit_budget(
    table: LatencyTable,
    head_costs: Mapping[str, float] | None,
    budget_ms: float,
    taps_needed: Mapping[str, Sequence[int]] | None = None,
    weights: Mapping[str, float] | None = None,
) -> BudgetFit:
    """Pick the heads (and so the trunk depth) that fit ``budget_ms``.

    The trunk runs up to the deepest stage any chosen head taps; the cost is
    that trunk prefix (one call) plus the chosen heads. Every subset of heads
    is tried; the one with the largest total weight that fits wins, the
    cheaper on ties.

    Args:
        table: the latency table (its blocks' ``stage`` fields define the taps).
        head_costs: ``{head: ms}``; None takes every head measured in the table.
        budget_ms: the per-frame budget (> 0).
        taps_needed: ``{head: stage indices}``; None takes the table's head taps.
        weights: ``{head: importance}`` (default 1 each).
    """
    if not (isinstance(budget_ms, (int, float)) and budget_ms > 0 and math.isfinite(budget_ms)):
        raise ValueError(f"budget_ms must be a positive number, got {budget_ms!r}")
    costs = dict(head_costs) if head_costs is not None else {h.name: h.median_ms for h in table.heads}
    taps = dict(taps_needed) if taps_needed is not None else {h.name: h.taps for h in table.heads}
    weights = dict(weights) if weights is not None else {}
    if len(costs) > MAX_BUDGET_HEADS:
        raise ValueError(f"at most {MAX_BUDGET_HEADS} heads are supported, got {len(costs)}")
    for name, cost in costs.items():
        if not (isinstance(cost, (int, float)) and cost >= 0):
            raise ValueError(f"head {name!r} cost must be >= 0 ms, got {cost!r}")
        if name not in taps or not taps[name]:
            raise ValueError(
                f"head {name!r} needs its trunk taps (taps_needed[{name!r}]), got {taps.get(name)!r}"
            )
        bad = [t for t in taps[name] if not (isinstance(t, int) and 0 <= t < table.num_stages)]
        if bad:
            raise ValueError(f"head {name!r} taps {bad} outside the table's stages 0..{table.num_stages - 1}")
    unknown = sorted(set(weights) - set(costs))
    if unknown:
        raise ValueError(f"weights for unknown heads {unknown}; heads are {sorted(costs)}")

    stage_prefix = tuple(table.segment_ms(0, table.stage_end(s)) for s in range(table.num_stages))
    names = list(costs)
    best: tuple[tuple[float, float], tuple[str, ...], int, float] | None = None
    for r in range(len(names) + 1):
        for subset in itertools.combinations(names, r):
            depth = max((max(taps[h]) for h in subset), default=-1)
            total = (stage_prefix[depth] if depth >= 0 else 0.0) + sum(costs[h] for h in subset)
            if total > budget_ms:
                continue
            key = (sum(weights.get(h, 1.0) for h in subset), -total)
            if best is None or key > best[0]:
                best = (key, subset, depth, total)
    assert best is not None  # the empty subset costs 0 < budget
    _, chosen, depth, total = best
    trunk = stage_prefix[depth] if depth >= 0 else 0.0
    return BudgetFit(
        heads=tuple(chosen),
        depth_stage=depth,
        depth_blocks=table.stage_end(depth) if depth >= 0 else 0,
        trunk_ms=trunk,
        heads_ms=total - trunk,
        total_ms=total,
        budget_ms=float(budget_ms),
        dropped=tuple(h for h in names if h not in chosen),
        stage_prefix_ms=stage_prefix,
    )
