"""Aspect-keeping inference: the input rectangle per frame, boxes back in source pixels, torch vs deployed files.

The known-box tests use an "oracle" model whose detection maps are computed
from the image itself (the bright rectangle's extent, in network pixels), so
any error of the letterbox or of its inverse shows up as a wrong box; the
oracle is made of plain tensor ops and exports to ONNX like the real heads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime.budget import (
    AdaptiveDeadlinePolicy,
    BudgetLog,
    BudgetScheduler,
    CostEstimator,
    ModelLayout,
)
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.frame_runner import (
    DeployedFrameRunner,
    ExportedFrameRunner,
    TorchFrameRunner,
    export_for_backend,
    input_shape,
)
from mtmnv3.runtime.loop import PerceptionLoop
from mtmnv3.runtime.video import Frame
from mtmnv3.tracking import build_tracker

#: Boxes of a deployed fp32 file and of PyTorch agree to this (frame pixels): the runtimes
#: reorder float sums (raw outputs within 1e-4 of their range, the export's parity tolerance).
BOX_ATOL = 2e-2
PROB_ATOL = 1e-4
#: Normalised mean brightness that separates the bright rectangle from the background and padding.
BRIGHT = 1.2


def assert_same_boxes(got, want, atol):
    """The same boxes up to ``atol`` (frame pixels), in any order (boxes of tied scores may swap);
    returns, per box of ``got``, the index of its box in ``want``."""
    assert len(got) == len(want) > 0
    diff = np.abs(got[:, None, :] - want[None, :, :]).max(-1)
    assert diff.min(1).max() <= atol and diff.min(0).max() <= atol, diff.min(1).max()
    return diff.argmin(1)


def model_cfg():
    return dict(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=5, hidden_channels=16),
            det=dict(type="CenterDetHead", num_classes=3, feat_channels=16, score_thr=0.3, max_per_img=10),
            emb=dict(type="EmbeddingHead", num_ids=10, embed_dim=8, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
    )


class OracleDet(MultiTaskPerceptor):
    """The real model, except that the detection maps place one box of class 0 on the bright rectangle."""

    def head_outputs(self, inputs, names):
        out = super().head_outputs(inputs, names)
        det = next((n for n in names if self.heads[n].task == "detection"), None)
        if det is None:
            return out
        stride = self.heads[det].stride
        heat = out[det]["heatmap"]
        mask = (inputs.mean(1) > BRIGHT).float()  # (N, H, W)
        cols, rows = mask.amax(1), mask.amax(2)  # (N, W), (N, H)
        xs = torch.arange(inputs.shape[3], dtype=torch.float32)
        ys = torch.arange(inputs.shape[2], dtype=torch.float32)
        big = 1e6
        x0, x1 = (xs + big * (1 - cols)).amin(1), (xs + 1 - big * (1 - cols)).amax(1)
        y0, y1 = (ys + big * (1 - rows)).amin(1), (ys + 1 - big * (1 - rows)).amax(1)
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride  # (N,) in map cells
        gx = torch.arange(heat.shape[3], dtype=torch.float32)
        gy = torch.arange(heat.shape[2], dtype=torch.float32)
        hit = (gx[None, None, :] == cx.floor()[:, None, None]) & (
            gy[None, :, None] == cy.floor()[:, None, None]
        )
        peak = hit.float() * 16.0 - 8.0  # logits: one confident cell, nothing elsewhere
        ones = torch.ones_like(peak)
        out[det] = dict(
            heatmap=torch.cat([peak[:, None], heat[:, 1:] * 0.0 - 8.0], 1),
            wh=torch.stack(
                [ones * ((x1 - x0) / stride)[:, None, None], ones * ((y1 - y0) / stride)[:, None, None]], 1
            ),
            offset=torch.stack(
                [ones * (cx - cx.floor())[:, None, None], ones * (cy - cy.floor())[:, None, None]], 1
            ),
        )
        return out


@pytest.fixture(scope="module")
def oracle():
    torch.manual_seed(0)
    return OracleDet(**model_cfg()).eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = model_cfg()
    cfg["heads"]["det"]["score_thr"] = 0.0
    return MultiTaskPerceptor(**cfg).eval()


def bright_frame(h, w, box):
    """A dark frame with a white rectangle ``box`` = (x0, y0, x1, y1) in pixel edges."""
    img = np.full((h, w, 3), 30, np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img


def noise_frame(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# Frame sizes twice the network input's, so that the 2x downscale averages pixel pairs and
# the rectangle's edges (even coordinates) land exactly on network pixels.
KNOWN = [
    ((128, 256), (40, 20, 100, 84)),  # 2:1 -> 128x64, no padding
    ((96, 256), (150, 10, 230, 60)),  # 8:3 -> 128x48 in 128x64: 8 rows of padding top and bottom
    ((256, 96), (10, 150, 60, 230)),  # portrait
]


@pytest.mark.parametrize(("frame_hw", "box"), KNOWN)
def test_torch_runner_gives_the_known_box_in_source_pixels(oracle, frame_hw, box):
    runner = TorchFrameRunner(oracle, 128)
    assert runner.input_shape(frame_hw) == input_shape(frame_hw, 128)
    pred = runner.predict(bright_frame(*frame_hw, box), heads=["det"])
    assert len(pred.bboxes) == 1 and pred.labels[0] == 0
    np.testing.assert_allclose(pred.bboxes[0], box, atol=1e-3)


def test_the_input_rectangle_keeps_the_aspect(oracle):
    runner = TorchFrameRunner(oracle, 320)
    assert runner.input_shape((1080, 1920)) == (192, 320)
    assert runner.input_shape((180, 320)) == (192, 320)
    assert runner.input_shape((1080, 1920), 256) == (160, 256)
    assert TorchFrameRunner(oracle, 320, keep_aspect=False).input_shape((1080, 1920)) == (320, 320)
    with pytest.raises(ValueError, match="multiple of 32"):
        runner.predict(noise_frame(90, 160), input_size=100)


def test_a_known_box_through_deployed_onnx_files(oracle, tmp_path):
    frame_hw, box = KNOWN[1]
    img = bright_frame(*frame_hw, box)
    # A file at the frame's rectangle, a square file (aspect kept, padded) and a dynamic-size file.
    for name, size, dynamic in (("rect", (64, 128), False), ("square", 128, False), ("dyn", 128, True)):
        path = tmp_path / f"{name}.onnx"
        export_for_backend(oracle, "onnxruntime", path, heads=["det"], input_size=size, dynamic_size=dynamic)
        runner = DeployedFrameRunner(path, oracle, threads=1)
        assert runner.input_size == 128
        pred = runner.predict(img)
        assert len(pred.bboxes) == 1, name
        np.testing.assert_allclose(pred.bboxes[0], box, atol=1e-3, err_msg=name)
    assert runner.input_shape(frame_hw) == (64, 128)  # the dynamic file keeps the frame's aspect


def test_torch_and_a_rectangular_onnx_file_agree_on_a_2_to_1_frame(model, tmp_path):
    path = tmp_path / "m.onnx"
    meta = export_for_backend(model, "onnxruntime", path, input_size=(64, 128))
    assert meta["input"]["size"] == [64, 128] and not meta["input"]["dynamic_size"]
    deployed = DeployedFrameRunner(path, model, threads=1)
    torch_runner = TorchFrameRunner(model, 128)
    img = noise_frame(100, 200)
    assert torch_runner.input_shape(img.shape[:2]) == deployed.input_shape(img.shape[:2]) == (64, 128)
    want, got = torch_runner.predict(img), deployed.predict(img)
    match = assert_same_boxes(got.bboxes, want.bboxes, BOX_ATOL)
    np.testing.assert_allclose(got.scores, want.scores[match], atol=PROB_ATOL)
    np.testing.assert_allclose(got.embeddings, want.embeddings[match], atol=1e-3)
    np.testing.assert_allclose(got.class_probs, want.class_probs, atol=PROB_ATOL)
    assert got.bboxes[:, 2].max() <= 200 and got.bboxes[:, 3].max() <= 100 and got.bboxes.min() >= 0
    # Any other frame goes into the file's rectangle too; the file refuses another long side.
    assert len(deployed.predict(noise_frame(120, 90)).bboxes) > 0
    with pytest.raises(
        ValueError, match=r"fixed input shape 128x64 \(WxH, long side 128\), got input_size=96"
    ):
        deployed.predict(img, input_size=96)
    with pytest.raises(
        ValueError, match=r"fixed input size 128x64 .*got input_size=\(128, 128\) \(128x128\)"
    ):
        DeployedRunner(path, input_size=(128, 128))


def test_a_square_file_matches_torch_letterboxing_into_the_square(model, tmp_path):
    path = tmp_path / "sq.onnx"
    export_for_backend(model, "onnxruntime", path, input_size=96)
    img = noise_frame(60, 120, seed=1)
    want = TorchFrameRunner(model, 96, keep_aspect=False).predict(img)
    got = DeployedFrameRunner(path, model, threads=1).predict(img)
    assert_same_boxes(got.bboxes, want.bboxes, BOX_ATOL)


def test_exported_runner_runs_each_frame_at_its_rectangle(model, tmp_path):
    runner = ExportedFrameRunner(model, "onnxruntime", 128, threads=1, export_dir=tmp_path)
    torch_runner = TorchFrameRunner(model, 128)
    for shape in ((100, 200), (200, 100), (90, 160)):
        img = noise_frame(*shape)
        want, got = torch_runner.predict(img), runner.predict(img)
        assert runner.runner().input_size == input_shape(shape, 128)
        assert_same_boxes(got.bboxes, want.bboxes, BOX_ATOL)
    runner.close()


def test_calibration_may_be_a_function_of_the_export_shape(model, tmp_path):
    """Fixed-shape runtimes export one file per shape; each is calibrated at its shape."""
    asked = []

    def calibration(shape):
        asked.append(shape)
        return [np.zeros((1, 3, *shape), np.float32)]

    runner = ExportedFrameRunner(
        model, "onnxruntime", 128, export_dir=tmp_path, int8=True, calibration=calibration
    )
    assert runner.calibration is calibration and not asked  # nothing exported yet
    with pytest.raises(ValueError, match="int8 for onnxruntime"):
        runner.predict(noise_frame(64, 128))
    assert asked == [(64, 128)]


def test_the_budget_ladder_scales_both_sides_of_the_rectangle(oracle):
    """Budget resolutions are long sides: each rung keeps the frame's aspect, both sides multiples of 32."""
    ladder = (320, 256, 192)
    shapes = [input_shape((1080, 1920), r) for r in ladder]
    assert shapes == [(192, 320), (160, 256), (128, 192)]
    assert all(h % 32 == 0 and w % 32 == 0 for h, w in shapes)
    # The live loop: the scheduler's plan size reaches the runner, which keeps the frame's aspect.
    layout = ModelLayout.from_model(oracle)
    seen = []

    class Recording(TorchFrameRunner):
        def predict(self, frame, heads=None, input_size=None):
            seen.append(self.input_shape(frame.shape[:2], input_size))
            return super().predict(frame, heads, input_size)

    est = CostEstimator(unknown_ms=1.0)
    policy = AdaptiveDeadlinePolicy(budget_ms=1e6, resolutions=[128, 96])
    scheduler = BudgetScheduler(policy, est, layout, BudgetLog())
    loop = PerceptionLoop(
        Recording(oracle, 128), build_tracker(dict(type="EmbeddingTracker")), scheduler, layout
    )
    frame_hw, box = KNOWN[0]
    result = loop.step(Frame(0, bright_frame(*frame_hw, box), 0.0))
    assert seen and seen[0] == (64, 128)
    assert result.input_shape == (64, 128)
    assert "full@128x64" in " ".join(loop._status_lines(result.plan, 0, result.input_shape))
