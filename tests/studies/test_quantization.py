"""int8 quantization: ORT static QDQ, PT2E, the SQNR table and the CLI's input checks."""

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.onnx_export import export_onnx
from mtmnv3.studies.quantization import (
    ArrayCalibrationReader,
    LayerSQNR,
    OrtQuantConfig,
    OrtRawFn,
    capture_for_pt2e,
    convert_qat,
    head_outputs_from_raw,
    node_names_by_kind,
    ort_layer_sqnr,
    prepare_qat,
    pt2e_layer_sqnr,
    qat_finetune,
    quantize_onnx,
    quantize_pt2e,
    quantized_graph_summary,
    sqnr_by_kind,
    sqnr_db,
    sqnr_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
#: int8 raw outputs of a random tiny network must keep at least this SQNR
#: against fp32 (8-bit quantization of a ~20-layer network: ~20-30 dB; a
#: broken scale or a wrong tensor gives < 5 dB).
MIN_OUTPUT_SQNR_DB = 12.0
NUM_CALIB = 8


def _model(object_loss_weight: float = 0.0) -> MultiTaskPerceptor:
    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=dict(
            cls=dict(
                type="ClsHead", num_classes=5, hidden_channels=16, object_loss_weight=object_loss_weight
            ),
            det=dict(type="CenterDetHead", num_classes=3, feat_channels=16),
            emb=dict(type="EmbeddingHead", num_ids=8, embed_dim=8, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
    ).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def _calib(n: int = NUM_CALIB) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal((1, 3, SIZE, SIZE)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    model = _model()
    fp32 = folder / "m.onnx"
    export_onnx(model, fp32, input_size=SIZE, exporter="torchscript")
    return model, fp32, folder


# ---- SQNR ----------------------------------------------------------------------------------------
def test_sqnr_hand_computed():
    # ||x||^2 = 9 + 16 = 25, ||x - q||^2 = 0 + 1 = 1 -> 10 log10(25) dB.
    assert sqnr_db(np.array([3.0, 4.0]), np.array([3.0, 3.0])) == pytest.approx(10 * math.log10(25.0))
    assert sqnr_db(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0])) == math.inf
    assert sqnr_db(np.zeros(2), np.ones(2)) == -math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        sqnr_db(np.zeros(2), np.zeros(3))


def test_sqnr_markdown_and_summary():
    rows = [
        LayerSQNR("a", "conv", "trunk.blocks.1", "Conv", 30.0, (1, 8, 4, 4), True),
        LayerSQNR("b", "hard_swish", "trunk.blocks.1", "HardSwish", 12.0, (1, 8, 4, 4), False),
    ]
    summary = sqnr_by_kind(rows)
    assert summary["conv"]["median_db"] == 30.0 and summary["hard_swish"]["count"] == 1
    text = sqnr_markdown(rows, worst=1)
    assert "| b | hard_swish |" in text and "LOW" in text and "| a | conv |" not in text


# ---- ONNX Runtime static ----------------------------------------------------------------------------
def test_ort_static_qdq_per_channel_close_to_fp32(exported, tmp_path):
    model, fp32, _ = exported
    int8 = tmp_path / "m.int8.onnx"
    ref = tmp_path / "m.pre.onnx"
    report = quantize_onnx(fp32, int8, _calib(), OrtQuantConfig(), preprocessed_path=ref)
    summary = report["summary"]
    assert summary["quantize_nodes"] > 0 and summary["dequantize_nodes"] > 0
    assert summary["per_channel_weights"] > 0 and summary["per_tensor_weights"] == 0
    proto = onnx.load(str(int8))
    assert any(i.data_type == onnx.TensorProto.INT8 for i in proto.graph.initializer), (
        "no int8 weights in the quantized model"
    )

    x = _calib(1)[0]
    ref_out = OrtRawFn(fp32).run_numpy(x)
    q_out = OrtRawFn(int8).run_numpy(x)
    for a, b in zip(ref_out, q_out):
        assert np.isfinite(b).all()
        assert sqnr_db(a, b) > MIN_OUTPUT_SQNR_DB
    # The int8 model has its own sidecar: the deployment runner takes it as is.
    runner = DeployedRunner(int8)
    pred = runner.predict(np.full((SIZE, SIZE, 3), 90, np.uint8))
    assert pred.class_probs is not None and pred.class_probs.shape == (5,)

    rows = ort_layer_sqnr(ref, int8, _calib(2))
    assert rows and all(r.kind for r in rows)
    assert {"conv", "depthwise_conv", "hard_swish", "se_multiply", "head"} <= {r.kind for r in rows}
    finite = [r.sqnr_db for r in rows if math.isfinite(r.sqnr_db)]
    assert np.median(finite) > MIN_OUTPUT_SQNR_DB


def test_excluded_nodes_stay_float(exported, tmp_path):
    _, fp32, _ = exported
    int8 = tmp_path / "m.int8.onnx"
    ref = tmp_path / "m.pre.onnx"
    config = OrtQuantConfig(exclude_kinds=("hard_swish", "se_multiply"))
    report = quantize_onnx(fp32, int8, _calib(4), config, preprocessed_path=ref)
    excluded = set(report["excluded_nodes"])
    assert excluded and excluded == set(node_names_by_kind(ref, ("hard_swish", "se_multiply")))
    proto = onnx.load(str(int8))
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.name in excluded:
            # A float node: its output is not quantized by it (no QLinear op) and it is still there.
            assert not node.op_type.startswith("QLinear")
    names = {n.name for n in proto.graph.node}
    assert excluded <= names
    # The excluded Mul nodes read float tensors produced by float ops or DequantizeLinear.
    for node in proto.graph.node:
        if node.name in excluded:
            for i in node.input:
                p = producers.get(i)
                assert p is None or p.op_type != "QuantizeLinear"
    with pytest.raises(ValueError, match="not in the graph"):
        quantize_onnx(fp32, tmp_path / "x.onnx", _calib(1), OrtQuantConfig(exclude_nodes=("no_such_node",)))


def test_ort_config_validation():
    with pytest.raises(ValueError, match="calibrate_method"):
        OrtQuantConfig(calibrate_method="mean")
    with pytest.raises(ValueError, match="exclude_kinds"):
        OrtQuantConfig(exclude_kinds=("hswish",))
    with pytest.raises(TypeError, match="exclude_nodes"):
        OrtQuantConfig(exclude_nodes="Conv_0")
    with pytest.raises(ValueError, match="no calibration arrays"):
        ArrayCalibrationReader([])
    with pytest.raises(ValueError, match="calibration arrays must be"):
        ArrayCalibrationReader([np.zeros((4, 4), np.float32)])


def test_qoperator_summary(exported, tmp_path):
    _, fp32, _ = exported
    int8 = tmp_path / "m.qop.onnx"
    quantize_onnx(
        fp32, int8, _calib(2), OrtQuantConfig(quant_format="qoperator", calibrate_method="percentile")
    )
    summary = quantized_graph_summary(int8)
    assert summary["int8_ops"] > 0 and summary["per_channel_weights"] > 0
    with pytest.raises(ValueError, match="QOperator"):
        ort_layer_sqnr(fp32, int8, _calib(1))


# ---- PT2E -----------------------------------------------------------------------------------------
def test_pt2e_prepare_convert_close(exported):
    model, _, _ = exported
    calib = [torch.from_numpy(a) for a in _calib(4)]
    graph = quantize_pt2e(model, calib)
    x = calib[0]
    with torch.no_grad():
        ref = model.head_outputs(x, list(model.heads))
        got = head_outputs_from_raw(graph(x), graph.layout)
    assert torch.isfinite(got["cls"]).all()
    assert sqnr_db(ref["cls"], got["cls"]) > MIN_OUTPUT_SQNR_DB
    assert sqnr_db(ref["det"]["heatmap"], got["det"]["heatmap"]) > MIN_OUTPUT_SQNR_DB
    reference = capture_for_pt2e(model, x)
    rows = pt2e_layer_sqnr(reference.module, graph.module, calib[:2])
    kinds = {r.kind for r in rows}
    assert {"hard_swish", "se_multiply", "head"} <= kinds


# ---- CLI ------------------------------------------------------------------------------------------
def _cli(argv, monkeypatch):
    from mtmnv3.cli import main

    try:
        return main(["quantize", *argv])
    except SystemExit as e:  # argparse's own errors
        return e.code


def test_cli_bad_input(monkeypatch, tmp_path, capsys):
    cfg = str(ROOT / "configs" / "mtmnv3_small_3task_synth.py")
    assert _cli(["missing.py", "none", "--method", "ort-static"], monkeypatch) == 2
    assert "config not found" in capsys.readouterr().err
    assert _cli([cfg, str(tmp_path / "nope.pth"), "--method", "pt2e"], monkeypatch) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert _cli([cfg, "none", "--method", "ort-static", "--variant", "huge"], monkeypatch) == 2
    assert "unknown --variant" in capsys.readouterr().err
    assert _cli([cfg, "none", "--method", "ort-static", "--size", "100"], monkeypatch) == 2
    assert "multiple of 32" in capsys.readouterr().err
    # argparse rejects unknown methods and malformed thread lists itself.
    assert _cli([cfg, "none", "--method", "fp16"], monkeypatch) == 2
    assert _cli([cfg, "none", "--method", "pt2e", "--threads", "a,b"], monkeypatch) == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_qat_prepare_finetune_convert(exported):
    model, _, _ = exported
    batch = torch.from_numpy(np.concatenate(_calib(2)))
    qat = prepare_qat(model, batch)

    def loss_fn(outputs, _batch):
        return outputs["cls"].square().mean() + outputs["det"]["heatmap"].square().mean()

    losses = qat_finetune(qat, [batch], loss_fn, steps=2, lr=1e-3)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    graph = convert_qat(qat)
    x = batch[:1]
    with torch.no_grad():
        out = head_outputs_from_raw(graph(x), graph.layout)
    assert out["cls"].shape == (1, 5) and torch.isfinite(out["det"]["heatmap"]).all()
    with pytest.raises(ValueError, match="steps"):
        qat_finetune(qat, [batch], loss_fn, steps=0)


def test_qat_of_a_head_with_training_only_outputs():
    """The classification head returns its tap too in training (object loss): QAT
    captures that layout, trains through the heads' own losses, and predicts."""
    from mmengine.structures import InstanceData

    from mtmnv3.core.structures import MultiTaskDataSample

    model = _model(object_loss_weight=1.0)
    batch = torch.from_numpy(np.concatenate(_calib(2)))
    qat = prepare_qat(model, batch)
    assert {o["name"] for o in qat.layout} >= {"cls_logits", "cls_tap"}

    def sample():
        s = MultiTaskDataSample(
            metainfo=dict(tasks=("cls", "det"), img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE))
        )
        s.gt_instances = InstanceData(bboxes=torch.tensor([[4.0, 4.0, 40.0, 40.0]]), labels=torch.tensor([2]))
        s.gt_label = torch.tensor(2)
        return s

    def loss_fn(outputs, _batch):
        losses = model.heads["cls"].loss(outputs["cls"], [sample(), sample()])
        assert set(losses) == {"loss_cls", "loss_cls_obj"}
        return sum(losses.values())

    losses = qat_finetune(qat, [batch], loss_fn, steps=2, lr=1e-3)
    assert all(math.isfinite(v) for v in losses)
    graph = convert_qat(qat)
    with torch.no_grad():
        out = head_outputs_from_raw(graph(batch[:1]), graph.layout)
    samples = [sample()]
    model.heads["cls"].predict(out["cls"], samples)
    assert samples[0].pred_score.shape == (5,)
