"""The run-time interface over every backend: backend checks, sidecar formats, sessions and frame runners."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime import sessions
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.export_meta import FORMAT_BACKENDS, load_export_meta
from mtmnv3.runtime.frame_runner import (
    EXPORT_SUFFIXES,
    ExportedFrameRunner,
    TorchFrameRunner,
    build_frame_runner,
    export_for_backend,
)
from mtmnv3.runtime.sessions import BACKENDS, check_backend, installed_backends, open_session

SIZE = 64
#: Decoded boxes of a deployed fp32 file and of PyTorch agree to this (input pixels): the
#: runtimes reorder float sums, which moves raw outputs by ~1e-5 and boxes by far less than a pixel.
BOX_ATOL = 1e-2
#: Class probabilities agree to this (fp32 on both sides).
PROB_ATOL = 1e-4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=5, hidden_channels=16),
            det=dict(type="CenterDetHead", num_classes=3, feat_channels=16, score_thr=0.0, max_per_img=20),
            emb=dict(type="EmbeddingHead", num_ids=10, embed_dim=8, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
    ).eval()


def frame(seed=0, shape=(48, 80)):
    return np.random.default_rng(seed).integers(0, 255, (*shape, 3), dtype=np.uint8)


def test_backends_and_formats_agree():
    assert set(FORMAT_BACKENDS.values()) | {"torch"} == set(BACKENDS)
    assert set(EXPORT_SUFFIXES) == set(BACKENDS) - {"torch"}
    assert {"torch", "onnxruntime"} <= set(installed_backends())


def test_unknown_backend_lists_the_installed_ones():
    with pytest.raises(
        ValueError, match=r"unknown backend 'tensorrt'; known backends: .*installed here: torch"
    ):
        check_backend("tensorrt")
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        build_frame_runner(torch.nn.Module(), "tflite")


def test_a_runtime_that_does_not_import_names_its_package(monkeypatch):
    monkeypatch.setitem(sessions._BACKEND_MODULES, "openvino", "mtmnv3_no_such_runtime")
    with pytest.raises(ImportError, match=r"backend 'openvino' is not installed .*pip install openvino"):
        check_backend("openvino")
    assert "openvino" not in installed_backends()


def test_torch_and_onnxruntime_runners_agree_at_any_frame_shape(model, tmp_path):
    torch_runner = TorchFrameRunner(model, SIZE)
    ort_runner = build_frame_runner(model, "onnxruntime", input_size=SIZE, threads=1, export_dir=tmp_path)
    assert isinstance(ort_runner, ExportedFrameRunner)
    for shape in ((48, 80), (90, 40)):
        want, got = torch_runner.predict(frame(shape=shape)), ort_runner.predict(frame(shape=shape))
        assert len(want.bboxes) == len(got.bboxes) > 0
        np.testing.assert_allclose(got.bboxes, want.bboxes, atol=BOX_ATOL)
        np.testing.assert_allclose(got.class_probs, want.class_probs, atol=PROB_ATOL)
        assert got.bboxes[:, 2].max() <= shape[1] + BOX_ATOL and got.bboxes[:, 3].max() <= shape[0] + BOX_ATOL
    ort_runner.close()


def test_open_session_reads_the_runtime_from_the_sidecar(model, tmp_path):
    path = tmp_path / "m.onnx"
    meta = export_for_backend(model, "onnxruntime", path, input_size=SIZE)
    session = open_session(path)
    assert session.backend == "onnxruntime" and session.meta == meta
    x = np.random.default_rng(0).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    out = session.run(x)
    assert list(out) == [o["name"] for o in meta["outputs"]]
    assert DeployedRunner(path).backend == "onnxruntime"


def test_a_sidecar_of_another_format_is_refused(model, tmp_path):
    path = tmp_path / "m.onnx"
    export_for_backend(model, "onnxruntime", path, input_size=SIZE)
    sidecar = tmp_path / "m.onnx.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "format": "mtmnv3.TFLiteExport"}))
    with pytest.raises(ValueError, match=r"not an mtmnv3 export \(format 'mtmnv3.TFLiteExport'"):
        load_export_meta(path)
    sidecar.write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        open_session(path)


def test_export_arguments_are_checked(model, tmp_path):
    with pytest.raises(ValueError, match="int8 for onnxruntime is made by `mtmnv3 quantize`"):
        export_for_backend(model, "onnxruntime", tmp_path / "m.onnx", int8=True)
    with pytest.raises(ValueError, match="nothing to export"):
        export_for_backend(model, "torch", tmp_path / "m.pt")
    with pytest.raises(ValueError, match="int8 needs calibration"):
        ExportedFrameRunner(model, "onnxruntime", SIZE, int8=True)
    with pytest.raises(ValueError, match="int8 runs on a deployment runtime"):
        build_frame_runner(model, "torch", int8=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("backend", ["executorch", "openvino"])
def test_every_installed_runtime_matches_torch(model, tmp_path, backend):
    if backend not in installed_backends():
        pytest.skip(f"{backend} is not installed ({sessions.INSTALL_HINTS[backend]})")
    torch_runner = TorchFrameRunner(model, SIZE)
    runner = build_frame_runner(model, backend, input_size=SIZE, threads=1, export_dir=tmp_path)
    want, got = torch_runner.predict(frame()), runner.predict(frame())
    assert len(got.bboxes) == len(want.bboxes) > 0
    np.testing.assert_allclose(got.bboxes, want.bboxes, atol=BOX_ATOL)
    np.testing.assert_allclose(got.class_probs, want.class_probs, atol=PROB_ATOL)
    # A head subset and another size are exported on demand, at the rectangle that keeps the
    # frame's aspect (48x80 at long side 128: 128x96, w x h).
    det_only = runner.predict(frame(), heads=["det"], input_size=2 * SIZE)
    assert det_only.class_probs is None and det_only.embeddings is None
    key = ("det",) if backend == "openvino" else ("det", 96, 128)  # OpenVINO files take any size
    assert runner._runners[key].input_size == (96, 128)
    runner.close()
