"""Per-block latency tables measured on a named device profile.

A :class:`LatencyTable` holds, for one trunk on one :class:`DeviceProfile`
(backend, threads, resolution, dtype), the median latency of every trunk
block on its real input shape, optionally of each head, and of the whole
trunk end to end, so that the sum of the blocks (the *prediction* a stage
search works from) can be checked against the *measurement*.

How it is measured:

* Every timed thing (each block, each SE-off / ReLU copy of a block, each
  head, the whole trunk, and a trivial per-call-overhead model) is built
  once for the backend, then all of them are timed in **interleaved
  rounds**: each round calls every one of them once, in trunk order. Drift
  of a shared machine therefore hits every entry alike, and each block runs
  with the caches left by its predecessor, as it does inside the trunk.
  Medians and 90th percentiles are over the rounds.
* The clock is wall time (``time.perf_counter``) by default. On a CPU
  shared with other work the wall clock is biased: a long call (the whole
  trunk) is preempted far more often than a short one (a block), so the sum
  of block medians undershoots the trunk's median. The table therefore also
  keeps the fastest round of every entry (``min_ms``); the fastest-round
  prediction (:attr:`LatencyTable.predicted_total_min_ms`) is the check
  least affected by preemption. ``clock='cpu'`` times the calling thread's
  CPU time instead (one thread only: with one intra-op thread PyTorch and
  ORT compute on the calling thread); it removes preemption by other
  processes but, in a virtual machine, not the hypervisor's steal time.
* ``eager``: the PyTorch modules under ``torch.inference_mode``.
* ``compile``: each module through ``torch.compile`` (a C++ toolchain is
  needed on CPU; a failure is reported as :class:`BackendUnavailableError`).
* ``onnxruntime``: each module exported on its own to ONNX (TorchScript
  exporter, ``dynamo=False``) and run by its own ORT session with
  ``intra_op_num_threads = threads``; ``int8`` quantizes every exported
  model with ORT's static QDQ per-channel ``quantize_static``, calibrated
  on trunk activations of a few random images.

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
  ``onnxruntime`` and ``compile``; it covers the per-call cost, the layout
  conversions and cross-block fusions, at the price of timing, exporting or
  compiling every pair too).

``call_overhead_ms`` is measured and reported for every backend;
``sum_blocks_ms`` keeps the raw sum.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.backbone.complexity import module_macs, num_params
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import create_trunk
from mtmnv3.core.fileio import atomic_write_json
from mtmnv3.core.layers import SqueezeExcite
from mtmnv3.core.profiling import Timing, format_table, num_threads

__all__ = [
    "BACKENDS",
    "DTYPES",
    "TABLE_FORMAT",
    "TABLE_VERSION",
    "BackendUnavailableError",
    "DeviceProfile",
    "BlockLatency",
    "HeadLatency",
    "LatencyTable",
    "measure_latency_table",
    "host_info",
    "export_onnx",
    "quantize_onnx_static",
    "make_ort_session",
    "without_se",
    "with_relu",
]

TABLE_FORMAT = "mtmnv3.LatencyTable"
TABLE_VERSION = 1
BACKENDS = ("eager", "compile", "onnxruntime")
#: How segments are predicted from blocks (see the module docstring).
PREDICTIONS = ("sum", "overhead", "boundary")
#: Default prediction model per backend.
DEFAULT_PREDICTION = {"eager": "sum", "compile": "boundary", "onnxruntime": "boundary"}
#: Timing clocks: 'wall' (perf_counter) or 'cpu' (the calling thread's CPU time).
CLOCKS = ("wall", "cpu")
DTYPES = ("fp32", "int8")
#: ONNX opset used for every exported block, head and trunk.
ONNX_OPSET = 17
#: Random images whose trunk activations calibrate int8 quantization.
DEFAULT_CALIBRATION_SAMPLES = 8
#: Smallest input resolution the trunk's five stride-2 stages accept sensibly.
MIN_RESOLUTION = 32

HeadSpec = nn.Module | tuple[nn.Module, Sequence[Tensor]]


class BackendUnavailableError(RuntimeError):
    """The requested backend/dtype cannot run here (missing package, compiler, op)."""


# ---------------------------------------------------------------------------
# Device profile
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceProfile:
    """Where and how a latency table is measured.

    Attributes:
        backend: ``'eager'``, ``'compile'`` (``torch.compile``) or ``'onnxruntime'``.
        threads: intra-op threads (torch ``set_num_threads`` / ORT ``intra_op_num_threads``).
        resolution: square input size in pixels.
        dtype: ``'fp32'``, or ``'int8'`` (ONNX Runtime static QDQ only).
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
        if self.dtype == "int8" and self.backend != "onnxruntime":
            raise ValueError(
                f"dtype='int8' is only supported with backend='onnxruntime' (static QDQ); "
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
            se = [b for b in self.blocks if b.se_off_ms is not None]
            hs = [b for b in self.blocks if b.relu_ms is not None]
            total = self.sum_blocks_ms
            if se:
                cost = sum(b.median_ms - b.se_off_ms for b in se)  # type: ignore[operator]
                lines.append(
                    f"SE cost (sum over {len(se)} blocks): {cost:.3f} ms = {100 * cost / total:.1f}%"
                )
            if hs:
                cost = sum(b.median_ms - b.relu_ms for b in hs)  # type: ignore[operator]
                lines.append(
                    f"hard-swish vs ReLU (sum over {len(hs)} blocks): {cost:.3f} ms = {100 * cost / total:.1f}%"
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


# ---------------------------------------------------------------------------
# Host description
# ---------------------------------------------------------------------------
def host_info() -> dict[str, Any]:
    """CPU model, core count, platform and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


# ---------------------------------------------------------------------------
# Backend runners
# ---------------------------------------------------------------------------
class _Trivial(nn.Module):
    """``y = x + 1`` on a one-element tensor: measures a backend's per-call cost."""

    def forward(self, x: Tensor) -> Tensor:
        return x + 1


class _TapHead(nn.Module):
    """Adapts a head that reads ``{tap: tensor}`` to positional tensor inputs."""

    def __init__(self, head: nn.Module, taps: Sequence[int]) -> None:
        super().__init__()
        self.head = head
        self.taps = tuple(taps)

    def forward(self, *xs: Tensor) -> Any:
        return self.head(dict(zip(self.taps, xs)))


class _Builder:
    """Builds a zero-argument callable that runs one module on fixed inputs."""

    def __init__(self, profile: DeviceProfile, workdir: Path) -> None:
        self.profile = profile
        self.workdir = workdir
        self.ort = _import_ort() if profile.backend == "onnxruntime" else None

    def build(
        self,
        tag: str,
        module: nn.Module,
        inputs: Sequence[Tensor],
        calibration: Sequence[Sequence[Tensor]] | None = None,
        quantize: bool = True,
    ) -> Callable[[], object]:
        inputs = tuple(inputs)
        backend = self.profile.backend
        if backend == "eager":
            return partial(module, *inputs)
        if backend == "compile":
            return self._compiled(tag, module, inputs)
        return self._onnxruntime(tag, module, inputs, calibration, quantize)

    def _compiled(self, tag: str, module: nn.Module, inputs: tuple[Tensor, ...]) -> Callable[[], object]:
        compiled = torch.compile(module, dynamic=False)
        try:
            compiled(*inputs)  # compiles now, so that timing sees no compilation
        except Exception as e:  # noqa: BLE001 - any compiler failure means the backend is unusable here
            raise BackendUnavailableError(
                f"torch.compile failed for {tag} on this machine ({type(e).__name__}: {str(e)[:300]}); "
                f"the 'compile' backend needs a working C++ toolchain for inductor on CPU"
            ) from e
        return partial(compiled, *inputs)

    def _onnxruntime(
        self,
        tag: str,
        module: nn.Module,
        inputs: tuple[Tensor, ...],
        calibration: Sequence[Sequence[Tensor]] | None,
        quantize: bool,
    ) -> Callable[[], object]:
        names = [f"x{i}" for i in range(len(inputs))]
        path = self.workdir / f"{tag}.onnx"
        export_onnx(module, inputs, path, input_names=names)
        if self.profile.dtype == "int8" and quantize:
            calib = calibration if calibration else [inputs]
            path = quantize_onnx_static(path, self.workdir / f"{tag}.int8.onnx", names, calib)
        session = make_ort_session(path, self.profile.threads)
        feed = {n: t.detach().contiguous().numpy() for n, t in zip(names, inputs)}
        return partial(session.run, None, feed)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendUnavailableError(
            "backend 'onnxruntime' needs the onnxruntime package (pip install onnxruntime)"
        ) from e
    return onnxruntime


def export_onnx(
    module: nn.Module, inputs: Sequence[Tensor], path: str | os.PathLike, input_names: Sequence[str]
) -> Path:
    """Export ``module(*inputs)`` to ONNX with the TorchScript exporter (``dynamo=False``)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(inputs),
                str(path),
                dynamo=False,
                input_names=list(input_names),
                opset_version=ONNX_OPSET,
            )
    except Exception as e:  # noqa: BLE001 - report which module failed to export
        raise BackendUnavailableError(
            f"ONNX export of {path.stem} failed ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return path


def quantize_onnx_static(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    input_names: Sequence[str],
    calibration: Sequence[Sequence[Tensor]],
) -> Path:
    """Static QDQ, per-channel int8 quantization of an ONNX model with ORT.

    Args:
        src / dst: the fp32 model and where to write the int8 one.
        input_names: the model's input names, matching each calibration tuple.
        calibration: a few input tuples (real activations) to calibrate on.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as e:
        raise BackendUnavailableError("int8 needs onnxruntime.quantization") from e

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(
                [{n: t.detach().contiguous().numpy() for n, t in zip(input_names, s)} for s in calibration]
            )

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    src, dst = Path(src), Path(dst)
    prepped = src.with_suffix(".prep.onnx")
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=True)
        model_in = prepped
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantize the raw model
        model_in = src
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(
                str(model_in),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
    except Exception as e:  # noqa: BLE001
        raise BackendUnavailableError(
            f"int8 quantization of {src.stem} failed ({type(e).__name__}: {str(e)[:300]})"
        ) from e
    return dst


def make_ort_session(path: str | os.PathLike, threads: int) -> Any:
    """A CPU ORT session with ``threads`` intra-op threads, one inter-op thread,
    sequential execution and all graph optimisations."""
    ort = _import_ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------
# Study copies
# ---------------------------------------------------------------------------
def without_se(block: nn.Module) -> nn.Module:
    """A copy of ``block`` with every SqueezeExcite module replaced by Identity."""
    clone = copy.deepcopy(block)
    _replace_modules(clone, lambda m: isinstance(m, SqueezeExcite), lambda m: nn.Identity())
    return clone


def with_relu(block: nn.Module) -> nn.Module:
    """A copy of ``block`` with every Hardswish replaced by ReLU."""
    clone = copy.deepcopy(block)
    _replace_modules(
        clone, lambda m: isinstance(m, nn.Hardswish), lambda m: nn.ReLU(inplace=getattr(m, "inplace", False))
    )
    return clone


def _replace_modules(
    root: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]
) -> None:
    for name, child in list(root.named_children()):
        if match(child):
            setattr(root, name, make(child))
        else:
            _replace_modules(child, match, make)


# ---------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------
def _resolve_trunk(trunk: MobileNetV3Trunk | str) -> tuple[MobileNetV3Trunk, str | None]:
    if isinstance(trunk, str):
        return create_trunk(trunk), trunk
    if isinstance(trunk, MobileNetV3Trunk):
        return trunk, None
    raise TypeError(f"expected a MobileNetV3Trunk or a variant name, got {type(trunk).__name__}")


def _resolve_heads(
    heads: Mapping[str, HeadSpec] | None, taps: Sequence[Tensor]
) -> list[tuple[str, nn.Module, tuple[Tensor, ...], tuple[int, ...]]]:
    """Each head as (name, positional-input module, inputs, taps)."""
    resolved = []
    for name, spec in (heads or {}).items():
        if isinstance(spec, tuple):
            if len(spec) != 2 or not isinstance(spec[0], nn.Module):
                raise TypeError(f"head {name!r}: expected a module or (module, inputs), got {spec!r}")
            module, inputs = spec
            resolved.append((name, module.eval(), tuple(inputs), tuple(getattr(module, "taps", ()))))
            continue
        if not isinstance(spec, nn.Module):
            raise TypeError(
                f"head {name!r}: expected an nn.Module or (module, inputs), got {type(spec).__name__}"
            )
        head_taps = tuple(getattr(spec, "taps", ()))
        if getattr(spec, "uses_neck", False) or not head_taps:
            raise ValueError(
                f"head {name!r} reads the neck (or declares no taps); pass it as (module, example_inputs)"
            )
        bad = [t for t in head_taps if not 0 <= t < len(taps)]
        if bad:
            raise ValueError(f"head {name!r} taps {list(head_taps)} outside the trunk's {len(taps)} stages")
        resolved.append(
            (name, _TapHead(spec.eval(), head_taps), tuple(taps[t] for t in head_taps), head_taps)
        )
    return resolved


def measure_latency_table(
    trunk: MobileNetV3Trunk | str,
    profile: DeviceProfile | None = None,
    heads: Mapping[str, HeadSpec] | None = None,
    warmup: int = 5,
    repeats: int = 100,
    progress: bool = True,
    se_study: bool = False,
    prediction: str | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    onnx_dir: str | os.PathLike | None = None,
    seed: int = 0,
    clock: str = "wall",
) -> LatencyTable:
    """Measure every trunk block (and optionally heads) on ``profile``.

    Args:
        trunk: a trunk, or a variant name from ``TRUNK_VARIANTS``.
        profile: the device profile (default: eager, 1 thread, 224, fp32).
        heads: ``{name: head}`` for heads that read trunk taps (``head.taps``;
            fed ``{tap: (N, C, H, W)}``), or ``{name: (module, inputs)}`` for
            anything else (e.g. a neck plus head), called as ``module(*inputs)``.
        warmup: untimed rounds first.
        repeats: timed rounds; each round calls every timed entry once.
        progress: show tqdm progress bars (on stderr).
        se_study: also time each SE block with SE removed and each
            hard-swish block with ReLU instead.
        prediction: how segments are predicted from blocks, ``'sum'``,
            ``'overhead'`` or ``'boundary'`` (which also times every pair of
            neighbouring blocks as one call); default per backend:
            eager ``'sum'``, compile and onnxruntime ``'boundary'``.
        calibration_samples: random images whose activations calibrate int8.
        onnx_dir: keep exported ONNX models here (default: a temp folder).
        seed: RNG seed for the random inputs.
        clock: ``'wall'``, or ``'cpu'`` (the calling thread's CPU time; one
            thread only).

    Returns:
        The :class:`LatencyTable`.

    Raises:
        BackendUnavailableError: the backend cannot run here.
        ValueError / TypeError: bad arguments.
    """
    profile = profile or DeviceProfile()
    if not isinstance(profile, DeviceProfile):
        raise TypeError(f"profile must be a DeviceProfile, got {type(profile).__name__}")
    if not (isinstance(repeats, int) and repeats >= 1 and isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats!r}, warmup={warmup!r}")
    if calibration_samples < 1:
        raise ValueError(f"calibration_samples must be >= 1, got {calibration_samples}")
    if clock not in CLOCKS:
        raise ValueError(f"unknown clock {clock!r}; expected one of {CLOCKS}")
    if clock == "cpu" and profile.threads != 1:
        raise ValueError(
            f"clock='cpu' times only the calling thread, so it needs threads=1, got {profile.threads}; "
            f"use clock='wall'"
        )
    trunk, variant = _resolve_trunk(trunk)
    prediction = DEFAULT_PREDICTION[profile.backend] if prediction is None else prediction
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")

    was_training = trunk.training
    trunk.eval()
    try:
        with num_threads(profile.threads), torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
            workdir = Path(onnx_dir) if onnx_dir is not None else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            return _measure(
                trunk,
                variant,
                profile,
                heads,
                warmup,
                repeats,
                progress,
                se_study,
                prediction,
                calibration_samples,
                workdir,
                seed,
                clock,
            )
    finally:
        trunk.train(was_training)


def _measure(
    trunk: MobileNetV3Trunk,
    variant: str | None,
    profile: DeviceProfile,
    heads: Mapping[str, HeadSpec] | None,
    warmup: int,
    repeats: int,
    progress: bool,
    se_study: bool,
    prediction: str,
    calibration_samples: int,
    workdir: Path,
    seed: int,
    clock: str,
) -> LatencyTable:
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(seed)
    size, batch = profile.resolution, profile.batch
    blocks = list(trunk.blocks)
    x = torch.randn(batch, 3, size, size, generator=gen)
    block_inputs = _block_inputs(blocks, x)
    calib_images = [torch.randn(batch, 3, size, size, generator=gen) for _ in range(calibration_samples)]
    calib_inputs = [_block_inputs(blocks, im) for im in calib_images] if profile.dtype == "int8" else []
    stage_taps = trunk.forward_taps(x, range(trunk.num_stages))
    head_specs = _resolve_heads(heads, [stage_taps[i] for i in range(trunk.num_stages)])

    # Step 1: everything to time, in trunk order (study copies beside their block).
    jobs = _collect_jobs(
        trunk, blocks, block_inputs, calib_inputs, calib_images, x, head_specs, se_study, prediction
    )

    # Step 2: build each for the backend (export/quantize/compile).
    builder = _Builder(profile, workdir)
    runners: list[tuple[str, Callable[[], object]]] = []
    for job in tqdm(jobs, desc=f"prepare {profile.name}", disable=not progress, file=sys.stderr, leave=False):
        runners.append(
            (job.tag, builder.build(job.tag, job.module, job.inputs, job.calibration, job.quantize))
        )

    # Step 3: interleaved rounds.
    samples = _time_rounds(runners, warmup, repeats, progress, profile.name, clock)
    timing = {tag: Timing.from_samples(s) for tag, s in samples.items()}

    # Step 4: assemble the records.
    stage_of = {b: s for s, (a, e) in enumerate(trunk.stage_plan.stages) for b in range(a, e)}
    records = []
    h, w = size, size
    for i, block in enumerate(blocks):
        macs, h, w = module_macs(block, h, w)
        info, t = trunk.block_info[i], timing[f"block{i}"]
        out = block_inputs[i + 1]
        records.append(
            BlockLatency(
                index=i,
                name=info["name"],
                stage=stage_of[i],
                channels=info["channels"],
                stride=info["stride"],
                in_shape=tuple(block_inputs[i].shape[1:]),
                out_shape=tuple(out.shape[1:]),
                macs=macs * batch,
                params=num_params(block),
                kernel=info["kernel"],
                se=info["se"],
                activation=info["activation"],
                median_ms=t.median_ms,
                p90_ms=t.p90_ms,
                min_ms=t.min_ms,
                se_off_ms=_median(timing, f"block{i}_se_off"),
                relu_ms=_median(timing, f"block{i}_relu"),
                pair_ms=_median(timing, f"pair{i}"),
                pair_min_ms=timing[f"pair{i}"].min_ms if f"pair{i}" in timing else None,
            )
        )
    head_records = [
        HeadLatency(name, taps, *_stats(timing[f"head_{_safe(name)}"])) for name, _, _, taps in head_specs
    ]
    total = timing["trunk"]
    return LatencyTable(
        profile=profile,
        blocks=tuple(records),
        measured_total_ms=total.median_ms,
        measured_total_p90_ms=total.p90_ms,
        measured_total_min_ms=total.min_ms,
        call_overhead_ms=timing["overhead"].median_ms,
        prediction=prediction,
        heads=tuple(head_records),
        variant=variant,
        arch=trunk.arch,
        host=host_info(),
        warmup=warmup,
        repeats=repeats,
        se_study=se_study,
        clock=clock,
        meta={
            "width_mult": trunk.width_mult,
            "se_blocks": list(trunk.se_blocks),
            "activation": trunk.activation,
        },
    )


@dataclass(frozen=True)
class _Job:
    """One thing to time: ``module(*inputs)``, calibrated on ``calibration`` for int8."""

    tag: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    calibration: list[tuple[Tensor, ...]] | None = None
    quantize: bool = True


def _collect_jobs(
    trunk: MobileNetV3Trunk,
    blocks: Sequence[nn.Module],
    block_inputs: Sequence[Tensor],
    calib_inputs: Sequence[Sequence[Tensor]],
    calib_images: Sequence[Tensor],
    x: Tensor,
    head_specs: Sequence[tuple[str, nn.Module, tuple[Tensor, ...], tuple[int, ...]]],
    se_study: bool,
    prediction: str,
) -> list[_Job]:
    """The per-call overhead model, every block (with its study copies and its
    pair with the next block, as requested), the heads and the whole trunk."""
    jobs = [_Job("overhead", _Trivial(), (torch.zeros(1),), quantize=False)]
    for i, block in enumerate(blocks):
        calib = [(c[i],) for c in calib_inputs] or None
        x_i = (block_inputs[i],)
        jobs.append(_Job(f"block{i}", block, x_i, calib))
        if se_study and i in trunk.se_blocks:
            jobs.append(_Job(f"block{i}_se_off", without_se(block), x_i, calib))
        if se_study and trunk.block_info[i]["activation"] == "hswish":
            jobs.append(_Job(f"block{i}_relu", with_relu(block), x_i, calib))
        if prediction == "boundary" and i + 1 < len(blocks):
            jobs.append(_Job(f"pair{i}", nn.Sequential(block, blocks[i + 1]), x_i, calib))
    for name, module, inputs, _ in head_specs:
        jobs.append(_Job(f"head_{_safe(name)}", module, inputs, [inputs]))
    jobs.append(_Job("trunk", nn.Sequential(*blocks), (x,), [(im,) for im in calib_images]))
    return jobs


def _time_rounds(
    runners: Sequence[tuple[str, Callable[[], object]]],
    warmup: int,
    repeats: int,
    progress: bool,
    label: str,
    clock: str,
) -> dict[str, list[float]]:
    """Call every runner once per round; per-runner times in ms on ``clock``."""
    from tqdm.auto import tqdm

    for _ in range(warmup):
        for _, fn in runners:
            fn()
    samples: dict[str, list[float]] = {tag: [] for tag, _ in runners}
    now = time.thread_time if clock == "cpu" else time.perf_counter
    for _ in tqdm(range(repeats), desc=f"time {label}", disable=not progress, file=sys.stderr, leave=False):
        for tag, fn in runners:
            t0 = now()
            fn()
            samples[tag].append((now() - t0) * 1e3)
    return samples


def _block_inputs(blocks: Sequence[nn.Module], x: Tensor) -> list[Tensor]:
    """The input of every block (and, last, the trunk's output) for image ``x``."""
    inputs = [x]
    for block in blocks:
        inputs.append(block(inputs[-1]))
    return inputs


def _median(timing: Mapping[str, Timing], tag: str) -> float | None:
    return timing[tag].median_ms if tag in timing else None


def _stats(t: Timing) -> tuple[float, float, float]:
    return t.median_ms, t.p90_ms, t.min_ms


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
