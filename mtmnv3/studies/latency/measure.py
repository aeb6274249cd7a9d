"""Measure a per-block latency table: build every timed entry, time them in interleaved rounds.

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
* ``onnxruntime``: each module exported on its own to ONNX
  (:func:`~mtmnv3.runtime.onnx_export.export_module`, TorchScript exporter,
  ``dynamo=False``) and run by its own ORT session with
  ``intra_op_num_threads = threads``; ``int8`` quantizes every exported
  model with :func:`~mtmnv3.studies.quantization.quantize_onnx` (static
  QDQ, per-channel, see :data:`~mtmnv3.studies.latency.backends.INT8_OPTIONS`),
  calibrated on trunk activations of a few random images.
* ``openvino`` / ``executorch``: each module converted on its own by the
  runtime (see :mod:`~mtmnv3.studies.latency.runtime_backends`): OpenVINO's
  CPU plugin with ``INFERENCE_NUM_THREADS = threads`` (int8: NNCF), or an
  XNNPACK ExecuTorch program with executorch's threadpool resized to
  ``threads`` for the measurement (int8: XNNPACK PT2E), calibrated on the
  same activations as ONNX Runtime's int8.
* With ``se_study`` the whole trunk is also timed without SE and with ReLU
  for hard-swish, beside the per-block copies.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mtmnv3.backbone.complexity import module_macs, num_params
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import create_trunk
from mtmnv3.core.profiling import Timing, num_threads
from mtmnv3.studies.latency.backends import BackendBuilder, TapHead, TrivialModel
from mtmnv3.studies.latency.study_copies import with_relu, without_se
from mtmnv3.studies.latency.table import (
    CLOCKS,
    DEFAULT_PREDICTION,
    PREDICTIONS,
    BlockLatency,
    DeviceProfile,
    HeadLatency,
    LatencyTable,
)

__all__ = ["DEFAULT_CALIBRATION_SAMPLES", "HeadSpec", "host_info", "measure_latency_table"]

#: Values of ``se_study``: off, per block and whole trunk, or whole trunk only.
SE_STUDIES = (False, True, "trunk")
#: Random images whose trunk activations calibrate int8 quantization.
DEFAULT_CALIBRATION_SAMPLES = 8

HeadSpec = nn.Module | tuple[nn.Module, Sequence[Tensor]]


#: Runtime packages whose versions :func:`host_info` records when their backend is measured.
RUNTIME_PACKAGES = {"openvino": ("openvino", "nncf"), "executorch": ("executorch",)}


def host_info(backend: str | None = None) -> dict[str, Any]:
    """CPU model, core count, platform and library versions of this machine.

    Args:
        backend: also record the versions of this backend's runtime packages
            (:data:`RUNTIME_PACKAGES`; those not installed are recorded as None).
    """
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
    for package in RUNTIME_PACKAGES.get(backend or "", ()):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    return info


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
        resolved.append((name, TapHead(spec.eval(), head_taps), tuple(taps[t] for t in head_taps), head_taps))
    return resolved


def measure_latency_table(
    trunk: MobileNetV3Trunk | str,
    profile: DeviceProfile | None = None,
    heads: Mapping[str, HeadSpec] | None = None,
    warmup: int = 5,
    repeats: int = 100,
    progress: bool = True,
    se_study: bool | str = False,
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
            hard-swish block with ReLU instead, and the whole trunk as both
            copies; ``'trunk'``: only the whole-trunk copies (far fewer
            exports on the runtime backends).
        prediction: how segments are predicted from blocks, ``'sum'``,
            ``'overhead'`` or ``'boundary'`` (which also times every pair of
            neighbouring blocks as one call); default per backend:
            eager ``'sum'``, every other backend ``'boundary'``.
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
    if se_study not in SE_STUDIES:
        raise ValueError(f"se_study must be one of {SE_STUDIES}, got {se_study!r}")
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
    se_study: bool | str,
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
    builder = BackendBuilder(profile, workdir)
    try:
        runners: list[tuple[str, Callable[[], object]]] = []
        for job in tqdm(
            jobs, desc=f"prepare {profile.name}", disable=not progress, file=sys.stderr, leave=False
        ):
            runners.append(
                (job.tag, builder.build(job.tag, job.module, job.inputs, job.calibration, job.quantize))
            )

        # Step 3: interleaved rounds.
        samples = _time_rounds(runners, warmup, repeats, progress, profile.name, clock)
    finally:
        builder.close()
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
        host=host_info(profile.backend),
        warmup=warmup,
        repeats=repeats,
        se_study=bool(se_study),
        clock=clock,
        measured_se_off_total_ms=_median(timing, "trunk_se_off"),
        measured_relu_total_ms=_median(timing, "trunk_relu"),
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
    se_study: bool | str,
    prediction: str,
) -> list[_Job]:
    """The per-call overhead model, every block (with its study copies and its
    pair with the next block, as requested), the heads and the whole trunk."""
    jobs = [_Job("overhead", TrivialModel(), (torch.zeros(1),), quantize=False)]
    for i, block in enumerate(blocks):
        calib = [(c[i],) for c in calib_inputs] or None
        x_i = (block_inputs[i],)
        jobs.append(_Job(f"block{i}", block, x_i, calib))
        if se_study is True and i in trunk.se_blocks:
            jobs.append(_Job(f"block{i}_se_off", without_se(block), x_i, calib))
        if se_study is True and trunk.block_info[i]["activation"] == "hswish":
            jobs.append(_Job(f"block{i}_relu", with_relu(block), x_i, calib))
        if prediction == "boundary" and i + 1 < len(blocks):
            jobs.append(_Job(f"pair{i}", nn.Sequential(block, blocks[i + 1]), x_i, calib))
    for name, module, inputs, _ in head_specs:
        jobs.append(_Job(f"head_{_safe(name)}", module, inputs, [inputs]))
    trunk_calib = [(im,) for im in calib_images]
    jobs.append(_Job("trunk", nn.Sequential(*blocks), (x,), trunk_calib))
    if se_study and trunk.se_blocks:
        jobs.append(_Job("trunk_se_off", without_se(nn.Sequential(*blocks)), (x,), trunk_calib))
    if se_study and any(info["activation"] == "hswish" for info in trunk.block_info):
        jobs.append(_Job("trunk_relu", with_relu(nn.Sequential(*blocks)), (x,), trunk_calib))
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
