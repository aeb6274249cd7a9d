"""Hardware-aware stage splitting: latency tables, split searches, threaded pipeline, CLIs."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import json
import math
import random
import sys
from pathlib import Path

import pytest
import torch
from mtmnv3.heads import ClsHead

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.variants import create_trunk
from mtmnv3.core.layers import SqueezeExcite
from mtmnv3.runtime.pipeline import run_pipeline
from mtmnv3.studies.latency import (
    TABLE_VERSION,
    BackendUnavailableError,
    BlockLatency,
    DeviceProfile,
    LatencyTable,
    measure_latency_table,
    with_relu,
    without_se,
)
from mtmnv3.studies.split_search import (
    balanced_partition,
    balanced_stages,
    best_device_server_split,
    fit_budget,
)

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64  # small input so every measurement takes well under a second
FAST = dict(warmup=1, repeats=3, progress=False)


def _load_tool(name: str):
    return importlib.import_module(f"mtmnv3.cli.{name}")


def _hand_table(costs, out_shapes, in_shape=(3, 4, 4), stages=None, overhead=0.0, prediction="sum"):
    """A latency table with given per-block costs and shapes (no measurement)."""
    stages = stages or list(range(len(costs)))
    blocks = [
        BlockLatency(
            index=i,
            name=f"b{i}",
            stage=stages[i],
            channels=shape[0],
            stride=1,
            in_shape=in_shape if i == 0 else out_shapes[i - 1],
            out_shape=shape,
            macs=0,
            params=0,
            kernel=1,
            se=False,
            activation="relu",
            median_ms=c,
            p90_ms=c,
            min_ms=c,
        )
        for i, (c, shape) in enumerate(zip(costs, out_shapes))
    ]
    return LatencyTable(
        profile=DeviceProfile(resolution=32),
        blocks=tuple(blocks),
        measured_total_ms=sum(costs),
        measured_total_p90_ms=sum(costs),
        measured_total_min_ms=sum(costs),
        call_overhead_ms=overhead,
        prediction=prediction,
    )


@pytest.fixture(scope="module")
def tiny_eager_table() -> LatencyTable:
    """One eager measurement of the tiny trunk (with the SE study and a head),
    shared read-only by the tests below (the table is immutable)."""
    torch.manual_seed(0)
    trunk = create_trunk("tiny")
    head = ClsHead(trunk.feature_info, num_classes=5, hidden_channels=16)
    return measure_latency_table(
        trunk, DeviceProfile(resolution=SIZE), heads={"cls": head}, se_study=True, **FAST
    )


# ---- device profile --------------------------------------------------------
def test_device_profile_validates_its_fields():
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        DeviceProfile(backend="tensorrt")
    with pytest.raises(
        ValueError,
        match=r"dtype='int8' is only supported with backends \('onnxruntime', 'openvino', 'executorch'\); got backend='eager'",
    ):
        DeviceProfile(backend="eager", dtype="int8")
    with pytest.raises(
        ValueError, match=r"unknown backend 'tflite'; expected one of \(.*'openvino', 'executorch'\)"
    ):
        DeviceProfile(backend="tflite")
    with pytest.raises(ValueError, match="unknown dtype 'fp16'"):
        DeviceProfile(dtype="fp16")
    with pytest.raises(ValueError, match="threads must be an int >= 1, got 0"):
        DeviceProfile(threads=0)
    with pytest.raises(ValueError, match="resolution must be an int >= 32, got 8"):
        DeviceProfile(resolution=8)
    assert DeviceProfile(backend="onnxruntime", dtype="int8").name == "onnxruntime-int8-1t-224"
    assert DeviceProfile(backend="executorch", dtype="int8").name == "executorch-int8-1t-224"


# ---- latency table -----------------------------------------------------------
def test_table_has_every_block_with_its_real_shapes(tiny_eager_table):
    table = tiny_eager_table
    trunk = create_trunk("tiny")
    assert table.num_blocks == len(trunk.blocks)
    assert [b.name for b in table.blocks] == [bi["name"] for bi in trunk.block_info]
    assert [b.se for b in table.blocks] == [bi["se"] for bi in trunk.block_info]
    assert table.blocks[0].in_shape == (3, SIZE, SIZE)
    for prev, nxt in zip(table.blocks, table.blocks[1:]):
        assert prev.out_shape == nxt.in_shape
    assert table.blocks[-1].out_shape[1:] == (SIZE // 32, SIZE // 32)
    assert [b.stage for b in table.blocks] == [
        s for s, (a, e) in enumerate(trunk.stage_plan.stages) for _ in range(a, e)
    ]
    assert sum(b.macs for b in table.blocks) == sum(trunk.stage_macs(SIZE, SIZE))
    assert all(b.median_ms > 0 and b.p90_ms >= b.median_ms >= b.min_ms for b in table.blocks)
    assert table.measured_total_ms > 0 and table.variant is None and table.arch == "small"
    assert table.host["torch"] == torch.__version__ and table.host["cpu"]
    # Eager predictions are the raw sum (its end-to-end run still calls every block).
    assert table.prediction == "sum"
    assert table.predicted_total_ms == pytest.approx(table.sum_blocks_ms)


def test_se_and_hardswish_study_fills_every_relevant_block(tiny_eager_table):
    for b in tiny_eager_table.blocks:
        assert (b.se_off_ms is not None) == b.se
        assert (b.relu_ms is not None) == (b.activation == "hswish")
        if b.se:
            assert b.se_share is not None and b.se_share < 1
    text = tiny_eager_table.format_blocks() + tiny_eager_table.format_summary()
    assert "SE share" in text and "SE cost" in text and "hard-swish vs ReLU" in text


def test_head_is_timed_with_its_taps(tiny_eager_table):
    head = tiny_eager_table.head("cls")
    assert head.taps == (4,) and head.median_ms > 0
    with pytest.raises(KeyError, match="no head 'det'"):
        tiny_eager_table.head("det")


def test_table_json_round_trip(tiny_eager_table, tmp_path):
    table = tiny_eager_table
    assert LatencyTable.from_json(table.to_json()) == table
    path = tmp_path / "sub" / "table.json"
    table.save(path)
    assert LatencyTable.load(path) == table
    d = json.loads(path.read_text())
    assert d["format"] == "mtmnv3.LatencyTable" and d["version"] == TABLE_VERSION
    assert d["predicted_total_ms"] == pytest.approx(table.predicted_total_ms)
    assert {"index", "name", "stage", "channels", "stride", "macs", "params", "se", "activation"} <= set(
        d["blocks"][0]
    )
    assert not list(path.parent.glob(".*.tmp"))


def test_table_load_rejects_bad_input(tmp_path, tiny_eager_table):
    with pytest.raises(FileNotFoundError, match="latency table file not found"):
        LatencyTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LatencyTable.load(bad)
    d = tiny_eager_table.to_dict()
    with pytest.raises(ValueError, match="unsupported latency table version 99"):
        LatencyTable.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match="not a latency table"):
        LatencyTable.from_dict({**d, "format": "mtmnv3.StagePlan"})
    with pytest.raises(ValueError, match=r"unknown latency table fields \['extra'\]"):
        LatencyTable.from_dict({**d, "extra": 1})


def test_measure_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown trunk variant 'huge'"):
        measure_latency_table("huge", **FAST)
    with pytest.raises(TypeError, match="expected a MobileNetV3Trunk or a variant name"):
        measure_latency_table(42, **FAST)
    with pytest.raises(ValueError, match="need repeats >= 1"):
        measure_latency_table("tiny", DeviceProfile(resolution=SIZE), warmup=0, repeats=0, progress=False)


def test_onnxruntime_per_block_profiling_on_tiny():
    table = measure_latency_table("tiny", DeviceProfile(backend="onnxruntime", resolution=SIZE), **FAST)
    assert table.variant == "tiny" and table.profile.backend == "onnxruntime"
    assert table.num_blocks == 13 and all(b.median_ms > 0 for b in table.blocks)
    assert table.call_overhead_ms > 0 and table.prediction == "boundary"
    pairs = [b.pair_ms for b in table.blocks]
    assert None not in pairs[:-1] and pairs[-1] is None
    savings = [a.median_ms + b.median_ms - a.pair_ms for a, b in zip(table.blocks, table.blocks[1:])]
    assert table.boundary_savings_ms() == pytest.approx(savings)
    assert table.predicted_total_ms == pytest.approx(table.sum_blocks_ms - sum(savings))
    assert table.segment_ms(2, 5) == pytest.approx(sum(table.block_ms[2:5]) - sum(savings[2:4]))
    assert table.host["onnxruntime"]


def test_thread_cpu_clock_and_prediction_models():
    profile = DeviceProfile(resolution=SIZE)
    table = measure_latency_table("tiny", profile, clock="cpu", prediction="overhead", **FAST)
    assert table.clock == "cpu" and table.prediction == "overhead"
    n = table.num_blocks
    assert table.predicted_total_ms == pytest.approx(table.sum_blocks_ms - (n - 1) * table.call_overhead_ms)
    with pytest.raises(
        ValueError, match="clock='cpu' times only the calling thread, so it needs threads=1, got 2"
    ):
        measure_latency_table("tiny", DeviceProfile(threads=2, resolution=SIZE), clock="cpu", **FAST)
    with pytest.raises(ValueError, match="unknown clock 'gpu'"):
        measure_latency_table("tiny", profile, clock="gpu", **FAST)
    with pytest.raises(ValueError, match="unknown prediction 'magic'"):
        measure_latency_table("tiny", profile, prediction="magic", **FAST)
    with pytest.raises(ValueError, match=r"needs pair timings, but blocks \[0, 1, .*\] have none"):
        dataclasses.replace(table, prediction="boundary")


def test_onnxruntime_int8_per_block_profiling_on_tiny():
    table = measure_latency_table(
        "tiny",
        DeviceProfile(backend="onnxruntime", dtype="int8", resolution=SIZE),
        calibration_samples=2,
        **FAST,
    )
    assert table.profile.dtype == "int8" and all(b.median_ms > 0 for b in table.blocks)


def test_compile_failure_is_a_clear_backend_error(monkeypatch):
    def broken_compile(module, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(BackendUnavailableError, match="torch.compile failed for .*no C\\+\\+ compiler"):
        measure_latency_table("tiny", DeviceProfile(backend="compile", resolution=SIZE), **FAST)


# ---- OpenVINO and ExecuTorch ------------------------------------------------------
RUNTIME_SIZE = 32  # the smallest resolution: conversion, not timing, dominates these tests


def _check_records(table: LatencyTable) -> None:
    """Sane positive timings on every block and the whole trunk, and a finite prediction error.

    The error's size is not checked: at this resolution a block costs about as
    much as a call, so on a shared machine the prediction is noise.
    """
    assert table.num_blocks == 13
    assert all(b.median_ms > 0 and b.p90_ms >= b.median_ms >= b.min_ms > 0 for b in table.blocks)
    assert table.measured_total_ms > 0 and table.call_overhead_ms > 0
    assert table.predicted_total_ms == pytest.approx(table.segment_ms(0, table.num_blocks))
    assert math.isfinite(table.prediction_error) and math.isfinite(table.prediction_error_min)
    assert "measured total" in table.format_summary() and "prediction error" in table.format_summary()


@pytest.fixture(scope="module")
def tiny_openvino_table() -> LatencyTable:
    """The tiny trunk on OpenVINO fp32 with the full SE / hard-swish study and the default prediction."""
    pytest.importorskip("openvino")
    return measure_latency_table(
        "tiny", DeviceProfile(backend="openvino", resolution=RUNTIME_SIZE), se_study=True, **FAST
    )


def test_openvino_table_has_pairs_and_the_se_breakdown(tiny_openvino_table):
    table = tiny_openvino_table
    _check_records(table)
    assert table.prediction == "boundary" and table.profile.backend == "openvino"
    assert None not in [b.pair_ms for b in table.blocks[:-1]]
    assert table.host["openvino"] and table.host["nncf"]
    for b in table.blocks:
        assert (b.se_off_ms is not None) == b.se and (b.relu_ms is not None) == (b.activation == "hswish")
        assert all(v is None or v > 0 for v in (b.se_off_ms, b.relu_ms))
    assert table.se_cost_ms is not None and table.hswish_cost_ms is not None
    assert table.se_share == pytest.approx(table.se_cost_ms / table.sum_blocks_ms)
    assert table.measured_se_off_total_ms > 0 and table.measured_relu_total_ms > 0
    assert table.se_trunk_saving == pytest.approx(
        1 - table.measured_se_off_total_ms / table.measured_total_ms
    )
    summary = table.format_summary()
    assert "whole trunk without SE" in summary and "whole trunk with ReLU" in summary
    assert LatencyTable.from_json(table.to_json()) == table


def test_openvino_int8_table_on_tiny():
    pytest.importorskip("nncf")
    table = measure_latency_table(
        "tiny",
        DeviceProfile(backend="openvino", dtype="int8", resolution=RUNTIME_SIZE),
        prediction="sum",
        calibration_samples=2,
        **FAST,
    )
    _check_records(table)
    assert table.profile.dtype == "int8" and table.prediction == "sum"


def _threadpool_size() -> int:
    from executorch.extension.pybindings import portable_lib

    return portable_lib._threadpool_get_thread_count()


def test_executorch_table_with_whole_trunk_copies_and_threads():
    pytest.importorskip("executorch.runtime")
    before = _threadpool_size()
    table = measure_latency_table(
        "tiny",
        DeviceProfile(backend="executorch", threads=2, resolution=RUNTIME_SIZE),
        se_study="trunk",
        prediction="sum",
        **FAST,
    )
    _check_records(table)
    assert (
        table.prediction == "sum"
        and table.prediction_error > -1
        and table.profile.threads == 2
        and table.host["executorch"]
    )
    # Whole-trunk copies only: no per-block study copies.
    assert all(b.se_off_ms is None and b.relu_ms is None for b in table.blocks)
    assert table.measured_se_off_total_ms > 0 and table.measured_relu_total_ms > 0
    assert table.se_cost_ms is None and table.se_trunk_saving is not None
    assert _threadpool_size() == before  # the measurement's threadpool size is undone


@pytest.mark.slow
def test_executorch_int8_table_on_tiny():
    pytest.importorskip("executorch.runtime")
    table = measure_latency_table(
        "tiny",
        DeviceProfile(backend="executorch", dtype="int8", resolution=RUNTIME_SIZE),
        prediction="sum",
        calibration_samples=2,
        **FAST,
    )
    _check_records(table)
    assert table.profile.dtype == "int8"


@pytest.mark.parametrize(
    ("backend", "module", "package"),
    [("openvino", "openvino", "openvino"), ("executorch", "executorch.runtime", "executorch")],
)
def test_a_missing_runtime_names_its_package_and_install_hint(monkeypatch, backend, module, package):
    from mtmnv3.runtime.sessions import INSTALL_HINTS

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        BackendUnavailableError, match=f"backend '{backend}' needs the {package} package"
    ) as e:
        measure_latency_table("tiny", DeviceProfile(backend=backend, resolution=RUNTIME_SIZE), **FAST)
    assert INSTALL_HINTS[backend] in str(e.value)


def test_missing_nncf_fails_only_int8_on_openvino(monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(
        BackendUnavailableError, match="backend 'openvino' needs the nncf package.*pip install"
    ):
        measure_latency_table(
            "tiny", DeviceProfile(backend="openvino", dtype="int8", resolution=RUNTIME_SIZE), **FAST
        )


def test_executorch_without_threadpool_control_refuses_other_thread_counts(monkeypatch):
    pytest.importorskip("executorch.runtime")
    from executorch.extension.pybindings import portable_lib

    current = _threadpool_size()
    monkeypatch.delattr(portable_lib, "_unsafe_reset_threadpool")
    with pytest.raises(
        BackendUnavailableError,
        match=rf"cannot set its thread count .* only threads={current} can be measured, got threads={current + 1}",
    ):
        measure_latency_table(
            "tiny", DeviceProfile(backend="executorch", threads=current + 1, resolution=RUNTIME_SIZE), **FAST
        )


def test_se_study_values_are_checked():
    with pytest.raises(ValueError, match="se_study must be one of .*got 'blocks'"):
        measure_latency_table("tiny", DeviceProfile(resolution=SIZE), se_study="blocks", **FAST)


def test_study_copies_leave_the_original_block_alone():
    trunk = create_trunk("tiny").eval()
    block = trunk.blocks[4]
    no_se, relu = without_se(block), with_relu(block)
    assert any(isinstance(m, SqueezeExcite) for m in block.modules())
    assert not any(isinstance(m, SqueezeExcite) for m in no_se.modules())
    assert not any(isinstance(m, torch.nn.Hardswish) for m in relu.modules())
    assert any(isinstance(m, torch.nn.Hardswish) for m in block.modules())


# ---- balanced stages -------------------------------------------------------------
def _brute_force_bottleneck(costs, k):
    n = len(costs)
    best = float("inf")
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = [0, *cuts, n]
        best = min(best, max(sum(costs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])))
    return best


def test_balanced_partition_is_optimal_against_brute_force():
    rng = random.Random(0)
    for _ in range(150):
        n = rng.randint(1, 9)
        k = rng.randint(1, n)
        costs = [rng.choice([rng.random(), rng.random() * 10, 0.0]) for _ in range(n)]
        cuts, bottleneck = balanced_partition(costs, k)
        assert len(cuts) == k - 1 and cuts == sorted(set(cuts)) and all(0 < c < n for c in cuts)
        bounds = [0, *cuts, n]
        achieved = max(sum(costs[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
        assert achieved == pytest.approx(bottleneck)
        assert bottleneck == pytest.approx(_brute_force_bottleneck(costs, k))


def test_balanced_stages_builds_a_plan_with_predictions():
    table = _hand_table([1, 1, 4, 1, 1, 2], [(1, 1, 1)] * 6)
    plan = balanced_stages(table, 3)
    assert isinstance(plan, StagePlan) and plan.name == "balanced-3"
    assert max(plan.predicted_ms) == pytest.approx(4)
    assert plan.stages[1] == (2, 3)  # the 4 ms block stands alone
    assert sum(plan.predicted_ms) == pytest.approx(10)
    assert plan.device_profile == table.profile.to_dict()
    assert StagePlan.from_json(plan.to_json()) == plan


def test_balanced_stages_charges_per_call_overhead_once_per_stage():
    table = _hand_table([1.0] * 4, [(1, 1, 1)] * 4, overhead=0.25, prediction="overhead")
    plan = balanced_stages(table, 2)
    assert plan.predicted_ms == pytest.approx((1.75, 1.75))
    assert table.predicted_total_ms == pytest.approx(4 - 3 * 0.25)


def test_balanced_stages_rejects_bad_k():
    table = _hand_table([1, 2, 3], [(1, 1, 1)] * 3)
    with pytest.raises(ValueError, match="k must be an int in 1..3 .* got 4"):
        balanced_stages(table, 4)
    with pytest.raises(ValueError, match="got 0"):
        balanced_stages(table, 0)


# ---- device / server split -----------------------------------------------------
def _split_table():
    # Input 3x4x4 = 48 elements; block outputs 8, 4 and 1 elements.
    return _hand_table([1.0, 2.0, 3.0], [(2, 2, 2), (1, 2, 2), (1, 1, 1)])


def test_device_server_split_matches_a_hand_computed_example():
    # 0.32 Mbit/s = 40000 bytes/s: 1 byte takes 0.025 ms. RTT 1 ms, server 2x faster.
    split = best_device_server_split(_split_table(), 2.0, bandwidth_mbps=0.32, rtt_ms=1.0)
    totals = [p.total_ms for p in split.curve]
    # cut 0: 0 + (192 B -> 4.8) + 1 + 3.0; cut 1: 1 + 0.8 + 1 + 2.5; cut 2: 3 + 0.4 + 1 + 1.5; cut 3: 6.
    assert totals == pytest.approx([8.8, 5.3, 5.9, 6.0])
    assert [p.transfer_bytes for p in split.curve] == [192, 32, 16, 0]
    assert split.best.cut == 1
    plan = split.to_plan(_split_table())
    assert plan.stages == ((0, 1), (1, 3)) and plan.placement == ("device", "server")
    assert plan.predicted_ms == pytest.approx((1.0, 2.5))
    assert plan.meta["transfer_ms"] == pytest.approx(1.8)


def test_device_server_split_with_int8_activations_and_a_server_table():
    split = best_device_server_split(_split_table(), 2.0, 0.32, 1.0, int8_activations=True)
    assert [p.total_ms for p in split.curve] == pytest.approx([5.2, 4.7, 5.6, 6.0])
    server = _hand_table([0.5, 1.0, 1.5], [(2, 2, 2), (1, 2, 2), (1, 1, 1)])
    same = best_device_server_split(_split_table(), server, 0.32, 1.0, int8_activations=True)
    assert [p.total_ms for p in same.curve] == pytest.approx([5.2, 4.7, 5.6, 6.0])
    # Fast network, slow device: everything goes to the server.
    assert best_device_server_split(_split_table(), 100.0, 1e6, 0.0).best.cut == 0


def test_device_server_split_rejects_bad_input():
    with pytest.raises(ValueError, match="bandwidth_mbps must be a positive number, got 0"):
        best_device_server_split(_split_table(), 2.0, 0)
    with pytest.raises(ValueError, match="server speed-up must be a positive number"):
        best_device_server_split(_split_table(), -1.0, 10)
    with pytest.raises(ValueError, match="server table has 2 blocks but the device table has 3"):
        best_device_server_split(_split_table(), _hand_table([1, 1], [(1, 1, 1)] * 2), 10)


# ---- per-frame budget ---------------------------------------------------------
def test_fit_budget_picks_heads_and_depth():
    table = _hand_table([1.0, 2.0, 3.0], [(1, 1, 1)] * 3)  # one block per stage
    costs = {"a": 0.5, "b": 1.0, "c": 0.2}
    taps = {"a": [0], "b": [2], "c": [1]}
    fit = fit_budget(table, costs, 4.0, taps)
    assert fit.heads == ("a", "c") and fit.dropped == ("b",)
    assert fit.depth_stage == 1 and fit.depth_blocks == 2
    assert fit.trunk_ms == pytest.approx(3.0) and fit.total_ms == pytest.approx(3.7)
    assert fit.slack_ms == pytest.approx(0.3)
    assert fit.stage_prefix_ms == pytest.approx((1.0, 3.0, 6.0))
    assert fit_budget(table, costs, 10.0, taps).heads == ("a", "b", "c")
    nothing = fit_budget(table, costs, 0.9, taps)
    assert nothing.heads == () and nothing.depth_stage == -1 and nothing.total_ms == 0
    # With b weighted up, {a, b} and {b, c} tie on weight; the cheaper {b, c} wins.
    weighted = fit_budget(table, costs, 7.5, taps, weights={"b": 5.0})
    assert weighted.heads == ("b", "c") and weighted.total_ms == pytest.approx(7.2)


def test_fit_budget_uses_measured_heads(tiny_eager_table):
    fit = fit_budget(tiny_eager_table, None, 1e6)
    assert fit.heads == ("cls",) and fit.depth_stage == 4
    assert fit.total_ms == pytest.approx(
        tiny_eager_table.predicted_total_ms + tiny_eager_table.head("cls").median_ms
    )


def test_fit_budget_rejects_bad_input():
    table = _hand_table([1.0, 2.0], [(1, 1, 1)] * 2)
    with pytest.raises(ValueError, match="budget_ms must be a positive number, got -1"):
        fit_budget(table, {"a": 1.0}, -1, {"a": [0]})
    with pytest.raises(ValueError, match="head 'a' needs its trunk taps"):
        fit_budget(table, {"a": 1.0}, 5, {})
    with pytest.raises(ValueError, match=r"head 'a' taps \[7\] outside"):
        fit_budget(table, {"a": 1.0}, 5, {"a": [7]})


# ---- threaded pipeline ------------------------------------------------------------
def test_pipeline_outputs_equal_the_unsplit_trunk(tiny_eager_table):
    trunk = create_trunk("tiny").eval()
    plan = balanced_stages(tiny_eager_table, 3)
    frames = [torch.randn(1, 3, SIZE, SIZE) for _ in range(5)]
    result = run_pipeline(trunk, plan, frames, warmup=1)
    with torch.no_grad():
        expected = [trunk.forward_stages(f) for f in frames]
    assert len(result.outputs) == len(frames)
    for out, ref in zip(result.outputs, expected):
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert len(result.stage_ms) == 3 and all(t > 0 for t in result.stage_ms)
    assert result.plan.measured_ms == result.stage_ms and result.throughput_fps > 0
    assert "measured slowest stage" in result.format() and "predicted slowest stage" in result.format()


def test_pipeline_rejects_a_plan_for_another_trunk():
    trunk = create_trunk("tiny")
    with pytest.raises(ValueError, match="plan covers 5 blocks but the trunk has 13"):
        run_pipeline(trunk, StagePlan.from_cuts(5, [2]), frames=2, size=SIZE)


def test_pipeline_surfaces_stage_errors():
    trunk = create_trunk("tiny")
    plan = StagePlan.from_cuts(13, [4])
    with pytest.raises(RuntimeError, match="a pipeline stage failed"):
        run_pipeline(trunk, plan, [torch.randn(1, 5, SIZE, SIZE)] * 3, warmup=1)


# ---- command-line tools -------------------------------------------------------------
def test_profile_and_split_tools_end_to_end(tmp_path, capsys):
    profile, split = _load_tool("profile"), _load_tool("split")
    table_path = tmp_path / "table.json"
    args = ["--variant", "tiny", "--size", str(SIZE), "--warmup", "0", "--repeats", "2", "--no-progress"]
    assert profile.main([*args, "--out", str(table_path)]) == 0
    out = capsys.readouterr().out
    assert "predicted total" in out and "measured total" in out and "| bneck11 |" in out
    table = LatencyTable.load(table_path)
    assert table.variant == "tiny"

    plan_path = tmp_path / "plan.json"
    argv = [str(table_path), "--balanced", "2", "--run", "--frames", "3", "--out", str(plan_path)]
    assert split.main(argv) == 0
    assert "measured slowest stage" in capsys.readouterr().out
    plan = StagePlan.load(plan_path)
    assert plan.num_stages == 2 and plan.measured_ms is not None and plan.predicted_ms is not None

    argv = [str(table_path), "--device-server", "--bandwidth-mbps", "50", "--int8", "--out", str(plan_path)]
    assert split.main(argv) == 0
    assert StagePlan.load(plan_path).meta["int8_activations"] is True

    fit_path = tmp_path / "fit.json"
    argv = [str(table_path), "--budget-ms", "100", "--head", "cls:0.1:4", "--out", str(fit_path)]
    assert split.main(argv) == 0
    assert json.loads(fit_path.read_text())["heads"] == ["cls"]


def test_profile_tool_on_openvino_and_a_missing_runtime(tmp_path, capsys, monkeypatch):
    pytest.importorskip("openvino")
    profile = _load_tool("profile")
    out = tmp_path / "ov.json"
    args = [
        "--variant",
        "tiny",
        "--size",
        str(RUNTIME_SIZE),
        "--warmup",
        "0",
        "--repeats",
        "2",
        "--no-progress",
    ]
    assert profile.main([*args, "--backend", "openvino", "--prediction", "sum", "--out", str(out)]) == 0
    assert "openvino-fp32-1t-32" in capsys.readouterr().out
    assert LatencyTable.load(out).profile.backend == "openvino"
    monkeypatch.setitem(sys.modules, "executorch.runtime", None)
    assert profile.main([*args, "--backend", "executorch", "--dtype", "int8", "--out", str(out)]) == 1
    assert "needs the executorch package" in capsys.readouterr().err


def test_tools_fail_cleanly_on_bad_input(tmp_path, capsys):
    profile, split = _load_tool("profile"), _load_tool("split")
    with pytest.raises(SystemExit) as exc:
        profile.main(["--variant", "tiny", "--backend", "tpu", "--out", str(tmp_path / "t.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tpu'" in err and "'openvino'" in err and "'executorch'" in err
    assert profile.main(["--variant", "tiny", "--dtype", "int8", "--out", str(tmp_path / "t.json")]) == 2
    assert "only supported with backends ('onnxruntime', 'openvino', 'executorch')" in capsys.readouterr().err
    assert profile.main(["--variant", "nope", "--out", str(tmp_path / "t.json")]) == 2

    assert split.main([str(tmp_path / "missing.json"), "--balanced", "2"]) == 2
    assert "latency table file not found" in capsys.readouterr().err
    table_path = tmp_path / "table.json"
    _hand_table([1.0, 2.0, 3.0], [(1, 1, 1)] * 3).save(table_path)
    assert split.main([str(table_path), "--balanced", "9"]) == 2
    assert "k must be an int in 1..3" in capsys.readouterr().err
    assert split.main([str(table_path), "--device-server"]) == 2
    assert "needs --bandwidth-mbps" in capsys.readouterr().err
    assert split.main([str(table_path), "--balanced", "2", "--run"]) == 2
    assert "needs the table's trunk variant" in capsys.readouterr().err
    assert split.main([str(table_path), "--budget-ms", "5"]) == 2
    assert "no head timings" in capsys.readouterr().err
    assert split.main([str(table_path), "--budget-ms", "5", "--head", "cls:x:4"]) == 2


# ---- pipeline backends ----------------------------------------------------------------
def test_onnxruntime_pipeline_outputs_equal_the_unsplit_trunk():
    pytest.importorskip("onnxruntime")
    trunk = create_trunk("tiny").eval()
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    plan = StagePlan.from_cuts(13, [5])
    frames = [torch.randn(1, 3, SIZE, SIZE) for _ in range(3)]
    result = run_pipeline(trunk, plan, frames, warmup=1, backend="onnxruntime")
    # exporting the stages leaves the trunk as it was (modes and BatchNorm statistics)
    assert not any(m.training for m in trunk.modules())
    assert all(torch.equal(v, trunk.state_dict()[k]) for k, v in state.items())
    with torch.no_grad():
        expected = [trunk.forward_stages(f) for f in frames]
    assert len(result.outputs) == len(frames)
    for out, ref in zip(result.outputs, expected):
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert len(result.stage_ms) == 2 and all(t > 0 for t in result.stage_ms)
    assert result.plan.measured_ms == result.stage_ms and result.throughput_fps > 0


def test_pipeline_rejects_unknown_backends_and_mixed_shapes_on_onnxruntime():
    trunk = create_trunk("tiny")
    plan = StagePlan.from_cuts(13, [5])
    msg = "unknown pipeline backend 'tensorrt'; expected one of 'eager', 'onnxruntime'"
    with pytest.raises(ValueError, match=msg):
        run_pipeline(trunk, plan, frames=2, size=SIZE, backend="tensorrt")
    pytest.importorskip("onnxruntime")
    frames = [torch.randn(1, 3, SIZE, SIZE), torch.randn(1, 3, SIZE + 32, SIZE)]
    with pytest.raises(ValueError, match=r"fixed input shape \(1, 3, 64, 64\).*frame 1 has shape"):
        run_pipeline(trunk, plan, frames, warmup=0, backend="onnxruntime")


def test_split_tool_runs_the_pipeline_on_onnxruntime(tmp_path, capsys, tiny_eager_table):
    pytest.importorskip("onnxruntime")
    split = _load_tool("split")
    table_path = tmp_path / "table.json"
    dataclasses.replace(tiny_eager_table, variant="tiny").save(table_path)
    plan_path = tmp_path / "plan.json"
    argv = [str(table_path), "--balanced", "2", "--run", "--frames", "2", "--backend", "onnxruntime"]
    assert split.main([*argv, "--out", str(plan_path)]) == 0
    out = capsys.readouterr().out
    assert "the pipeline runs onnxruntime; the table was measured on eager" in out
    assert "measured slowest stage" in out
    assert StagePlan.load(plan_path).measured_ms is not None
    assert split.main([str(table_path), "--balanced", "2", "--backend", "onnxruntime"]) == 2
    assert "--backend only applies to --run" in capsys.readouterr().err
