"""OpenVINO export and CPU sessions: fp32 parity with PyTorch, dynamic size, NNCF int8, sidecar, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="the openvino backend tests need the openvino package")

from mtmnv3.models import MultiTaskPerceptor  # noqa: E402
from mtmnv3.runtime import openvino_runtime  # noqa: E402
from mtmnv3.runtime.export_meta import sidecar_path  # noqa: E402
from mtmnv3.runtime.openvino_runtime import (  # noqa: E402
    EXPORT_FORMAT,
    OpenVINOSession,
    export_openvino,
    load_openvino_meta,
    require_openvino,
)

SIZE = 64
#: fp32 OpenVINO vs PyTorch raw outputs (absolute): both compute in float32, but the CPU
#: plugin fuses and reorders convolution sums, so results differ by float rounding only.
FP32_ATOL = 1e-4
#: int8 vs fp32 raw outputs, relative to each output's fp32 range: 8-bit activations and
#: weights of a randomly initialised network (symmetric, per-tensor activation scales),
#: compounded over ~20 quantized layers, stay within a few quantization steps of 1/255 of
#: the range per layer; a quarter of the range catches a broken quantization (wrong scale,
#: swapped outputs) without depending on the random weights.
INT8_REL_TOL = 0.25
#: Calibration batches for the int8 tests (seeded random normalised images).
CALIB_BATCHES = 4
HEADS = dict(
    cls=dict(type="ClsHead", num_classes=11, hidden_channels=32),
    det=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
    emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
)
OUTPUT_NAMES = ["cls", "det_heatmap", "det_wh", "det_offset", "emb"]


def build(heads=HEADS) -> MultiTaskPerceptor:
    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=heads,
        neck=dict(type="FPNLite", out_channels=16),
    ).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def images(h=SIZE, w=SIZE, n=1, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


def torch_raw(model, x, heads) -> list[np.ndarray]:
    with torch.no_grad():
        out = model.head_outputs(torch.from_numpy(x), tuple(heads))
    flat = []
    for h in heads:
        flat += [v.numpy() for v in out[h].values()] if isinstance(out[h], dict) else [out[h].numpy()]
    return flat


def calibration(n=CALIB_BATCHES, size=SIZE):
    return [images(size, size, seed=100 + i) for i in range(n)]


@pytest.fixture(scope="module")
def model():
    return build()


@pytest.fixture(scope="module")
def fp32_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ov") / "model.xml"
    return path, export_openvino(model, path, input_size=SIZE)


@pytest.fixture(scope="module")
def int8_export(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ov8") / "model.xml"
    return path, export_openvino(model, path, input_size=SIZE, int8=True, calibration=calibration())


def test_fp32_matches_pytorch_per_output(model, fp32_export):
    path, _ = fp32_export
    session = OpenVINOSession(path, threads=1)
    assert session.output_names == OUTPUT_NAMES
    x = images()
    got, ref = session.run(x), torch_raw(model, x, HEADS)
    assert len(got) == len(ref)
    for name, g, r in zip(session.output_names, got, ref):
        assert g.shape == r.shape, name
        assert np.abs(g - r).max() <= FP32_ATOL, (name, float(np.abs(g - r).max()))
    # The one infer request is reused; results must not alias its buffers.
    again = session.run(images(seed=2))
    assert not np.array_equal(again[0], got[0])


def test_session_compile_properties_and_strided_input(model, fp32_export):
    path, _ = fp32_export
    session = OpenVINOSession(path, threads=1)
    assert session.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert session.compiled.get_property("ENABLE_CPU_PINNING") is openvino_runtime.CPU_PINNING
    # The input is shared with the request, not copied: a strided view is made contiguous first.
    x = images(seed=3)
    wide = np.concatenate([x, x], axis=3)[..., ::2]
    assert not wide.flags["C_CONTIGUOUS"]
    for g, r in zip(session.run(wide), torch_raw(model, np.ascontiguousarray(wide), HEADS)):
        assert np.abs(g - r).max() <= FP32_ATOL


def test_sidecar(model, fp32_export):
    path, meta = fp32_export
    assert sidecar_path(path).name == "model.xml.json"
    on_disk = json.loads(sidecar_path(path).read_text())
    assert on_disk == meta == load_openvino_meta(path)
    assert meta["format"] == EXPORT_FORMAT and meta["version"] == 1
    assert meta["file"] == "model.xml" and meta["weights"] == "model.bin"
    import hashlib

    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["weights_sha256"] == hashlib.sha256(path.with_suffix(".bin").read_bytes()).hexdigest()
    assert meta["precision"] == "fp32" and meta["quantizer"] is None
    assert meta["openvino_version"] == require_openvino().get_version()
    assert [o["name"] for o in meta["outputs"]] == OUTPUT_NAMES
    assert meta["input"]["size"] == [SIZE, SIZE] and meta["input"]["batch"] == 1
    assert not meta["input"]["dynamic_size"]
    assert set(meta["heads"]) == set(HEADS) and meta["trunk"]["arch"] == "small"
    # Nothing but the IR pair and the sidecar is left in the folder.
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.bin", "model.xml", "model.xml.json"]


def test_fixed_export_refuses_other_shapes(fp32_export):
    path, _ = fp32_export
    session = OpenVINOSession(path)
    with pytest.raises(ValueError, match=r"\(64, 64\).*\(96, 64\)"):
        session.run(images(96, 64))
    with pytest.raises(ValueError, match="batch 1.*batch 2"):
        session.run(images(n=2))
    with pytest.raises(TypeError, match="float64"):
        session.run(images().astype(np.float64))


def test_dynamic_size_runs_two_sizes(model, tmp_path):
    path = tmp_path / "dyn.xml"
    meta = export_openvino(model, path, heads="det,emb", input_size=SIZE, dynamic_size=True)
    assert meta["input"]["dynamic_size"]
    session = OpenVINOSession(path, threads=1)
    assert session.output_names == OUTPUT_NAMES[1:]
    for h, w in ((SIZE, SIZE), (96, 128)):
        x = images(h, w)
        for name, g, r in zip(session.output_names, session.run(x), torch_raw(model, x, ("det", "emb"))):
            assert g.shape == r.shape, (name, h, w)
            assert np.abs(g - r).max() <= FP32_ATOL, (name, h, w)
    with pytest.raises(ValueError, match="multiples of 32"):
        session.run(images(80, 64))


def test_int8_runs_and_stays_close_to_fp32(int8_export, fp32_export):
    path, meta = int8_export
    assert meta["precision"] == "int8"
    q = meta["quantizer"]
    assert q["tool"] == "nncf" and q["preset"] == "performance" and q["calibration_batches"] == CALIB_BATCHES
    int8, fp32 = OpenVINOSession(path, threads=1), OpenVINOSession(fp32_export[0], threads=1)
    assert int8.precision == "int8" and int8.output_names == OUTPUT_NAMES
    # The convolutions really run in int8 (not only fake-quantized in float).
    runtime = int8.compiled.get_runtime_model()
    conv_precisions = {
        op.get_rt_info()["runtimePrecision"].astype(str)
        for op in runtime.get_ops()
        if op.get_rt_info()["layerType"].astype(str) == "Convolution"
    }
    assert conv_precisions & {"u8", "i8"}, conv_precisions
    x = images(seed=7)
    for name, a, b in zip(OUTPUT_NAMES, int8.run(x), fp32.run(x)):
        span = float(b.max() - b.min())
        assert np.abs(a - b).max() <= INT8_REL_TOL * span, (name, float(np.abs(a - b).max()), span)


def test_heads_named_a_b_c(tmp_path):
    heads = dict(
        a=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
        b=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
        c=dict(type="ClsHead", num_classes=11, hidden_channels=32),
    )
    model = build(heads)
    path = tmp_path / "abc.xml"
    meta = export_openvino(model, path, input_size=SIZE)
    names = ["a", "b_heatmap", "b_wh", "b_offset", "c"]
    assert [o["name"] for o in meta["outputs"]] == names
    assert meta["heads"]["b"]["outputs"] == {"heatmap": "b_heatmap", "wh": "b_wh", "offset": "b_offset"}
    session = OpenVINOSession(path)
    assert session.output_names == names
    x = images()
    for name, g, r in zip(names, session.run(x), torch_raw(model, x, ("a", "b", "c"))):
        assert np.abs(g - r).max() <= FP32_ATOL, name


def test_int8_needs_calibration(model, tmp_path):
    with pytest.raises(ValueError, match="calibration=None"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE, int8=True)
    with pytest.raises(ValueError, match="only used with int8"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE, calibration=calibration(1))
    with pytest.raises(ValueError, match=r"\(96, 96\)"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE, int8=True, calibration=calibration(1, 96))
    with pytest.raises(ValueError, match="empty"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE, int8=True, calibration=[])
    with pytest.raises(ValueError, match=r"m\.onnx'"):
        export_openvino(model, tmp_path / "m.onnx", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_nothing(model, tmp_path, monkeypatch):
    ov = require_openvino()
    real_save = ov.save_model

    def save_then_fail(ov_model, out, compress_to_fp16=True):
        real_save(ov_model, out, compress_to_fp16=compress_to_fp16)
        raise RuntimeError("disk full")

    monkeypatch.setattr(ov, "save_model", save_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    # A failure after the IR pair is in place (writing the sidecar) removes the pair too.
    def fail_json(*args, **kwargs):
        raise OSError("read-only")

    monkeypatch.setattr(openvino_runtime, "atomic_write_json", fail_json)
    with pytest.raises(OSError, match="read-only"):
        export_openvino(model, tmp_path / "m.xml", input_size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    blocked = {"openvino"}

    def without(name, *args, **kwargs):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    with pytest.raises(ImportError, match=r"pip install openvino==2026\.4\.1"):
        require_openvino()
    blocked = {"nncf"}
    require_openvino()
    with pytest.raises(ImportError, match=r"pip install nncf==3\.4\.0"):
        require_openvino(int8=True)


def test_calibration_is_regrouped_to_the_fixed_batch():
    batches = [images(seed=i) for i in range(5)]
    got = openvino_runtime._calibration_batches(batches, (SIZE, SIZE), 2, False, False)
    assert [b.shape for b in got] == [(2, 3, SIZE, SIZE)] * 2
    np.testing.assert_array_equal(got[1][1], batches[3][0])
    assert len(openvino_runtime._calibration_batches(batches, (SIZE, SIZE), 2, True, False)) == 5
    with pytest.raises(ValueError, match="fewer than one batch of 8"):
        openvino_runtime._calibration_batches(batches, (SIZE, SIZE), 8, False, False)
    with pytest.raises(ValueError, match=r"int64 \(1, 3, 2, 2\)"):
        openvino_runtime._calibration_batches([np.zeros((1, 3, 2, 2), np.int64)], (2, 2), 1, False, False)
