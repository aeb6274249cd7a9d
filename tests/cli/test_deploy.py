"""mtmnv3 export --format/--int8 with its parity check, and mtmnv3 test --backend on the deployed file."""

from __future__ import annotations

import hashlib
import json

import pytest
from _helpers import CONFIG, run_tool, tiny_options

from mtmnv3.runtime.sessions import installed_backends

#: fp32 files must give PyTorch's metrics up to float reordering (a box score at a threshold may flip).
FP32_METRIC_TOL = 0.02


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    data_root, work = tmp / "data", tmp / "work"
    r = run_tool("train", CONFIG, "--work-dir", work, "--cfg-options", *tiny_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, data_root, work / "iter_6.pth"


def export(trained, out, *extra):
    tmp, data_root, ckpt = trained
    args = [CONFIG, ckpt, "--out", out, "--parity-frames", "2", "--calib-images", "4", *extra]
    return run_tool("export", *args, "--cfg-options", *tiny_options(data_root))


def sidecar(path):
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_onnx_export_records_parity_precision_and_config_hash(trained, tmp_path):
    out = tmp_path / "model.onnx"
    r = export(trained, out)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = sidecar(out)
    assert meta["precision"] == "fp32" and meta["format"] == "mtmnv3.OnnxExport"
    assert meta["config_hash"] == hashlib.sha256(CONFIG.read_bytes()).hexdigest()
    assert meta["parity"]["passed"] and meta["parity"]["split"] == "test" and meta["parity"]["frames"] == 2
    assert set(meta["parity"]["outputs"]) == {o["name"] for o in meta["outputs"]}
    assert max(p["rel"] for p in meta["parity"]["outputs"].values()) <= meta["parity"]["rel_tol"]
    assert "parity on 2 held-out frames" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


@pytest.mark.parametrize(("fmt", "suffix"), [("executorch", ".pte"), ("openvino", ".xml"), ("onnx", ".onnx")])
def test_int8_export_with_each_runtimes_quantizer(trained, tmp_path, fmt, suffix):
    backend = {"onnx": "onnxruntime"}.get(fmt, fmt)
    if backend not in installed_backends():
        pytest.skip(f"{backend} is not installed")
    out = tmp_path / f"model{suffix}"
    r = export(trained, out, "--format", fmt, "--int8")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = sidecar(out)
    assert meta["precision"] == "int8" and meta["parity"]["passed"] and meta["parity"]["rel_tol"] == 0.25
    leftovers = {p.name for p in tmp_path.iterdir()} - {out.name, out.name + ".json", "model.bin"}
    assert not leftovers


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--format", "executorch"], 2, "--format executorch writes a .pte file"),
        (["--format", "onnx", "--calib-images", "0", "--int8"], 2, "calib_images must be a positive int"),
        (["--pieces", "plan.json", "--int8"], 2, "stage plan not found"),
    ],
)
def test_bad_export_arguments_leave_nothing(trained, tmp_path, extra, code, message):
    r = export(trained, tmp_path / "model.onnx", *extra)
    assert r.returncode == code and message in r.stderr, r.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_parity_check_exits_1_and_writes_nothing(trained, tmp_path, monkeypatch, capsys):
    from mtmnv3.cli import _deploy
    from mtmnv3.cli import export as export_cli

    monkeypatch.setitem(_deploy.PARITY_REL_TOL, "fp32", -1.0)  # no output can meet it
    tmp, data_root, ckpt = trained
    argv = [str(CONFIG), str(ckpt), "--out", str(tmp_path / "m.onnx"), "--parity-frames", "1"]
    assert export_cli.main([*argv, "--cfg-options", *tiny_options(data_root)]) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _metrics(r, path):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(path.read_text())


def test_test_on_the_deployed_file_matches_pytorch(trained, tmp_path):
    tmp, data_root, ckpt = trained
    opts = ["--cfg-options", *tiny_options(data_root)]
    torch_m = _metrics(
        run_tool("test", CONFIG, ckpt, "--out-json", tmp_path / "t.json", *opts), tmp_path / "t.json"
    )
    for backend in [b for b in ("onnxruntime", "openvino", "executorch") if b in installed_backends()]:
        out = tmp_path / f"{backend}.json"
        r = run_tool(
            "test",
            CONFIG,
            ckpt,
            "--backend",
            backend,
            "--work-dir",
            tmp_path / backend,
            "--out-json",
            out,
            *opts,
        )
        got = _metrics(r, out)
        assert f"fp32 {backend} file" in r.stdout
        for key in ("cls/top1", "det/mAP_50"):
            assert got[key] == pytest.approx(torch_m[key], abs=FP32_METRIC_TOL), (backend, key)


def test_a_model_file_of_another_config_is_refused(trained, tmp_path):
    tmp, data_root, ckpt = trained
    out = tmp_path / "model.onnx"
    assert export(trained, out).returncode == 0
    meta = sidecar(out)
    (tmp_path / "model.onnx.json").write_text(json.dumps({**meta, "config_hash": "0" * 64}))
    r = run_tool(
        "test",
        CONFIG,
        ckpt,
        "--backend",
        "onnxruntime",
        "--model-file",
        out,
        "--cfg-options",
        *tiny_options(data_root),
    )
    assert r.returncode == 2 and "exported from another config: config hash 000000000000" in r.stderr
    assert hashlib.sha256(CONFIG.read_bytes()).hexdigest()[:12] in r.stderr
    r = run_tool("test", CONFIG, ckpt, "--int8", "--cfg-options", *tiny_options(data_root))
    assert r.returncode == 2 and "give --backend too" in r.stderr
    r = run_tool("test", CONFIG, ckpt, "--backend", "tflite")
    assert r.returncode == 2 and "invalid choice: 'tflite'" in r.stderr
