"""ONNX export and ONNX Runtime execution: parity with PyTorch, stage pieces, head subsets, errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mtmnv3.heads.base import DETECTION

from mtmnv3.apis import init_model
from mtmnv3.backbone.plan import StagePlan
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data.transforms import Letterbox
from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime import export_graphs, onnx_export
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.export_meta import load_export_meta
from mtmnv3.runtime.onnx_export import (
    export_onnx,
    export_split,
    sidecar_path,
    stage_ranges_from_plan,
)
from mtmnv3.runtime.ort_runtime import make_session

ROOT = Path(__file__).resolve().parents[2]
SIZE = 128
#: Raw outputs of ORT and PyTorch (fp32) must agree to this (absolute).
RAW_ATOL = 1e-4
#: Decoded boxes (input pixels) must agree to this.
BOX_ATOL = 1e-3
HEADS = ("cls", "det", "emb")


def model_cfg(arch="small", width_mult=0.5, cls_stride=None):
    cls = dict(type="ClsHead", num_classes=11, hidden_channels=64)
    if cls_stride is not None:
        cls["stride"] = cls_stride
    return dict(
        trunk=dict(type="MobileNetV3Trunk", arch=arch, width_mult=width_mult),
        heads=dict(
            cls=cls,
            det=dict(type="CenterDetHead", num_classes=10, feat_channels=32),
            emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=32, feat_channels=32),
        ),
        neck=dict(type="FPNLite", out_channels=32),
    )


def build(**kwargs):
    torch.manual_seed(0)
    model = MultiTaskPerceptor(**model_cfg(**kwargs)).eval()
    # Random BN statistics, so folded BatchNorm is really exercised.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def torch_raw(model, x, heads=HEADS):
    """The model's raw outputs under the export's names."""
    with torch.no_grad():
        out = model.head_outputs(torch.as_tensor(x), heads)
    flat = {}
    for h in heads:
        if isinstance(out[h], dict):
            flat.update({f"{h}_{k}": v.numpy() for k, v in out[h].items()})
        else:
            flat[h] = out[h].numpy()
    return flat


def max_diffs(a, b):
    assert set(a) == set(b), (sorted(a), sorted(b))
    return {k: float(np.abs(a[k] - b[k]).max()) for k in a}


def frame(h=100, w=150, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny():
    return build()


@pytest.fixture(scope="module", params=["dynamo", "torchscript"])
def exported(request, tiny, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param) / "tiny.onnx"
    meta = export_onnx(tiny, path, input_size=SIZE, exporter=request.param, dynamic_batch=True)
    return path, meta


# ---- whole model -----------------------------------------------------------------------
def test_channels_last_model_exports_with_parity(tiny, tmp_path):
    """The default configs train in channels-last memory; the exported graph is the same."""
    fast = MultiTaskPerceptor(**model_cfg(), channels_last=True).eval()
    fast.load_state_dict(tiny.state_dict())
    path = tmp_path / "cl.onnx"
    export_onnx(fast, path, input_size=SIZE, exporter="dynamo")
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    diffs = max_diffs(DeployedRunner(path, threads=1).run_raw(x), torch_raw(tiny, x))
    assert max(diffs.values()) < RAW_ATOL, diffs


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_model_with_loss_weighting_state_exports(tiny, tmp_path, exporter):
    """GradNorm keeps its optimiser as extra (non-tensor) state, which the TorchScript
    tracer cannot take; the export leaves it out and puts it back."""
    model = MultiTaskPerceptor(**model_cfg(), loss_weighting=dict(type="GradNorm")).eval()
    model.load_state_dict(tiny.state_dict(), strict=False)
    weighting = model.loss_weighting
    assert "loss_weighting._extra_state" in model.state_dict()
    path = tmp_path / "gradnorm.onnx"
    export_onnx(model, path, input_size=SIZE, exporter=exporter, heads=("cls",))
    assert model.loss_weighting is weighting and "loss_weighting._extra_state" in model.state_dict()
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    diffs = max_diffs(DeployedRunner(path, threads=1).run_raw(x), torch_raw(tiny, x, heads=("cls",)))
    assert max(diffs.values()) < RAW_ATOL, diffs


def test_raw_outputs_match_torch(tiny, exported):
    path, meta = exported
    assert [o["name"] for o in meta["outputs"]] == ["cls", "det_heatmap", "det_wh", "det_offset", "emb"]
    runner = DeployedRunner(path, threads=1)
    assert runner.is_cpu and runner.providers == ["CPUExecutionProvider"]
    x = torch.randn(3, 3, SIZE, SIZE).numpy()  # batch 3: the batch axis is dynamic
    diffs = max_diffs(runner.run_raw(x), torch_raw(tiny, x))
    assert max(diffs.values()) < RAW_ATOL, diffs


def test_sessions_sleep_between_runs_unless_asked_to_spin(exported):
    from mtmnv3.runtime.ort_runtime import make_session

    path, _ = exported
    key = "session.intra_op.allow_spinning"
    assert make_session(path, threads=2).get_session_options().get_session_config_entry(key) == "0"
    spinning = make_session(path, threads=2, allow_spinning=True)
    assert spinning.get_session_options().get_session_config_entry(key) == "1"


def test_sidecar_records_what_deployment_needs(exported):
    path, meta = exported
    assert json.loads(sidecar_path(path).read_text()) == meta
    assert meta["input"]["size"] == [SIZE, SIZE] and meta["input"]["color"] == "RGB"
    assert meta["input"]["mean"] == pytest.approx([123.675, 116.28, 103.53])
    assert meta["input"]["std"] == pytest.approx([58.395, 57.12, 57.375])
    assert meta["opset"] == onnx_export.DEFAULT_OPSET and meta["torch_version"] == torch.__version__
    assert meta["heads"]["det"]["stride"] == 8 and meta["heads"]["det"]["task"] == DETECTION
    assert set(meta["heads"]) == set(HEADS)


def test_preprocessing_matches_the_model_pipeline(tiny, exported):
    """Letterbox + BGR->RGB + mean/std in numpy equals the dataset transform + data preprocessor."""
    runner = DeployedRunner(exported[0], input_color="bgr")
    rgb = frame()
    blob, meta = runner.preprocess(np.ascontiguousarray(rgb[..., ::-1]))
    boxed = Letterbox(SIZE)({"img": rgb})
    data = tiny.data_preprocessor(dict(inputs=[torch.from_numpy(boxed["img"].transpose(2, 0, 1).copy())]))
    np.testing.assert_allclose(blob, data["inputs"][0].numpy(), atol=1e-5)
    assert meta["pad_param"] == boxed["pad_param"] and meta["scale_factor"] == boxed["scale_factor"]


def test_runner_decodes_as_torch_predict(tiny, exported):
    """Given the same raw outputs, the runner's post-processing gives exactly torch's detections
    (the output names, head metadata and frame metadata are wired right)."""
    runner = DeployedRunner(exported[0], input_color="rgb")
    for img in (frame(), frame(90, 60, seed=1)):
        blob, meta = runner.preprocess(img)
        sample = MultiTaskDataSample(metainfo=dict(img_shape=(SIZE, SIZE), **meta))
        (ref,) = tiny.predict(torch.from_numpy(blob)[None], [sample])
        (pred,) = runner.postprocess(torch_raw(tiny, blob[None]), [meta])
        inst = ref.pred_instances
        assert len(pred.bboxes) == len(inst) > 0
        np.testing.assert_allclose(pred.bboxes, inst.bboxes.numpy(), atol=1e-5)
        np.testing.assert_array_equal(pred.scores, inst.scores.numpy())
        np.testing.assert_array_equal(pred.labels, inst.labels.numpy())
        np.testing.assert_allclose(pred.embeddings, inst.embeddings.numpy(), atol=1e-6)
        np.testing.assert_allclose(pred.class_probs, ref.pred_score.numpy(), atol=1e-6)
        h, w = img.shape[:2]
        assert (pred.bboxes[:, 0::2] <= w).all() and (pred.bboxes[:, 1::2] <= h).all()


def test_detections_match_torch_predict(tiny, exported):
    """End to end through ONNX Runtime. An untrained head scores many neighbouring cells
    within RAW_ATOL of each other, so which of two near-equal cells is the peak, and which
    detection is the 100th, may differ between runtimes; every other detection must be
    the same box, score, label and embedding."""
    runner = DeployedRunner(exported[0], input_color="rgb")
    frames = [frame(), frame(90, 60, seed=1)]
    preds = runner.predict_batch(frames)
    for img, pred in zip(frames, preds):
        blob, meta = runner.preprocess(img)
        sample = MultiTaskDataSample(metainfo=dict(img_shape=(SIZE, SIZE), **meta))
        (ref,) = tiny.predict(torch.from_numpy(blob)[None], [sample])
        inst = ref.pred_instances
        assert len(pred.bboxes) == len(inst) > 0
        ti, oi = [], []
        for i, box in enumerate(inst.bboxes.numpy()):
            d = np.abs(pred.bboxes - box).max(1)
            d[pred.labels != int(inst.labels[i])] = np.inf
            if d.min() < BOX_ATOL:
                ti.append(i)
                oi.append(int(d.argmin()))
        assert len(set(oi)) == len(oi)
        assert len(ti) >= 0.9 * len(inst), f"only {len(ti)} of {len(inst)} detections agree"
        np.testing.assert_allclose(pred.scores[oi], inst.scores.numpy()[ti], atol=1e-5)
        np.testing.assert_allclose(pred.embeddings[oi], inst.embeddings.numpy()[ti], atol=1e-4)
        np.testing.assert_allclose(pred.class_probs, ref.pred_score.numpy(), atol=1e-5)
        assert pred.class_label == int(ref.pred_label)


def test_small_trunk_parity_at_128(tmp_path):
    model = build(arch="small", width_mult=1.0)
    path = tmp_path / "small.onnx"
    export_onnx(model, path, input_size=SIZE)  # the default exporter
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    diffs = max_diffs(DeployedRunner(path).run_raw(x), torch_raw(model, x))
    assert max(diffs.values()) < RAW_ATOL, diffs


def test_dynamic_size_export(tiny, tmp_path):
    path = tmp_path / "dyn.onnx"
    export_onnx(tiny, path, input_size=SIZE, exporter="torchscript", dynamic_size=True)
    runner = DeployedRunner(path, input_size=(96, 160))
    x = torch.randn(1, 3, 96, 160).numpy()
    assert max(max_diffs(runner.run_raw(x), torch_raw(tiny, x)).values()) < RAW_ATOL
    assert runner.predict(frame()).bboxes.shape[1] == 4


# ---- head subsets and stage pieces ------------------------------------------------------------
@pytest.mark.parametrize("heads", [("det", "emb"), ("cls",)])
def test_head_subset_export(tiny, tmp_path, heads):
    path = tmp_path / "subset.onnx"
    meta = export_onnx(tiny, path, heads=",".join(heads), input_size=SIZE, exporter="torchscript")
    assert set(meta["heads"]) == set(heads)
    runner = DeployedRunner(path)
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    assert max(max_diffs(runner.run_raw(x), torch_raw(tiny, x, heads)).values()) < RAW_ATOL
    pred = runner.predict(frame())
    assert (pred.class_probs is None) == ("cls" not in heads)
    assert (pred.embeddings is None) == ("emb" not in heads)


def test_split_pieces_chain_to_the_whole_model(tiny, tmp_path):
    manifest = export_split(tiny, tmp_path, input_size=SIZE, exporter="torchscript")
    assert len(manifest["pieces"]) == tiny.trunk.num_stages + 1
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    expected = torch_raw(tiny, x)
    split = DeployedRunner(tmp_path / "model.split.json")
    assert max(max_diffs(split.run_raw(x), expected).values()) < RAW_ATOL
    # each piece alone equals the trunk's forward_stages on the same input
    feats = x
    for piece in manifest["pieces"][:-1]:
        (start, end), out = piece["stages"], piece["outputs"][-1]
        sess = make_session(tmp_path / piece["file"])
        got = dict(zip(piece["outputs"], sess.run(None, {piece["inputs"][0]: feats})))[out]
        ref = tiny.trunk.forward_stages(torch.from_numpy(feats), start, end).detach().numpy()
        assert np.abs(got - ref).max() < RAW_ATOL
        feats = got


def test_split_from_plan_and_shallow_head_subset(tmp_path):
    model = build(cls_stride=16)  # classification from stage 3: the last stage is not needed
    trunk = model.trunk
    cut = trunk.stage_plan.stages[2][0]
    plan = StagePlan.from_cuts(trunk.stage_plan.num_blocks, [cut])
    assert stage_ranges_from_plan(model, plan) == [(0, 2), (2, trunk.num_stages)]
    manifest = export_split(
        model, tmp_path, plan=plan, heads=["cls"], input_size=SIZE, exporter="torchscript"
    )
    assert [p["stages"] for p in manifest["pieces"]] == [[0, 2], [2, 4], None]
    assert manifest["trunk_stages_run"] == 4 and manifest["pieces"][-1]["inputs"] == ["stage3"]
    x = torch.randn(1, 3, SIZE, SIZE).numpy()
    got = DeployedRunner(tmp_path / "model.split.json").run_raw(x)
    assert max(max_diffs(got, torch_raw(model, x, ("cls",))).values()) < RAW_ATOL


def test_plan_cutting_inside_a_stage_is_refused(tiny):
    start, _ = next((a, b) for a, b in tiny.trunk.stage_plan.stages if b - a > 1)
    plan = StagePlan.from_cuts(tiny.trunk.stage_plan.num_blocks, [start + 1])
    with pytest.raises(ValueError, match="inside the trunk's stages"):
        stage_ranges_from_plan(tiny, plan)


def test_failed_split_leaves_no_files(tiny, tmp_path, monkeypatch):
    real = onnx_export._export_bytes

    def fail_on_heads(module, *args, **kwargs):
        if isinstance(module, export_graphs.HeadsFromTapsGraph):
            raise RuntimeError("exporter crashed")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(onnx_export, "_export_bytes", fail_on_heads)
    with pytest.raises(RuntimeError, match="exporter crashed"):
        export_split(tiny, tmp_path, input_size=SIZE, exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


# ---- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(heads="det,seg"), r"unknown heads \['seg'\]"),
        (dict(exporter="tflite"), "unsupported exporter 'tflite'"),
        (dict(opset=11), "opset must be an int >= 14"),
        (dict(input_size=100), "multiple of 32"),
    ],
)
def test_bad_export_arguments(tiny, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_onnx(tiny, tmp_path / "m.onnx", **{"input_size": SIZE, **kwargs})
    assert list(tmp_path.iterdir()) == []


def test_bad_runtime_arguments(exported, tmp_path):
    path = exported[0]
    with pytest.raises(FileNotFoundError, match="ONNX model not found|export not found"):
        DeployedRunner(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="not available"):
        DeployedRunner(path, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ValueError, match="threads must be a positive int"):
        DeployedRunner(path, threads=0)
    with pytest.raises(ValueError, match="fixed input size"):
        DeployedRunner(path, input_size=(96, 96))
    with pytest.raises(ValueError, match="input_color"):
        DeployedRunner(path, input_color="gray")
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\) frame"):
        DeployedRunner(path).predict(frame().astype(np.float32))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        init_model(ROOT / "configs/mtmnv3_small_3task_synth.py", tmp_path / "none.pth")
    bad = tmp_path / "bad.split.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a split manifest"):
        load_export_meta(bad)


# ---- the command-line tool ----------------------------------------------------------------
def _tool():
    import mtmnv3.cli.export as module

    return module


@pytest.fixture(scope="module")
def tool_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tool")
    config = folder / "tiny_cfg.py"
    config.write_text(f"model = dict(type='MultiTaskPerceptor', **{model_cfg()!r})\n")
    ckpt = folder / "tiny.pth"
    torch.save({"state_dict": build().state_dict(), "meta": {}}, ckpt)
    return config, ckpt


def test_tool_exports_model_and_pieces(tool_files, tmp_path):
    config, ckpt = tool_files
    main = _tool().main
    out = tmp_path / "m.onnx"
    base = [str(config), str(ckpt), "--out", str(out), "--size", "128", "--exporter", "torchscript"]
    assert main([*base, "--heads", "det,emb"]) == 0
    assert load_export_meta(out)["heads"].keys() == {"det", "emb"}
    plan = tmp_path / "plan.json"
    build().trunk.stage_plan.save(plan)
    assert main([*base, "--split-plan", str(plan)]) == 0
    assert (tmp_path / "m.split.json").is_file() and (tmp_path / "m.heads.onnx").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--heads", "cls,seg"], "unknown heads"),
        (["--size", "100"], "multiple of 32"),
        (["--split-plan", "missing_plan.json"], "stage plan not found"),
    ],
)
def test_tool_errors_leave_no_output(tool_files, tmp_path, capsys, extra, message):
    config, ckpt = tool_files
    out = tmp_path / "m.onnx"
    assert _tool().main([str(config), str(ckpt), "--out", str(out), "--exporter", "torchscript", *extra]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_tool_missing_checkpoint_and_bad_exporter(tool_files, tmp_path, capsys):
    config, _ = tool_files
    out = str(tmp_path / "m.onnx")
    assert _tool().main([str(config), str(tmp_path / "none.pth"), "--out", out]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        _tool().main([str(config), str(tmp_path / "none.pth"), "--out", out, "--exporter", "tflite"])
    assert exc.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_decode_runs_torch_on_one_thread_and_restores_the_callers(tiny, exported, monkeypatch):
    """The runner's decode runs PyTorch single-threaded and leaves the process's thread count as it was."""
    import mtmnv3.runtime.deployed as deployed

    runner = DeployedRunner(exported[0], input_color="rgb")
    seen = []
    decode = deployed.decode_centers

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return decode(*args, **kwargs)

    monkeypatch.setattr(deployed, "decode_centers", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runner.predict(frame())
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
