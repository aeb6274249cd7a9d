"""The latency table's records: device profile, per-block and per-head latency, and the table itself.

A :class:`LatencyTable` holds, for one trunk on one :class:`DeviceProfile`
(backend, threads, resolution, dtype), the median latency of every trunk
block on its real input shape, optionally of each head, and of the whole
trunk end to end, so that the sum of the blocks (the *prediction* a stage
search works from) can be checked against the *measurement*
(:func:`~mtmnv3.studies.latency.measure.measure_latency_table`).

**Predicting a segment from its blocks.** A run of blocks as one call is
cheaper than the sum of the blocks run one call each: the sum pays the
backend's fixed per-call cost (Python binding, input/output wrapping,
guards) once per block, and for ORT also a layout conversion at every block
boundary (ORT's NCHWc transformer reorders the activation into its blocked
layout at a session's input and back at its output; a single session keeps
it blocked throughout) and loses fusions across blocks. ``prediction``
selects how a segment ``[a, b)`` (a pipeline stage, a device prefix, the
whole trunk) is predicted:

* ``'sum'``: the sum of the block medians (default for ``eager``, whose
  end-to-end forward still makes one module call per block);
* ``'overhead'``: the sum minus ``(b - a - 1) * call_overhead_ms``, the
  per-call cost of a trivial one-element model;
* ``'boundary'``: the sum minus the measured saving of every boundary
  inside the segment, where the saving at boundary ``i`` is
  ``t(i) + t(i+1) - t(i, i+1)`` and ``t(i, i+1)`` is blocks ``i`` and
  ``i+1`` timed as one call in the same rounds (default for
  ``onnxruntime``, ``openvino``, ``executorch`` and ``compile``; it covers
  the per-call cost, the layout conversions and cross-block fusions, at the
  price of timing, exporting or compiling every pair too; OpenVINO and
  XNNPACK also convert to their blocked/NHWC layouts at a program's edges).

``call_overhead_ms`` is measured and reported for every backend;
``sum_blocks_ms`` keeps the raw sum.

**SE / hard-swish study.** With ``se_study`` every SE block is also timed
without its SE and every hard-swish block with ReLU (per-block
``se_off_ms`` / ``relu_ms``), and the whole trunk is timed as the same two
copies (``measured_se_off_total_ms`` / ``measured_relu_total_ms``), so both
the per-block breakdown and the whole-trunk saving of dropping SE or
hard-swish are on record for each backend and precision.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.core.profiling import format_table

__all__ = [
    "BACKENDS",
    "INT8_BACKENDS",
    "CLOCKS",
    "DEFAULT_PREDICTION",
    "DTYPES",
    "PREDICTIONS",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "BackendUnavailableError",
    "DeviceProfile",
    "BlockLatency",
    "HeadLatency",
    "LatencyTable",
]

TABLE_FORMAT = "mtmnv3.LatencyTable"
TABLE_VERSION = 1
BACKENDS = ("eager", "compile", "onnxruntime", "openvino", "executorch")
#: Backends that measure ``dtype='int8'``: ONNX Runtime static QDQ, OpenVINO
#: with NNCF post-training quantization, ExecuTorch with XNNPACK PT2E.
INT8_BACKENDS = ("onnxruntime", "openvino", "executorch")
#: How segments are predicted from blocks (see the module docstring).
PREDICTIONS = ("sum", "overhead", "boundary")
#: Default prediction model per backend.
DEFAULT_PREDICTION = {
    "eager": "sum",
    "compile": "boundary",
    "onnxruntime": "boundary",
    "openvino": "boundary",
    "executorch": "boundary",
}
#: Timing clocks: 'wall' (perf_counter) or 'cpu' (the calling thread's CPU time).
CLOCKS = ("wall", "cpu")
DTYPES = ("fp32", "int8")
#: Smallest input resolution the trunk's five stride-2 stages accept sensibly.
MIN_RESOLUTION = 32


class BackendUnavailableError(RuntimeError):
    """The requested backend/dtype cannot run here (missing package, compiler, op)."""


# ---------------------------------------------------------------------------
# Device profile
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceProfile:
    """Where and how a latency table is measured.

    Attributes:
        backend: ``'eager'``, ``'compile'`` (``torch.compile``), ``'onnxruntime'``,
            ``'openvino'`` (CPU plugin) or ``'executorch'`` (XNNPACK).
        threads: intra-op threads (torch ``set_num_threads`` / ORT ``intra_op_num_threads`` /
            OpenVINO ``INFERENCE_NUM_THREADS`` / executorch's process-wide threadpool size).
        resolution: square input size in pixels.
        dtype: ``'fp32'``, or ``'int8'`` (one of :data:`INT8_BACKENDS`).
        batch: images per call.
    """

    backend: str = "eager"
    threads: int = 1
    resolution: int = 224
    dtype: str = "fp32"
    batch: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {DTYPES}")
        if self.dtype == "int8" and self.backend not in INT8_BACKENDS:
            raise ValueError(
                f"dtype='int8' is only supported with backends {INT8_BACKENDS}; "
                f"got backend={self.backend!r}. Eager/compiled int8 is not measured by this table."
            )
        for name, low in (("threads", 1), ("resolution", MIN_RESOLUTION), ("batch", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")

    @property
    def name(self) -> str:
        """A short label, e.g. ``'onnxruntime-fp32-1t-224'``."""
        return f"{self.backend}-{self.dtype}-{self.threads}t-{self.resolution}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceProfile:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown device profile fields {unknown}")
        return cls(**d)


# ---------------------------------------------------------------------------
# Table records
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockLatency:
    """One trunk block's description and measured latency.

    ``in_shape``/``out_shape`` are ``(C, H, W)`` at the profile's resolution;
    ``macs`` are at that resolution too. ``se_off_ms`` (SE blocks) and
    ``relu_ms`` (hard-swish blocks) are filled by the SE/activation study:
    the same block timed with its SE removed, or with hard-swish replaced by
    ReLU, in the same rounds as ``median_ms``. ``pair_ms``/``pair_min_ms``
    (all but the last block, with ``prediction='boundary'``) time this block
    and the next one as a single call.
    """

    index: int
    name: str
    stage: int
    channels: int
    stride: int
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    macs: int
    params: int
    kernel: int
    se: bool
    activation: str
    median_ms: float
    p90_ms: float
    min_ms: float
    se_off_ms: float | None = None
    relu_ms: float | None = None
    pair_ms: float | None = None
    pair_min_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "out_shape", tuple(int(v) for v in self.out_shape))

    @property
    def out_elements(self) -> int:
        """Elements of the block's output per image (C*H*W)."""
        c, h, w = self.out_shape
        return c * h * w

    @property
    def se_share(self) -> float | None:
        """Fraction of this block's latency that the SE module costs (None: not studied)."""
        if self.se_off_ms is None or self.median_ms <= 0:
            return None
        return 1.0 - self.se_off_ms / self.median_ms

    @property
    def hswish_share(self) -> float | None:
        """Fraction of this block's latency that hard-swish costs beyond ReLU."""
        if self.relu_ms is None or self.median_ms <= 0:
            return None
        return 1.0 - self.relu_ms / self.median_ms


@dataclass(frozen=True)
class HeadLatency:
    """A head's measured latency and the trunk stage taps it reads."""

    name: str
    taps: tuple[int, ...]
    median_ms: float
    p90_ms: float
    min_ms: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "taps", tuple(int(t) for t in self.taps))


@dataclass(frozen=True)
class LatencyTable:
    """Per-block latency of one trunk on one device profile (versioned JSON).

    Attributes:
        profile: the device profile measured on.
        blocks: one record per trunk block, in order.
        measured_total_ms / measured_total_p90_ms / measured_total_min_ms: the
            whole trunk, end to end (median, 90th percentile, fastest round).
        call_overhead_ms: the backend's per-call overhead (trivial model).
        prediction: how segments are predicted from blocks: ``'sum'``,
            ``'overhead'`` or ``'boundary'`` (see the module docstring).
        heads: per-head latency, if heads were measured.
        variant / arch: what trunk was measured (``variant`` is None for a
            trunk passed as an object).
        host: CPU model, library versions, platform.
        warmup / repeats: warm-up and timed rounds.
        se_study: whether the SE/activation study was run.
        measured_se_off_total_ms / measured_relu_total_ms: the whole trunk
            without SE / with ReLU for hard-swish (median), when the study ran
            and the trunk has SE / hard-swish blocks.
        clock: ``'wall'`` or ``'cpu'`` (calling thread's CPU time), see the module docstring.
        meta: free-form extra information.
    """

    profile: DeviceProfile
    blocks: tuple[BlockLatency, ...]
    measured_total_ms: float
    measured_total_p90_ms: float
    measured_total_min_ms: float
    call_overhead_ms: float
    prediction: str
    heads: tuple[HeadLatency, ...] = ()
    variant: str | None = None
    arch: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    warmup: int = 0
    repeats: int = 0
    se_study: bool = False
    clock: str = "wall"
    meta: dict[str, Any] = field(default_factory=dict)
    measured_se_off_total_ms: float | None = None
    measured_relu_total_ms: float | None = None

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction {self.prediction!r}; expected one of {PREDICTIONS}")
        if self.clock not in ("wall", "cpu"):
            raise ValueError(f"clock must be 'wall' or 'cpu', got {self.clock!r}")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "heads", tuple(self.heads))
        if not self.blocks:
            raise ValueError("a latency table needs at least one block")
        indices = [b.index for b in self.blocks]
        if indices != list(range(len(self.blocks))):
            raise ValueError(f"block indices must be 0..{len(self.blocks) - 1} in order, got {indices}")
        if self.prediction == "boundary":
            missing = [b.index for b in self.blocks[:-1] if b.pair_ms is None or b.pair_min_ms is None]
            if missing:
                raise ValueError(f"prediction='boundary' needs pair timings, but blocks {missing} have none")

    # ---- derived quantities ------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def block_ms(self) -> list[float]:
        """Median latency per block."""
        return [b.median_ms for b in self.blocks]

    def boundary_savings_ms(self, statistic: str = "median") -> list[float]:
        """Per boundary ``i`` (between blocks ``i`` and ``i+1``), what running
        the two as one call saves under the table's prediction model.

        Args:
            statistic: ``'median'`` or ``'min'`` (fastest rounds).
        """
        if statistic not in ("median", "min"):
            raise ValueError(f"statistic must be 'median' or 'min', got {statistic!r}")
        if self.prediction == "sum":
            return [0.0] * (self.num_blocks - 1)
        if self.prediction == "overhead":
            return [self.call_overhead_ms] * (self.num_blocks - 1)
        savings = []
        for a, b in zip(self.blocks, self.blocks[1:]):
            pair = a.pair_ms if statistic == "median" else a.pair_min_ms
            assert pair is not None  # checked in __post_init__
            single = a.median_ms + b.median_ms if statistic == "median" else a.min_ms + b.min_ms
            savings.append(single - pair)
        return savings

    @property
    def sum_blocks_ms(self) -> float:
        """The raw sum of the block medians."""
        return sum(self.block_ms)

    @property
    def predicted_total_ms(self) -> float:
        """The whole trunk predicted from its blocks (see :meth:`segment_ms`)."""
        return self.segment_ms(0, self.num_blocks)

    @property
    def prediction_error(self) -> float:
        """``predicted / measured - 1`` for the whole trunk."""
        return self.predicted_total_ms / self.measured_total_ms - 1.0

    @property
    def predicted_total_min_ms(self) -> float:
        """The whole trunk predicted from the blocks' fastest rounds.

        On a CPU shared with other work, a long call (the whole trunk) is
        preempted more often than a short one (a block), which biases the
        median-based prediction low; the fastest rounds of both are nearly
        free of preemption, so this pair is the contention-robust check.
        """
        return sum(b.min_ms for b in self.blocks) - sum(self.boundary_savings_ms("min"))

    @property
    def prediction_error_min(self) -> float:
        """``predicted / measured - 1`` for the whole trunk, from the fastest rounds."""
        return self.predicted_total_min_ms / self.measured_total_min_ms - 1.0

    @property
    def se_cost_ms(self) -> float | None:
        """Sum over SE blocks of what their SE costs (block minus SE-off copy); None: not studied."""
        studied = [b.median_ms - b.se_off_ms for b in self.blocks if b.se_off_ms is not None]
        return sum(studied) if studied else None

    @property
    def hswish_cost_ms(self) -> float | None:
        """Sum over hard-swish blocks of hard-swish's cost beyond ReLU; None: not studied."""
        studied = [b.median_ms - b.relu_ms for b in self.blocks if b.relu_ms is not None]
        return sum(studied) if studied else None

    @property
    def se_share(self) -> float | None:
        """SE's share of the summed block latency (:attr:`se_cost_ms` / :attr:`sum_blocks_ms`)."""
        cost = self.se_cost_ms
        return None if cost is None else cost / self.sum_blocks_ms

    @property
    def hswish_share(self) -> float | None:
        """Hard-swish's share (beyond ReLU) of the summed block latency."""
        cost = self.hswish_cost_ms
        return None if cost is None else cost / self.sum_blocks_ms

    @property
    def se_trunk_saving(self) -> float | None:
        """``1 - t(trunk without SE) / t(trunk)``: the fraction dropping SE saves end to end."""
        if self.measured_se_off_total_ms is None:
            return None
        return 1.0 - self.measured_se_off_total_ms / self.measured_total_ms

    @property
    def relu_trunk_saving(self) -> float | None:
        """``1 - t(trunk with ReLU) / t(trunk)``: the fraction ReLU instead of hard-swish saves."""
        if self.measured_relu_total_ms is None:
            return None
        return 1.0 - self.measured_relu_total_ms / self.measured_total_ms

    @property
    def num_stages(self) -> int:
        return self.blocks[-1].stage + 1

    def segment_ms(self, start: int, end: int) -> float:
        """Predicted latency of blocks ``start .. end-1`` run as one call."""
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= self.num_blocks):
            raise ValueError(f"need 0 <= start < end <= {self.num_blocks}, got start={start!r}, end={end!r}")
        return sum(self.block_ms[start:end]) - sum(self.boundary_savings_ms()[start : end - 1])

    def stage_end(self, stage: int) -> int:
        """The block index one past the last block of ``stage`` (the table's stage plan)."""
        ends = [b.index + 1 for b in self.blocks if b.stage == stage]
        if not ends:
            raise ValueError(
                f"no block belongs to stage {stage!r}; the table has stages 0..{self.num_stages - 1}"
            )
        return max(ends)

    def head(self, name: str) -> HeadLatency:
        for h in self.heads:
            if h.name == name:
                return h
        raise KeyError(f"no head {name!r} in the table; it has {[h.name for h in self.heads]}")

    # ---- presentation --------------------------------------------------------
    def format_blocks(self) -> str:
        """The per-block table (markdown), with SE/hard-swish shares when studied."""
        headers = ["#", "block", "stage", "out CxHxW", "MMACs", "params", "SE", "act", "median ms", "p90 ms"]
        if self.se_study:
            headers += ["SE share", "hswish share"]
        rows = []
        for b in self.blocks:
            row: list[object] = [
                b.index,
                b.name,
                b.stage,
                "x".join(str(v) for v in b.out_shape),
                b.macs / 1e6,
                b.params,
                "y" if b.se else "",
                b.activation,
                b.median_ms,
                b.p90_ms,
            ]
            if self.se_study:
                row += [_pct(b.se_share), _pct(b.hswish_share)]
            rows.append(row)
        return format_table(headers, rows)

    def format_summary(self) -> str:
        """Predicted vs measured whole-trunk latency, one line each."""
        lines = [
            f"profile: {self.profile.name} (batch {self.profile.batch}), "
            f"{self.repeats} rounds after {self.warmup} warm-up, "
            f"{'thread CPU' if self.clock == 'cpu' else 'wall'} clock",
            f"per-call overhead: {self.call_overhead_ms:.4f} ms; prediction model '{self.prediction}' "
            f"(boundary savings {sum(self.boundary_savings_ms()):.3f} ms)",
            f"sum of blocks:     {self.sum_blocks_ms:.3f} ms",
            f"predicted total:   {self.predicted_total_ms:.3f} ms",
            f"measured total:    {self.measured_total_ms:.3f} ms (p90 {self.measured_total_p90_ms:.3f})",
            f"prediction error:  {100 * self.prediction_error:+.1f}% (medians)",
            f"fastest rounds:    predicted {self.predicted_total_min_ms:.3f} ms, measured "
            f"{self.measured_total_min_ms:.3f} ms, error {100 * self.prediction_error_min:+.1f}%",
        ]
        if self.heads:
            lines.append(
                "heads: "
                + ", ".join(f"{h.name} {h.median_ms:.3f} ms (taps {list(h.taps)})" for h in self.heads)
            )
        if self.se_study:
            n_se = sum(b.se_off_ms is not None for b in self.blocks)
            n_hs = sum(b.relu_ms is not None for b in self.blocks)
            if self.se_cost_ms is not None and self.se_share is not None:
                lines.append(
                    f"SE cost (sum over {n_se} blocks): {self.se_cost_ms:.3f} ms = {100 * self.se_share:.1f}%"
                )
            if self.hswish_cost_ms is not None and self.hswish_share is not None:
                lines.append(
                    f"hard-swish vs ReLU (sum over {n_hs} blocks): {self.hswish_cost_ms:.3f} ms = "
                    f"{100 * self.hswish_share:.1f}%"
                )
            if self.measured_se_off_total_ms is not None:
                lines.append(
                    f"whole trunk without SE: {self.measured_se_off_total_ms:.3f} ms "
                    f"(saves {_pct(self.se_trunk_saving)})"
                )
            if self.measured_relu_total_ms is not None:
                lines.append(
                    f"whole trunk with ReLU:  {self.measured_relu_total_ms:.3f} ms "
                    f"(saves {_pct(self.relu_trunk_saving)})"
                )
        return "\n".join(lines)

    # ---- serialisation -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "profile": self.profile.to_dict(),
            "variant": self.variant,
            "arch": self.arch,
            "host": dict(self.host),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "se_study": self.se_study,
            "clock": self.clock,
            "call_overhead_ms": self.call_overhead_ms,
            "prediction": self.prediction,
            "blocks": [_record_dict(b) for b in self.blocks],
            "heads": [_record_dict(h) for h in self.heads],
            "measured_total_ms": self.measured_total_ms,
            "measured_total_p90_ms": self.measured_total_p90_ms,
            "measured_total_min_ms": self.measured_total_min_ms,
            "measured_se_off_total_ms": self.measured_se_off_total_ms,
            "measured_relu_total_ms": self.measured_relu_total_ms,
            # Derived, for readers of the JSON; recomputed (not read) on load.
            "sum_blocks_ms": self.sum_blocks_ms,
            "predicted_total_ms": self.predicted_total_ms,
            "predicted_total_min_ms": self.predicted_total_min_ms,
            "meta": dict(self.meta),
        }
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyTable:
        if not isinstance(d, Mapping):
            raise TypeError(f"a latency table must be a dict, got {type(d).__name__}")
        d = dict(d)
        fmt, version = d.pop("format", None), d.pop("version", None)
        if fmt != TABLE_FORMAT:
            raise ValueError(f"not a latency table: format is {fmt!r}, expected {TABLE_FORMAT!r}")
        if version != TABLE_VERSION:
            raise ValueError(
                f"unsupported latency table version {version!r}; this mtmnv3 reads version {TABLE_VERSION}"
            )
        for derived in ("sum_blocks_ms", "predicted_total_ms", "predicted_total_min_ms"):
            d.pop(derived, None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown latency table fields {unknown}; expected a subset of {sorted(known)}")
        try:
            d["profile"] = DeviceProfile.from_dict(d["profile"])
            d["blocks"] = tuple(BlockLatency(**b) for b in d["blocks"])
            d["heads"] = tuple(HeadLatency(**h) for h in d.get("heads", ()))
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed latency table: {e}") from e

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON (atomically)."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"latency table file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"latency table {path} is not valid JSON: {e}") from e
        return cls.from_dict(data)


def _record_dict(record: BlockLatency | HeadLatency) -> dict[str, Any]:
    d = asdict(record)
    for k, v in d.items():
        if isinstance(v, tuple):
            d[k] = list(v)
    return d


def _pct(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.1f}%"
