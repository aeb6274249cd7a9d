"""The ``input_norm`` stem option: invariance, the trunk contract with it on, ONNX parity, configs, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mtmnv3.backbone.complexity import num_params
from mtmnv3.backbone.input_norm import (
    INPUT_NORMS,
    LearnedInputNorm,
    PerImageStandardize,
    build_input_norm,
)
from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.timm_trunk import TimmTrunk
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.registry import MODELS
from mtmnv3.engine import DictAction, load_config
from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.runtime.deployed import DeployedRunner
from mtmnv3.runtime.onnx_export import export_onnx, export_split

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
#: ONNX Runtime and PyTorch (fp32) raw outputs must agree to this (absolute).
RAW_ATOL = 1e-4
#: The MobileNetV3 trunk and one timm successor (the contract holds for every trunk
#: through the shared base; these two cover both constructors).
TRUNKS = [
    ("mobilenetv3_small", dict(type="MobileNetV3Trunk", arch="small")),
    ("timm_mobilenetv4_conv_small", dict(type="TimmTrunk", name="mobilenetv4_conv_small")),
]
TRUNK_IDS = [i for i, _ in TRUNKS]
TRUNK_CFGS = [c for _, c in TRUNKS]
DEFAULT_CONFIG = ROOT / "configs" / "mtmnv3_small_3task_synth.py"
RELEASED_WEIGHTS = ROOT / "weights" / "mtmnv3_small_3task_synth.pth"
STUDY_CONFIGS = sorted((ROOT / "configs").glob("*inputnorm*_synth.py"))


def _images(n=2, seed=0, size=SIZE):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _affine(x, seed=1):
    """``a * x + b`` per image and channel, ``a`` in [0.2, 3] (brightness and contrast)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.2 + 2.8 * torch.rand(x.shape[0], x.shape[1], 1, 1, generator=g)
    b = 4.0 * torch.rand(x.shape[0], x.shape[1], 1, 1, generator=g) - 2.0
    return a * x + b


def _build(cfg, **kwargs):
    torch.manual_seed(0)
    return MODELS.build({**cfg, **kwargs})


# ---- the modules ---------------------------------------------------------------------------
def test_per_image_cancels_per_channel_brightness_and_contrast():
    x = _images()
    norm = PerImageStandardize()
    y = norm(x)
    torch.testing.assert_close(norm(_affine(x)), y, atol=1e-4, rtol=1e-4)
    # standardised: zero mean, unit deviation per image and channel
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_per_image_global_cancels_image_wide_change_and_keeps_relative_colour():
    x = _images()
    norm = build_input_norm("per_image_global")
    a, b = torch.tensor([0.3, 2.5]).view(2, 1, 1, 1), torch.tensor([1.0, -0.7]).view(2, 1, 1, 1)
    torch.testing.assert_close(norm(a * x + b), norm(x), atol=1e-4, rtol=1e-4)
    # one mean per image: channel means differ as in the input, so colour survives
    shifted = x.clone()
    shifted[:, 0] += 1.0
    out = norm(shifted)
    assert (out[:, 0].mean(dim=(1, 2)) > out[:, 1].mean(dim=(1, 2)) + 0.5).all()


def test_flat_image_maps_to_zero_not_nan():
    for name in INPUT_NORMS:
        out = build_input_norm(name)(torch.full((1, 3, 8, 8), 0.7))
        assert torch.isfinite(out).all(), name
    assert PerImageStandardize()(torch.full((1, 3, 8, 8), 0.7)).abs().max() < 1e-3  # rounding of the mean


def test_learned_starts_as_per_image_and_learns_every_parameter():
    x = _images()
    learned = LearnedInputNorm(3)
    torch.testing.assert_close(learned(x), PerImageStandardize()(x))
    torch.testing.assert_close(learned(_affine(x)), learned(x), atol=1e-4, rtol=1e-4)  # blend 0: invariant
    learned(x).mul(torch.randn_like(x)).sum().backward()
    assert {n for n, p in learned.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0} == {
        "weight",
        "bias",
        "blend",
    }
    with torch.no_grad():
        learned.blend.fill_(0.5)  # a learned share of the raw input buys back absolute brightness
    assert not torch.allclose(learned(_affine(x)), learned(x), atol=1e-2)


def test_unknown_value_names_the_allowed_ones():
    for bad in ("per-image", "batch", True, 1):
        with pytest.raises(ValueError, match=r"unknown input_norm .*expected None or one of .*per_image"):
            build_input_norm(bad)
    with pytest.raises(ValueError, match=r"unknown input_norm 'instance'.*'learned'"):
        MobileNetV3Trunk(arch="small", input_norm="instance")
    with pytest.raises(ValueError, match=r"unknown input_norm 'instance'.*'per_image_global'"):
        TimmTrunk("mobilenetv4_conv_small", input_norm="instance")
    with pytest.raises(ValueError, match="eps must be > 0"):
        PerImageStandardize(eps=0.0)


# ---- the trunk contract with the option on ---------------------------------------------------
def test_trunk_output_is_invariant_to_brightness_and_contrast():
    trunk = MobileNetV3Trunk(arch="small", input_norm="per_image").eval()
    x = _images()
    with torch.no_grad():
        for clean, shifted in zip(trunk(x), trunk(_affine(x))):
            torch.testing.assert_close(shifted, clean, atol=1e-3, rtol=1e-3)
        off = MobileNetV3Trunk(arch="small").eval()
        off.load_state_dict(trunk.state_dict())
        assert not torch.allclose(off(_affine(x))[0], off(x)[0], atol=1e-2)  # without it: not invariant


@pytest.mark.parametrize("input_norm", ["per_image", "learned"])
@pytest.mark.parametrize("cfg", TRUNK_CFGS, ids=TRUNK_IDS)
def test_contract_holds_with_input_norm(cfg, input_norm):
    off = _build(cfg).eval()
    on = _build(cfg, input_norm=input_norm).eval()
    on.load_state_dict(off.state_dict(), strict=False)  # same blocks, so only the stem option differs
    if input_norm == "learned":
        with torch.no_grad():  # away from the initial values, so the affine and blend are exercised
            on.input_norm_module.weight.uniform_(0.5, 1.5)
            on.input_norm_module.bias.uniform_(-0.5, 0.5)
            on.input_norm_module.blend.uniform_(-0.3, 0.3)
    assert on.input_norm == input_norm and off.input_norm is None and off.input_norm_module is None
    # stage 0 counts the stem option; the other stages and the block layout are unchanged
    extra_params = num_params(on.input_norm_module)
    assert extra_params == (9 if input_norm == "learned" else 0)
    ref = on.reference_size
    assert on.feature_info[0]["macs"] == off.feature_info[0]["macs"] + 2 * 3 * ref * ref
    assert on.feature_info[0]["params"] == off.feature_info[0]["params"] + extra_params
    assert on.feature_info[1:] == off.feature_info[1:]
    assert on.block_info == off.block_info and on.stage_plan == off.stage_plan
    macs_on, macs_off = on.stage_macs(96, 128), off.stage_macs(96, 128)
    assert macs_on[0] == macs_off[0] + 2 * 3 * 96 * 128 and macs_on[1:] == macs_off[1:]

    x = _images()
    with torch.no_grad():
        outs = on(x)
        expected = off(on.input_norm_module(x))
        for a, b in zip(outs, expected):
            torch.testing.assert_close(a, b)
        for k in range(1, on.num_stages):  # every split of the stages is forward
            head = on.forward_stages(x, 0, k)
            torch.testing.assert_close(head, outs[k - 1])
            torch.testing.assert_close(on.forward_stages(head, k), outs[-1])
        taps = on.forward_taps(x, [0, 2])
        torch.testing.assert_close(taps[0], outs[0])
        torch.testing.assert_close(taps[2], outs[2])
        y = x
        for stage in on.plan_stage_modules():  # per-stage modules (pipelines) run it too
            y = stage(y)
        torch.testing.assert_close(y, outs[-1])
    # frozen stage 0 freezes the stem option with it
    frozen = _build(cfg, input_norm=input_norm, frozen_stages=0).train()
    assert not frozen.input_norm_module.training
    assert not any(p.requires_grad for p in frozen.input_norm_module.parameters())


def test_a_plan_with_other_stages_keeps_the_input_norm_first():
    trunk = MobileNetV3Trunk(arch="small", input_norm="per_image").eval()
    n = len(trunk.blocks)
    plan = StagePlan(((0, 3), (3, 9), (9, n)), n, arch="small")
    split = MobileNetV3Trunk(arch="small", input_norm="per_image", stage_plan=plan).eval()
    split.load_state_dict(trunk.state_dict())
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(split.forward_stages(x), trunk.forward_stages(x))
        y = x
        for stage in trunk.plan_stage_modules(plan):
            y = stage(y)
        torch.testing.assert_close(y, trunk.forward_stages(x))


def test_learned_input_norm_trains_in_the_trunk():
    trunk = MobileNetV3Trunk(arch="small", width_mult=0.5, input_norm="learned").train()
    sum(o.mean() for o in trunk(_images(n=4))).backward()
    grads = {n: p.grad for n, p in trunk.input_norm_module.named_parameters()}
    assert set(grads) == {"weight", "bias", "blend"}
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads.values())


# ---- checkpoints ------------------------------------------------------------------------------
def test_off_by_default_keeps_the_state_dict_and_old_checkpoints_load():
    off = MobileNetV3Trunk(arch="small")
    assert all(k.startswith("blocks.") for k in off.state_dict())
    per_image = MobileNetV3Trunk(arch="small", input_norm="per_image")
    assert per_image.state_dict().keys() == off.state_dict().keys()  # no parameters, no buffers
    learned = MobileNetV3Trunk(arch="small", input_norm="learned")
    assert set(learned.state_dict()) - set(off.state_dict()) == {
        "input_norm_module.weight",
        "input_norm_module.bias",
        "input_norm_module.blend",
    }
    # a torchvision-layout file loads strictly into every option (the blocks are all it has)
    for trunk in (per_image, learned):
        trunk.load_torchvision_state_dict(off.torchvision_state_dict(), strict=True)
        for k, v in off.state_dict().items():
            torch.testing.assert_close(trunk.state_dict()[k], v)


@pytest.mark.skipif(not RELEASED_WEIGHTS.is_file(), reason="the released weights are not in this checkout")
def test_released_default_weights_still_load_strictly():
    cfg = load_config(str(DEFAULT_CONFIG))
    assert cfg.model.trunk.get("input_norm") is None  # the default config leaves it off
    model = MODELS.build(cfg.model)
    state = torch.load(RELEASED_WEIGHTS, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    model.load_state_dict(state, strict=True)
    cfg = load_config(str(DEFAULT_CONFIG), {"model.trunk.input_norm": "per_image"})
    MODELS.build(cfg.model).load_state_dict(state, strict=True)  # no new tensors: same file loads


def test_timm_trunk_reloads_its_own_weights_with_learned_input_norm(tmp_path):
    trunk = TimmTrunk("mobilenetv4_conv_small", input_norm="learned")
    with torch.no_grad():
        trunk.input_norm_module.blend.fill_(0.25)
    path = tmp_path / "trunk.pth"
    torch.save(trunk.state_dict(), path)
    again = TimmTrunk("mobilenetv4_conv_small", input_norm="learned")
    report = again.load_pretrained(path, strict=True)
    assert len(report.loaded) == report.total
    torch.testing.assert_close(again.input_norm_module.blend, trunk.input_norm_module.blend)


# ---- configs ------------------------------------------------------------------------------
def _parse_cfg_options(*pairs):
    """``--cfg-options`` as the command line parses them."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser.parse_args(["--cfg-options", *pairs]).cfg_options


@pytest.mark.parametrize("value", ["per_image", "learned"])
def test_cfg_options_select_the_input_norm(value):
    cfg = load_config(str(DEFAULT_CONFIG), _parse_cfg_options(f"model.trunk.input_norm={value}"))
    model = MODELS.build(cfg.model)
    assert isinstance(model.trunk, MobileNetV3Trunk) and model.trunk.input_norm == value
    assert isinstance(model.trunk.input_norm_module, PerImageStandardize)


def test_cfg_options_with_an_unknown_value_fail_clearly():
    cfg = load_config(str(DEFAULT_CONFIG), _parse_cfg_options("model.trunk.input_norm=perimage"))
    with pytest.raises(ValueError, match=r"unknown input_norm 'perimage'; expected None or one of"):
        MODELS.build(cfg.model)


@pytest.mark.parametrize("path", STUDY_CONFIGS, ids=[p.stem for p in STUDY_CONFIGS])
def test_study_configs_build_with_the_input_norm_on(path):
    cfg = Config.fromfile(str(path))
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20  # the description docs/configs.md shows
    model = MODELS.build(cfg.model)
    assert model.trunk.input_norm in INPUT_NORMS


# ---- ONNX export ------------------------------------------------------------------------------
def _model(input_norm):
    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.5, input_norm=input_norm),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=11, hidden_channels=64),
            det=dict(type="CenterDetHead", num_classes=10, feat_channels=32),
        ),
        neck=dict(type="FPNLite", out_channels=32),
    ).eval()
    if input_norm == "learned":
        with torch.no_grad():
            model.trunk.input_norm_module.blend.uniform_(-0.3, 0.3)
    return model


def _torch_raw(model, x):
    with torch.no_grad():
        out = model.head_outputs(torch.as_tensor(x), ("cls", "det"))
    return {"cls": out["cls"].numpy(), **{f"det_{k}": v.numpy() for k, v in out["det"].items()}}


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("input_norm", ["per_image", "learned"])
def test_onnx_export_matches_onnx_runtime(tmp_path, input_norm, exporter):
    model = _model(input_norm)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, input_size=128, exporter=exporter, dynamic_batch=True)
    x = (3.0 * torch.randn(2, 3, 128, 128) + 1.5).numpy()  # far from standardised: the stem matters
    got, want = DeployedRunner(path, threads=1).run_raw(x), _torch_raw(model, x)
    assert set(got) == set(want)
    diffs = {k: float(np.abs(got[k] - want[k]).max()) for k in want}
    assert max(diffs.values()) < RAW_ATOL, diffs


def test_onnx_split_pieces_carry_the_input_norm_in_stage_0(tmp_path):
    import onnxruntime as ort

    model = _model("per_image")
    ranges = [(0, 2), (2, model.trunk.num_stages)]
    manifest = export_split(model, tmp_path / "split", stage_ranges=ranges, input_size=128)
    first = manifest["pieces"][0]
    x = (2.0 * torch.randn(1, 3, 128, 128) - 1.0).numpy()
    session = ort.InferenceSession(
        str(tmp_path / "split" / first["file"]), providers=["CPUExecutionProvider"]
    )
    got = dict(zip(first["outputs"], session.run(None, {first["inputs"][0]: x})))
    with torch.no_grad():
        want = model.trunk.forward_taps(torch.as_tensor(x), [1])[1].numpy()
    assert float(np.abs(got["stage1"] - want).max()) < RAW_ATOL
