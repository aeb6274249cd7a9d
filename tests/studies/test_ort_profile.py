"""Per-operator ONNX Runtime profiles: the event arithmetic, a real profiled run, the benchmark CLI."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mtmnv3.studies.latency.ort_profile import (
    OpProfile,
    OpTime,
    _summarise,
    median_profile,
    op_profile_table,
    profile_ops,
)

ROOT = Path(__file__).resolve().parents[2]


def _run(ts, dur):
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}


def _kernel(ts, dur, op, node):
    return {"cat": "Node", "name": f"{node}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}


def test_summary_leaves_out_warmup_and_sums_per_op_per_run():
    events = [
        _run(0, 100), _kernel(1, 90, "Conv", "a"),  # warm-up: left out
        _run(200, 50), _kernel(201, 10, "Conv", "a"), _kernel(212, 6, "Conv", "b"), _kernel(220, 4, "Mul", "m"),
        _run(300, 70), _kernel(301, 20, "Conv", "a"), _kernel(322, 8, "Conv", "b"), _kernel(331, 2, "Mul", "m"),
        _run(400, 60), _kernel(401, 12, "Conv", "a"), _kernel(414, 6, "Conv", "b"), _kernel(421, 3, "Mul", "m"),
        {"cat": "Node", "name": "x_fence_before", "ts": 402, "dur": 99, "args": {"op_name": "Conv"}},
    ]  # fmt: skip
    prof = _summarise(events, warmup=1, threads=1)
    assert prof.runs == 3
    conv, mul = prof.ops  # slowest first
    # per run: Conv 16, 28, 18 us -> median 18 us; Mul 4, 2, 3 -> 3 us
    assert (conv.op_type, conv.nodes, mul.op_type, mul.nodes) == ("Conv", 2, "Mul", 1)
    assert conv.ms == pytest.approx(0.018) and mul.ms == pytest.approx(0.003)
    assert prof.run_ms == pytest.approx(0.060)
    assert prof.kernel_ms == pytest.approx(0.021)
    with pytest.raises(ValueError, match="no runs"):
        _summarise(events, warmup=4, threads=1)


def test_convolutions_are_split_by_kind_from_the_weight_shape():
    def conv(ts, op, weight, index):
        inputs = [{"float": [1, 8, 16, 16]}] * index + [{"float": weight}]
        return {
            "cat": "Node",
            "name": f"c{ts}_kernel_time",
            "ts": ts,
            "dur": 5,
            "args": {"op_name": op, "input_type_shape": inputs},
        }

    events = [
        _run(0, 100),
        conv(1, "Conv", [8, 1, 3, 3], 1), conv(10, "Conv", [16, 8, 1, 1], 1), conv(20, "Conv", [16, 3, 3, 3], 1),
        conv(30, "QLinearConv", [8, 1, 5, 5], 3), _kernel(40, 5, "Mul", "m"),
    ]  # fmt: skip
    kinds = {o.op_type for o in _summarise(events, warmup=0, threads=1).ops}
    assert kinds == {"Conv (depthwise)", "Conv (pointwise)", "Conv (dense)", "QLinearConv (depthwise)", "Mul"}


def test_table_pairs_two_profiles_and_marks_ops_one_lacks():
    a = OpProfile((OpTime("Conv", 1.0, 10), OpTime("Mul", 0.5, 4)), 1.8, 20, 1)
    b = OpProfile(
        (OpTime("QLinearConv", 0.6, 10), OpTime("Conv", 0.2, 1), OpTime("DequantizeLinear", 0.4, 3)),
        1.5,
        20,
        1,
    )
    table = op_profile_table({"fp32": a, "int8": b})
    lines = table.splitlines()
    assert (
        lines[0]
        == "| op type | fp32 ms (nodes) | int8 ms (nodes) | fp32 share | int8 share | int8 - fp32 ms |"
    )
    assert "| Mul | 0.500 (4) | - | 33.3% | - | -0.500 |" in lines
    assert "| QLinearConv | - | 0.600 (10) | - | 50.0% | +0.600 |" in lines
    assert "| Conv | 1.000 (10) | 0.200 (1) | 66.7% | 16.7% | -0.800 |" in lines
    assert lines[-2] == "| **kernels** | 1.500 | 1.200 | 100% | 100% | -0.300 |"
    assert lines[-1].startswith("| **whole run** | 1.800 | 1.500 |") and lines[-1].endswith("-0.300 |")
    with pytest.raises(ValueError, match="no profiles"):
        op_profile_table({})


def test_median_profile_combines_repeats_per_op():
    a = OpProfile((OpTime("Conv", 1.0, 10), OpTime("Mul", 0.3, 4)), 2.0, 20, 1)
    b = OpProfile((OpTime("Conv", 3.0, 10),), 4.0, 20, 1)
    c = OpProfile((OpTime("Conv", 2.0, 10), OpTime("Mul", 0.5, 4)), 3.0, 20, 1)
    m = median_profile([a, b, c])
    assert [(o.op_type, o.nodes) for o in m.ops] == [("Conv", 10), ("Mul", 4)]
    assert m.ops[0].ms == pytest.approx(2.0) and m.ops[1].ms == pytest.approx(
        0.3
    )  # Mul: median of 0.3, 0, 0.5
    assert m.run_ms == pytest.approx(3.0) and m.runs == 60
    with pytest.raises(ValueError, match="no profiles"):
        median_profile([])


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.Hardswish(), nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU()
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False, input_names=["x"])
    return path


def test_profile_of_a_real_session(small_onnx):
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    prof = profile_ops(small_onnx, x, threads=1, runs=5, warmup=2)
    assert prof.runs == 5 and prof.threads == 1
    kinds = {o.op_type for o in prof.ops}
    assert {"Conv (dense)", "Conv (depthwise)"} <= kinds  # ORT may fuse the activations into them
    assert all(o.ms >= 0 and o.nodes >= 1 for o in prof.ops)
    assert 0 < prof.kernel_ms <= prof.run_ms * 1.05
    with pytest.raises(FileNotFoundError):
        profile_ops(small_onnx.with_name("missing.onnx"), x)
    with pytest.raises(ValueError, match="runs"):
        profile_ops(small_onnx, x, runs=0)


def test_int8_convolutions_get_their_kind_from_the_optimised_graph(small_onnx, tmp_path):
    """Prepacked QLinearConv weights report no shape; the saved optimised graph has it."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.batches = iter([{"x": rng.random((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.batches, None)

    int8 = tmp_path / "small.int8.onnx"
    quantize_static(
        str(small_onnx), str(int8), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
    )  # fmt: skip
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    kinds = {o.op_type for o in profile_ops(int8, x, runs=3, warmup=1).ops}
    assert {"QLinearConv (dense)", "QLinearConv (depthwise)"} <= kinds, kinds


def test_benchmark_cli_prints_the_table_and_writes_json(small_onnx, tmp_path):
    out = tmp_path / "prof.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/ort_op_profile.py"), str(small_onnx), str(small_onnx)]
    r = subprocess.run(
        cmd + ["--runs", "3", "--repeats", "1", "--json", str(out)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "| op type | fp32 ms (nodes) | int8 ms (nodes) |" in r.stdout
    data = json.loads(out.read_text())
    assert data["input"] == [1, 3, 32, 32] and data["fp32"]["ops"]
    bad = subprocess.run(
        cmd[:2] + [str(tmp_path / "nope.onnx"), str(small_onnx)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "not found" in bad.stderr
    zero = subprocess.run(cmd + ["--runs", "0"], capture_output=True, text=True)
    assert zero.returncode == 2 and "--runs must be >= 1" in zero.stderr
