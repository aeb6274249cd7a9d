"""mtmnv3 export at a rectangular input shape (--input-size WxH, --frame-size WxH): the file, its sidecar,
the parity check on held-out frames letterboxed into the rectangle, and the file against PyTorch on a 2:1 frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _helpers import CONFIG, tiny_options

from mtmnv3.apis import init_model
from mtmnv3.cli import export as export_cli
from mtmnv3.cli._deploy import DeployError, check_model_file
from mtmnv3.runtime.frame_runner import DeployedFrameRunner, TorchFrameRunner
from mtmnv3.runtime.sessions import installed_backends

#: Boxes (frame pixels) and probabilities of an fp32 file against PyTorch: float reordering only.
BOX_ATOL = 2e-2
PROB_ATOL = 1e-4


def assert_same_boxes(got, want, atol):
    """The same boxes up to ``atol`` (frame pixels), in any order (boxes of tied scores may swap);
    returns, per box of ``got``, the index of its box in ``want``."""
    assert len(got) == len(want) > 0
    diff = np.abs(got[:, None, :] - want[None, :, :]).max(-1)
    assert diff.min(1).max() <= atol and diff.min(0).max() <= atol, diff.min(1).max()
    return diff.argmin(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny three-task config (its synthetic test split) and a checkpoint of its initial weights."""
    tmp = tmp_path_factory.mktemp("rect")
    opts = [*tiny_options(tmp / "data"), "model.heads.det.score_thr=0.0"]
    ckpt = tmp / "init.pth"
    torch.manual_seed(0)
    torch.save({"state_dict": init_model(CONFIG, None, _options(opts)).state_dict(), "meta": {}}, ckpt)
    return ckpt, opts


def _options(opts):
    from mtmnv3.cli.live_demo import parse_cfg_options

    return parse_cfg_options(opts)


def export(setup, out, *extra):
    ckpt, opts = setup
    argv = [str(CONFIG), str(ckpt), "--out", str(out), "--parity-frames", "2", "--exporter", "torchscript"]
    return export_cli.main([*argv, *map(str, extra), "--cfg-options", *opts])


def sidecar(path):
    return json.loads(path.with_name(path.name + ".json").read_text())


def test_input_size_writes_a_rectangular_file_checked_against_pytorch(setup, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert export(setup, out, "--input-size", "128x64") == 0
    assert "input 128x64 (WxH)" in capsys.readouterr().out
    meta = sidecar(out)
    assert meta["input"]["size"] == [64, 128] and not meta["input"]["dynamic_size"]
    assert meta["parity"]["passed"] and meta["parity"]["split"] == "test"
    # The file against PyTorch on a 2:1 frame: both run at 128x64, boxes in frame pixels.
    ckpt, opts = setup
    model = init_model(CONFIG, ckpt, _options(opts))
    frame = np.random.default_rng(0).integers(0, 256, (90, 180, 3), dtype=np.uint8)
    deployed, eager = DeployedFrameRunner(out, model, threads=1), TorchFrameRunner(model, 128)
    assert deployed.input_shape(frame.shape[:2]) == eager.input_shape(frame.shape[:2]) == (64, 128)
    want, got = eager.predict(frame), deployed.predict(frame)
    assert_same_boxes(got.bboxes, want.bboxes, BOX_ATOL)
    np.testing.assert_allclose(got.class_probs, want.class_probs, atol=PROB_ATOL)
    assert got.bboxes[:, [0, 2]].max() <= 180 and got.bboxes[:, [1, 3]].max() <= 90
    # The file fits a request of its own shape and is refused for another, naming both.
    assert check_model_file(out, CONFIG, model, (64, 128))["input"]["size"] == [64, 128]
    with pytest.raises(
        DeployError, match=r"takes 128x64 \(WxH\) inputs; the config's test size is 96x96 \(WxH\)"
    ):
        check_model_file(out, CONFIG, model, 96)


def test_frame_size_derives_the_rectangle_from_a_sample_frame(setup, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert export(setup, out, "--frame-size", "1920x1080", "--size", "128") == 0
    assert sidecar(out)["input"]["size"] == [96, 128]  # 128x72 -> 128x96
    assert "input 128x96 (WxH)" in capsys.readouterr().out


def test_held_out_frames_are_letterboxed_into_the_rectangle(setup):
    from mtmnv3.cli._deploy import held_out_frames, with_input_shape
    from mtmnv3.engine import load_config

    ckpt, opts = setup
    cfg = load_config(CONFIG, _options(opts))
    shaped = with_input_shape(cfg, (64, 128))
    assert shaped.test_dataloader.dataset.pipeline[0]["size"] == (128, 64)
    assert cfg.test_dataloader.dataset.pipeline[0]["size"] == 96  # the config itself is left alone
    model = init_model(CONFIG, ckpt, _options(opts))
    frames, source = held_out_frames(cfg, model, 2, (64, 128))
    assert source == "test" and [f.shape for f in frames] == [(1, 3, 64, 128)] * 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input-size", "100x64"], "multiple of 32"),
        (["--input-size", "128x64", "--size", "96"], "--input-size gives the whole input shape"),
        (["--frame-size", "1920x1080", "--size", "100"], "long_side must be a positive multiple of 32"),
    ],
)
def test_bad_sizes_exit_2_and_leave_nothing(setup, tmp_path, capsys, extra, message):
    assert export(setup, tmp_path / "model.onnx", *extra) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_size_is_a_usage_error(setup, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        export(setup, tmp_path / "model.onnx", "--input-size", "128")
    assert exc.value.code == 2 and "expected WIDTHxHEIGHT" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "suffix"), [("executorch", ".pte"), ("openvino", ".xml")])
def test_other_runtimes_at_a_rectangle(setup, tmp_path, fmt, suffix):
    if fmt not in installed_backends():
        pytest.skip(f"{fmt} is not installed")
    out = tmp_path / f"model{suffix}"
    assert export(setup, out, "--format", fmt, "--input-size", "128x64") == 0
    assert sidecar(out)["input"]["size"] == [64, 128] and sidecar(out)["parity"]["passed"]
    ckpt, opts = setup
    model = init_model(CONFIG, ckpt, _options(opts))
    frame = np.random.default_rng(1).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    want, got = TorchFrameRunner(model, 128).predict(frame), DeployedFrameRunner(out, model).predict(frame)
    assert_same_boxes(got.bboxes, want.bboxes, BOX_ATOL)


def test_test_evaluates_a_rectangular_file_at_its_shape(setup, tmp_path, capsys):
    """mtmnv3 test --backend X --model-file F --input-size WxH: frames letterboxed into the file's rectangle;
    without --input-size the file is refused, naming both shapes."""
    from mtmnv3.cli import test as test_cli

    out = tmp_path / "model.onnx"
    assert export(setup, out, "--input-size", "128x64") == 0
    ckpt, opts = setup
    base = [str(CONFIG), str(ckpt), "--backend", "onnxruntime", "--model-file", str(out), "--threads", "1"]
    capsys.readouterr()
    assert test_cli.main([*base, "--cfg-options", *opts]) == 2
    err = capsys.readouterr().err
    assert "takes 128x64 (WxH) inputs" in err and "give --input-size" in err
    assert test_cli.main([*base, "--input-size", "128x64", "--cfg-options", *opts]) == 0
    assert "| cls | 1.0000 |" in capsys.readouterr().out  # the file ran on every held-out frame
    # --input-size is the deployed file's shape: without --backend it is a usage error
    assert test_cli.main([str(CONFIG), str(ckpt), "--input-size", "128x64", "--cfg-options", *opts]) == 2
