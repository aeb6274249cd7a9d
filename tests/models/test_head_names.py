"""Heads are found by the task they declare, never by name: a model with heads ``a``, ``b``, ``c``
trains, predicts, runs in both frame runners, under a budget in the perception loop, and tracks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _helpers import SIZE, batch, make_sample
from mmengine.optim import OptimWrapper
from mtmnv3.heads import CLASSIFICATION, DETECTION, EMBEDDING, HEAD_TASKS, TASK_LABELS, heads_by_task

from mtmnv3.apis.inference import detect_mot_sequences, track_detections
from mtmnv3.data import write_synth_dataset
from mtmnv3.data.synth import SceneConfig
from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime.budget import BudgetScheduler, FixedIntervalPolicy, ModelLayout
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.frame_runner import ExportedFrameRunner, TorchFrameRunner
from mtmnv3.runtime.loop import PerceptionLoop, calibrate_costs
from mtmnv3.runtime.onnx_export import export_onnx
from mtmnv3.runtime.video import Frame
from mtmnv3.tracking import EmbeddingTracker

FRAME_SIZE = 64
#: Heads named against their roles: ``a`` embeds, ``b`` detects, ``c`` classifies.
HEADS = dict(
    a=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
    b=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
    c=dict(type="ClsHead", num_classes=11, hidden_channels=32),
)


def abc_model(heads=HEADS) -> MultiTaskPerceptor:
    torch.manual_seed(0)
    return MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=heads,
        neck=dict(type="FPNLite", out_channels=16),
    )


@pytest.fixture(scope="module")
def model():
    return abc_model().eval()


def frames(n=4):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (FRAME_SIZE, FRAME_SIZE + 16, 3), dtype=np.uint8) for _ in range(n)]


def test_heads_declare_tasks_and_the_model_finds_them(model):
    assert HEAD_TASKS == (CLASSIFICATION, DETECTION, EMBEDDING)
    assert model.task_heads == {CLASSIFICATION: "c", DETECTION: "b", EMBEDDING: "a"}
    assert model.head_for(DETECTION) == "b"
    assert {n: h.label_kind for n, h in model.heads.items()} == {"a": "track", "b": "det", "c": "cls"}
    assert set(TASK_LABELS.values()) == {"cls", "det", "track"}
    # Detections first, embeddings last (they are read at the detections).
    assert model.predict_order(["a", "b", "c"]) == ["b", "c", "a"]
    assert heads_by_task({"x": "det", "y": "track"}) == {DETECTION: "x", EMBEDDING: "y"}  # old sidecars


def test_two_heads_of_one_task_or_a_missing_one_are_refused():
    heads = dict(HEADS, d=dict(type="ClsHead", num_classes=3, hidden_channels=8))
    with pytest.raises(ValueError, match=r"declare the same task.*'c'.*'d'"):
        abc_model(heads)
    with pytest.raises(
        ValueError, match=r"needs a detection head; the model's heads are \{'c': 'classification'\}"
    ):
        heads_by_task({"c": abc_model(dict(c=HEADS["c"])).heads["c"]}, required=(DETECTION,))
    with pytest.raises(ValueError, match="must declare a task"):
        heads_by_task({"z": "segmentation"})


def test_train_step_and_predict():
    model = abc_model()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    log = model.train_step(batch([make_sample(), make_sample(label=5)]), wrapper)
    assert {"loss", "weight_a", "weight_b", "weight_c"} <= set(log) and torch.isfinite(log["loss"])
    model.eval()
    sample = model.predict(torch.randn(1, 3, SIZE, SIZE))[0]
    assert "pred_score" in sample and "embeddings" in sample.pred_instances


def test_frame_runners_and_the_onnx_sidecar(model, tmp_path):
    frame = frames(1)[0]
    torch_pred = TorchFrameRunner(model, FRAME_SIZE).predict(frame, heads=("a", "b", "c"))
    meta = export_onnx(model, tmp_path / "abc.onnx", heads=["a", "b", "c"], input_size=FRAME_SIZE)
    assert {n: m["task"] for n, m in meta["heads"].items()} == {
        "a": EMBEDDING,
        "b": DETECTION,
        "c": CLASSIFICATION,
    }
    ort_runner = DeployedRunner(tmp_path / "abc.onnx", input_color="rgb")
    assert (ort_runner.det_head, ort_runner.emb_head, ort_runner.cls_head) == ("b", "a", "c")
    runner = ExportedFrameRunner(
        model, "onnxruntime", FRAME_SIZE, threads=1, export_dir=tmp_path / "sessions"
    )
    try:
        ort_pred = runner.predict(frame, heads=("a", "b", "c"))
        assert runner.predict(frame, heads=("b",)).embeddings is None
    finally:
        runner.close()
    np.testing.assert_allclose(ort_pred.class_probs, torch_pred.class_probs, atol=1e-4)
    np.testing.assert_allclose(ort_pred.bboxes, torch_pred.bboxes, atol=1e-3)
    assert ort_pred.embeddings.shape == torch_pred.embeddings.shape == (len(torch_pred.bboxes), 16)


def test_budget_plans_run_the_models_head_names(model):
    layout = ModelLayout.from_model(model)
    assert layout.heads == ("cls", "det", "emb") and layout.model_heads(layout.heads) == ("c", "b", "a")
    calls = []

    class Recording(TorchFrameRunner):
        def predict(self, frame, heads=None, input_size=None):
            calls.append(tuple(heads))
            return super().predict(frame, heads, input_size)

    runner = Recording(model, FRAME_SIZE)
    estimator = calibrate_costs(
        runner, layout, [FRAME_SIZE], [1.0] * layout.num_stages, frames(1)[0], repeats=1
    )
    assert set(calls) == {("c",), ("b",), ("b", "a"), ("c", "b", "a")}
    calls.clear()
    policy = FixedIntervalPolicy(1e3, resolutions=(FRAME_SIZE,), cls_period=2, det_interval=2)
    scheduler = BudgetScheduler(policy, estimator, layout)
    loop = PerceptionLoop(runner, EmbeddingTracker(), scheduler, layout, resolution=FRAME_SIZE, draw=False)
    results = [loop.step(Frame(i, image, 0.0)) for i, image in enumerate(frames(4))]
    assert [r.plan.heads for r in results] == [("cls", "det", "emb"), (), ("cls", "det", "emb"), ()]
    assert calls == [("c", "b", "a"), ("c", "b", "a")]
    assert results[0].class_label is not None and len(scheduler.log) == 4


def test_mot_sequences_track_with_named_heads(model, tmp_path):
    root = write_synth_dataset(
        tmp_path / "data", SceneConfig(num_sequences=1, num_frames=3, image_size=FRAME_SIZE), progress=False
    )
    runner = TorchFrameRunner(model, FRAME_SIZE)
    dets = detect_mot_sequences(runner, root / "mot", progress=False)
    (seq,) = dets.values()
    assert seq.num_frames == 3 and all(p.embeddings is not None for p in seq.predictions)
    metrics = track_detections(dets, tmp_path / "out", dict(high_thr=0.05, low_thr=0.01), hota=False)
    assert "MOTA" in metrics
    no_det = TorchFrameRunner(abc_model(dict(a=HEADS["a"], c=HEADS["c"])), FRAME_SIZE)
    with pytest.raises(ValueError, match=r"needs a detection head; the model's heads are .*'a'.*'c'"):
        detect_mot_sequences(no_det, root / "mot", progress=False)
