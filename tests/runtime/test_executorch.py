"""ExecuTorch export and execution: fp32 parity with PyTorch, int8 closeness, sidecar, refusals, atomicity."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys

import numpy as np
import pytest
import torch

pytest.importorskip(
    "executorch", reason="the executorch backend is optional: pip install executorch==1.5.1 to test it"
)

from mtmnv3.models import MultiTaskPerceptor  # noqa: E402
from mtmnv3.runtime import executorch_runtime  # noqa: E402
from mtmnv3.runtime.executorch_runtime import (  # noqa: E402
    EXECUTORCH_FORMAT,
    ExecuTorchSession,
    export_executorch,
    require_executorch,
)
from mtmnv3.runtime.export_meta import sidecar_path  # noqa: E402

SIZE = 64
#: fp32 XNNPACK and PyTorch may differ only by float reordering (fused conv/bias,
#: other accumulation orders): the largest error may be this fraction of the
#: output's largest magnitude.
FP32_REL_TOL = 1e-4
#: int8 against fp32: one 8-bit activation step is 1/255 of a tensor's range,
#: and rounding errors of some twenty quantized layers add up to a few steps; a
#: wrong scale, zero point or an unquantized-by-mistake path errs by the order of
#: the range itself. So the largest error may be this fraction of the fp32 range.
INT8_RANGE_FRACTION = 0.1
#: ... and the outputs must still be strongly correlated with fp32 ones.
INT8_MIN_CORRELATION = 0.9
CALIBRATION_BATCHES = 3
CALIBRATION_BATCH = 2
HEADS = dict(
    cls=dict(type="ClsHead", num_classes=11, hidden_channels=32),
    det=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
    emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
)
#: Heads named against their roles: ``a`` embeds, ``b`` detects, ``c`` classifies.
ABC_HEADS = dict(a=HEADS["emb"], b=HEADS["det"], c=HEADS["cls"])


def build(heads=HEADS, channels_last=False) -> MultiTaskPerceptor:
    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=heads,
        neck=dict(type="FPNLite", out_channels=16),
        channels_last=channels_last,
    ).eval()
    # Random BN statistics, so the folded BatchNorm is really exercised.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def images(batch=1, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)


def torch_raw(model, x) -> dict[str, np.ndarray]:
    """The model's raw outputs under the export's names."""
    with torch.no_grad():
        out = model.head_outputs(torch.from_numpy(x), tuple(model.heads))
    flat = {}
    for h, v in out.items():
        if isinstance(v, dict):
            flat.update({f"{h}_{k}": t.numpy() for k, t in v.items()})
        else:
            flat[h] = v.numpy()
    return flat


@pytest.fixture(scope="module")
def fp32_export(tmp_path_factory):
    # channels-last weights (the configs' training layout) must export too.
    model = build(channels_last=True)
    path = tmp_path_factory.mktemp("et_fp32") / "model.pte"
    meta = export_executorch(model, path, input_size=SIZE)
    return model, path, meta


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    model = build(ABC_HEADS)
    path = tmp_path_factory.mktemp("et_int8") / "abc.pte"
    calibration = [images(CALIBRATION_BATCH, seed=s + 1) for s in range(CALIBRATION_BATCHES)]
    meta = export_executorch(model, path, input_size=SIZE, int8=True, calibration=calibration)
    return model, path, meta


def test_fp32_matches_pytorch(fp32_export):
    model, path, _ = fp32_export
    session = ExecuTorchSession(path, threads=1)
    x = images(seed=7)
    ref = torch_raw(model, x)
    outs = session.run(x)
    assert session.output_names == ["cls", "det_heatmap", "det_wh", "det_offset", "emb"]
    assert len(outs) == len(session.output_names)
    for name, out in zip(session.output_names, outs):
        assert out.shape == ref[name].shape and out.dtype == np.float32, name
        scale = float(np.abs(ref[name]).max())
        assert np.abs(out - ref[name]).max() <= FP32_REL_TOL * scale, name


def test_sidecar(fp32_export):
    model, path, meta = fp32_export
    on_disk = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    assert on_disk == meta
    assert sidecar_path(path).name == "model.pte.json"
    assert meta["format"] == EXECUTORCH_FORMAT and meta["version"] == 1
    assert meta["file"] == "model.pte"
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["precision"] == "fp32" and meta["quantizer"] is None
    assert meta["executorch_version"].startswith("1.5")
    assert meta["input"]["size"] == [SIZE, SIZE] and meta["input"]["batch"] == 1
    assert meta["input"]["dynamic_size"] is False and meta["input"]["dynamic_batch"] is False
    assert set(meta["heads"]) == set(HEADS)
    assert meta["heads"]["det"]["outputs"] == {
        "heatmap": "det_heatmap",
        "wh": "det_wh",
        "offset": "det_offset",
    }
    assert meta["trunk"]["arch"] == "small"
    session = ExecuTorchSession(path)
    assert session.meta == meta and session.input_shape == (1, 3, SIZE, SIZE)
    assert "model.pte" in repr(session)


def test_int8_heads_a_b_c_stay_close_to_fp32(int8_export):
    model, path, meta = int8_export
    assert meta["precision"] == "int8"
    assert meta["quantizer"] == dict(
        name="XNNPACKQuantizer",
        per_channel=True,
        symmetric=True,
        activations="static per-tensor int8",
        calibration_batches=CALIBRATION_BATCHES,
        calibration_images=CALIBRATION_BATCHES * CALIBRATION_BATCH,
    )
    assert {h: info["task"] for h, info in meta["heads"].items()} == {
        "a": model.heads["a"].task,
        "b": model.heads["b"].task,
        "c": model.heads["c"].task,
    }
    session = ExecuTorchSession(path, threads=1)
    assert session.output_names == ["a", "b_heatmap", "b_wh", "b_offset", "c"]
    x = images(seed=7)
    ref = torch_raw(model, x)
    for name, out in zip(session.output_names, session.run(x)):
        assert out.shape == ref[name].shape, name
        span = float(ref[name].max() - ref[name].min())
        err = float(np.abs(out - ref[name]).max())
        corr = float(np.corrcoef(out.ravel(), ref[name].ravel())[0, 1])
        assert err <= INT8_RANGE_FRACTION * span, (name, err, span)
        assert corr >= INT8_MIN_CORRELATION, (name, corr)


def test_wrong_shape_is_refused(fp32_export):
    session = ExecuTorchSession(fp32_export[1])
    with pytest.raises(ValueError, match=r"of shape \(1, 3, 64, 64\).*got \(2, 3, 64, 64\)"):
        session.run(images(batch=2))
    with pytest.raises(ValueError, match=r"got \(1, 3, 96, 64\)"):
        session.run(np.zeros((1, 3, 96, SIZE), np.float32))


def test_bad_threads_and_missing_sidecar_are_refused(fp32_export, tmp_path):
    path = fp32_export[1]
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        ExecuTorchSession(path, threads=0)
    lone = tmp_path / "lone.pte"
    shutil.copy(path, lone)
    with pytest.raises(FileNotFoundError, match="lone.pte.json"):
        ExecuTorchSession(lone)


def test_sessions_with_different_threads_take_turns(fp32_export):
    # Each resize replaces executorch's pool; a session loaded before a resize
    # must reload its method (else its XNNPACK delegate runs on a freed pool).
    from executorch.extension.pybindings import portable_lib

    path = fp32_export[1]
    x = images(seed=3)
    two, one, default = (
        ExecuTorchSession(path, threads=2),
        ExecuTorchSession(path, threads=1),
        ExecuTorchSession(path),
    )
    expected = default.run(x)
    for session, count in ((two, 2), (one, 1), (default, 1), (two, 2), (default, 2), (one, 1)):
        outs = session.run(x)
        if session.threads is not None:
            assert portable_lib._threadpool_get_thread_count() == count
        for out, ref in zip(outs, expected):
            np.testing.assert_allclose(out, ref, rtol=0, atol=FP32_REL_TOL * float(np.abs(ref).max()))


def test_int8_needs_calibration(tmp_path):
    model = build()
    with pytest.raises(ValueError, match="int8 export needs calibration batches.*got None"):
        export_executorch(model, tmp_path / "q.pte", input_size=SIZE, int8=True)
    with pytest.raises(ValueError, match="got an empty iterable"):
        export_executorch(model, tmp_path / "q.pte", input_size=SIZE, int8=True, calibration=[])
    with pytest.raises(ValueError, match=r"got shape \(1, 3, 32, 32\)"):
        export_executorch(
            model, tmp_path / "q.pte", input_size=SIZE, int8=True, calibration=[np.zeros((1, 3, 32, 32))]
        )
    with pytest.raises(TypeError, match="int8 must be a bool, got str 'yes'"):
        export_executorch(model, tmp_path / "q.pte", input_size=SIZE, int8="yes")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_leaves_nothing(tmp_path, monkeypatch):
    model = build()
    out = tmp_path / "deploy" / "model.pte"

    def failing_lowering(module, example):
        raise RuntimeError("lowering failed")

    monkeypatch.setattr(executorch_runtime, "_lower", failing_lowering)
    with pytest.raises(RuntimeError, match="lowering failed"):
        export_executorch(model, out, input_size=SIZE)
    assert not out.exists() and not sidecar_path(out).exists()

    # The program is written, then the sidecar fails: neither file, no temp file.
    def failing_json(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(executorch_runtime, "_lower", lambda module, example: b"program")
    monkeypatch.setattr(executorch_runtime, "atomic_write_json", failing_json)
    with pytest.raises(OSError, match="disk full"):
        export_executorch(model, out, input_size=SIZE)
    assert list(out.parent.iterdir()) == []


def test_require_executorch_explains_the_install(monkeypatch):
    assert require_executorch().__name__ == "executorch"
    monkeypatch.setitem(sys.modules, "executorch", None)
    with pytest.raises(
        ImportError, match=r"pip install executorch==1\.5\.1 \(see requirements/constraints.txt\)"
    ):
        require_executorch()
