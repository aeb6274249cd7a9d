"""TimmTrunk: timm models behind the trunk contract, refusals, weights, variants, configs.

The contract itself (feature_info, stages, freezing, the mmdet adapter, the
three-task model) runs over every trunk in test_trunk_contract.py. Inputs are
64 px; nothing is downloaded (weights files are written by the tests).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from mtmnv3.backbone.plan import StagePlan
from mtmnv3.backbone.timm_trunk import (
    CROSS_CHECK_TRUNKS,
    SUCCESSOR_TRUNKS,
    TESTED_TIMM_TRUNKS,
    TimmTrunk,
    TrunkContractError,
)
from mtmnv3.backbone.variants import TIMM_VARIANTS, TRUNK_VARIANTS, create_trunk, trunk_config
from mtmnv3.core.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
SUCCESSOR_CONFIGS = sorted((ROOT / "configs" / "successors").glob("*.py"))
NAME = "mobilenetv4_conv_small"
SIZE = 64


def _hooked_taps(model: nn.Module, modules: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """timm's own outputs at ``modules`` (forward hooks, eval mode)."""
    seen = {}
    hooks = [
        model.get_submodule(m).register_forward_hook(lambda mod, i, o, m=m: seen.__setitem__(m, o))
        for m in modules
    ]
    try:
        with torch.no_grad():
            model.eval().forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    return [seen[m] for m in modules]


# ---- names, variants, refusals -----------------------------------------------------------------
def test_tested_names_are_variants_and_stay_out_of_the_mobilenetv3_variants():
    assert set(SUCCESSOR_TRUNKS) >= {
        "mobilenetv4_conv_small",
        "mobilenetv4_conv_medium",
        "mobilevit_xxs",
        "fbnetc_100",
        "efficientnet_lite0",
        "mobilenetv2_100",
        "ghostnet_100",
    }
    assert CROSS_CHECK_TRUNKS == ("mobilenetv3_small_100",)
    assert sorted(TIMM_VARIANTS) == sorted(f"timm_{n}" for n in TESTED_TIMM_TRUNKS)
    assert not set(TIMM_VARIANTS) & set(TRUNK_VARIANTS)
    assert trunk_config("timm_ghostnet_100", frozen_stages=1) == dict(
        type="TimmTrunk", name="ghostnet_100", frozen_stages=1
    )
    assert trunk_config("small") == dict(type="MobileNetV3Trunk", arch="small")
    trunk = create_trunk(f"timm_{NAME}", out_indices=(-1,))
    assert isinstance(trunk, TimmTrunk) and trunk.name == trunk.arch == NAME and trunk.out_indices == (4,)
    with pytest.raises(ValueError, match="timm successor"):
        create_trunk("timm_nope")


def test_unknown_name_lists_the_tested_names_and_close_timm_names():
    with pytest.raises(ValueError, match="unknown timm model 'mobilenetv4_conv_smal'") as err:
        TimmTrunk("mobilenetv4_conv_smal")
    text = str(err.value)
    assert all(n in text for n in TESTED_TIMM_TRUNKS)
    assert "close timm names: ['mobilenetv4_conv_small'" in text


def test_a_model_that_stays_at_stride_16_is_refused_with_the_reason():
    with pytest.raises(TrunkContractError, match="does not reach stride 32.*strides \\[16, 16"):
        TimmTrunk("vit_tiny_patch16_224", model_kwargs=dict(depth=2, img_size=SIZE))


class _Block(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, stride, 1)

    def forward(self, x):
        return self.conv(x).relu()


class _Fake(nn.Module):
    """A tiny timm-like model: stem, blocks, classifier; taps and forward adjustable."""

    def __init__(self, strides=(2, 2, 2, 2, 2), taps=None, scale=False, no_info=False):
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 8, 3, strides[0], 1)
        self.blocks = nn.Sequential(*(_Block(s) for s in strides[1:]))
        self.classifier = nn.Linear(8, 4)
        self.scale = scale
        if not no_info:
            red, info = strides[0], [dict(module="conv_stem", num_chs=8, reduction=strides[0])]
            for i, s in enumerate(strides[1:]):
                red *= s
                info.append(dict(module=f"blocks.{i}", num_chs=8, reduction=red))
            self.feature_info = taps if taps is not None else info

    def forward_features(self, x):
        x = self.conv_stem(x)
        return self.blocks(2 * x if self.scale else x)


@pytest.fixture
def fake_timm(monkeypatch):
    """Make TimmTrunk build ``_Fake(**kwargs)`` for any name starting with 'fake'."""
    real_is_model, real_create = timm.is_model, timm.create_model
    monkeypatch.setattr(timm, "is_model", lambda n: n.startswith("fake") or real_is_model(n))

    def create(name, pretrained=False, num_classes=0, **kwargs):
        if name.startswith("fake"):
            return _Fake(**kwargs)
        return real_create(name, pretrained=pretrained, num_classes=num_classes, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(no_info=True), "publishes no feature_info"),
        (dict(scale=True), "does more than call them in order"),
        (dict(taps=[dict(module="blocks.3.conv", num_chs=8, reduction=32)]), "inside block 'blocks.3'"),
        (dict(taps=[dict(module="nowhere", num_chs=8, reduction=32)]), "not on the sequential path"),
        (dict(strides=(4, 4, 2, 1, 1)), "not a stride-2 pyramid.*\\[4, 16, 32\\]"),
        (dict(strides=(2, 2, 4, 1, 2)), "not a stride-2 pyramid.*\\[2, 4, 16, 32\\]"),
    ],
)
def test_models_that_cannot_give_the_stages_are_refused_with_the_reason(fake_timm, kwargs, match):
    with pytest.raises(TrunkContractError, match=match):
        TimmTrunk(f"fake_{sorted(kwargs.items())}", model_kwargs=kwargs)


def test_a_fitting_model_becomes_a_trunk_without_its_head(fake_timm):
    trunk = TimmTrunk("fake_ok")
    assert [f["stride"] for f in trunk.feature_info] == [2, 4, 8, 16, 32]
    assert not any(k.startswith("model.classifier") for k in trunk.state_dict())
    assert len(trunk.blocks) == 5 and trunk.blocks[0] is trunk.model.conv_stem


def test_reserved_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="may not set \\['pretrained'\\]"):
        TimmTrunk(NAME, model_kwargs=dict(pretrained=True))
    with pytest.raises(ValueError, match="reference_size"):
        TimmTrunk(NAME, reference_size=32)
    with pytest.raises(ValueError, match="out_indices"):
        TimmTrunk(NAME, out_indices=(5,))
    with pytest.raises(ValueError, match="stage plan covers 3 blocks"):
        TimmTrunk(NAME, stage_plan=StagePlan.from_cuts(3, [1]))
    # timm arguments pass through
    trunk = TimmTrunk(NAME, model_kwargs=dict(drop_path_rate=0.1))
    assert trunk.model_kwargs == dict(drop_path_rate=0.1)


# ---- layout and function -----------------------------------------------------------------------
def test_timm_mobilenetv3_small_is_our_small_trunk():
    """Cross-check of the adapter: timm's MobileNetV3-Small gives the same stages
    (channels, strides, MACs, params) as MobileNetV3Trunk('small'), and with the same
    weights the same outputs."""
    ours = create_trunk("small", bn_eps=1e-5).eval()  # timm's BatchNorm eps
    theirs = TimmTrunk("mobilenetv3_small_100").eval()
    keys = ("channels", "stride", "macs", "params")
    assert [{k: f[k] for k in keys} for f in ours.feature_info] == [
        {k: f[k] for k in keys} for f in theirs.feature_info
    ]
    a, b = ours.state_dict(), theirs.state_dict()
    assert len(a) == len(b)
    ours.load_state_dict(dict(zip(a, b.values())))  # same order, same shapes
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        for p, q in zip(ours(x), theirs(x)):
            torch.testing.assert_close(p, q)


def test_stages_give_timms_outputs_at_its_taps():
    trunk = TimmTrunk(NAME).eval()
    ref = timm.create_model(NAME, pretrained=False)
    ref.load_state_dict(trunk.model.state_dict(), strict=False)  # only the classifier is left
    x = torch.randn(1, 3, SIZE, SIZE)
    taps = [f["module"] for f in ref.feature_info]
    with torch.no_grad():
        for ours, theirs in zip(trunk(x), _hooked_taps(ref, taps, x)):
            torch.testing.assert_close(ours, theirs)


def test_ghostnet_keeps_its_last_stride_32_stage():
    """timm taps GhostNet at the first block of stride 32; the trunk keeps the rest of
    its blocks (as MobileNetV3's last 1x1 conv), not the classifier's conv."""
    trunk = TimmTrunk("ghostnet_100")
    assert trunk.block_info[-1]["name"] == "blocks.9.0" and trunk.feature_info[-1]["channels"] == 960
    assert "conv_head" in trunk._dropped and "blocks.8.0" not in trunk._dropped


def test_stage_macs_and_block_info():
    trunk = TimmTrunk(NAME)
    macs = trunk.stage_macs(224, 224)
    assert macs == [f["macs"] for f in trunk.feature_info]
    assert sum(trunk.stage_macs(112, 112)) < sum(macs) / 3
    assert sum(f["params"] for f in trunk.feature_info) == sum(p.numel() for p in trunk.parameters())
    assert [b["index"] for b in trunk.block_info] == list(range(len(trunk.blocks)))
    assert trunk.block_info[0]["name"] == "conv_stem"


def test_custom_stage_plan_rebuilds_the_stages(tmp_path):
    default = TimmTrunk(NAME)
    plan = StagePlan.from_cuts(len(default.blocks), [default.stage_plan.cuts[2], default.stage_plan.cuts[3]])
    path = tmp_path / "plan.json"
    plan.save(path)
    trunk = TimmTrunk(NAME, stage_plan=str(path)).eval()
    assert trunk.stage_plan == plan and trunk.num_stages == 3
    assert [f["stride"] for f in trunk.feature_info] == [8, 16, 32]
    assert sum(f["macs"] for f in trunk.feature_info) == sum(f["macs"] for f in default.feature_info)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(trunk.forward_stages(trunk.forward_stages(x, 0, 1), 1), trunk(x)[-1])


def test_with_cp_gives_the_same_gradients_and_copies_share_nothing():
    a = TimmTrunk(NAME).train()
    b = copy.deepcopy(a)
    b.with_cp = True
    assert b.blocks[0] is b.model.conv_stem and b.blocks[0] is not a.blocks[0]
    x = torch.randn(2, 3, SIZE, SIZE)
    for t in (a, b):
        sum(o.mean() for o in t(x)).backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


# ---- pretrained weights from a local file --------------------------------------------------------
@pytest.fixture(scope="module")
def timm_file(tmp_path_factory):
    """A timm state dict of the model with its 1000-class classifier, as timm saves it."""
    torch.manual_seed(1)
    model = timm.create_model(NAME, pretrained=False)
    path = tmp_path_factory.mktemp("weights") / f"{NAME}.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_pretrained_init_cfg_loads_a_timm_state_dict_strictly(timm_file):
    path, state = timm_file
    trunk = TimmTrunk(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(path), strict=True))
    assert not torch.equal(trunk.model.conv_stem.weight, state["conv_stem.weight"])
    trunk.init_weights()
    own = trunk.state_dict()
    assert all(torch.equal(own[f"model.{k}"], v) for k, v in state.items() if f"model.{k}" in own)
    assert len(own) == len([k for k in state if not k.startswith(("conv_head", "norm_head", "classifier"))])


def test_pretrained_loads_a_multitask_checkpoint_and_the_trunks_own_weights(timm_file, tmp_path):
    path, _ = timm_file
    source = TimmTrunk(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    source.init_weights()
    ckpt = tmp_path / "multitask.pth"
    torch.save({"state_dict": {f"trunk.{k}": v for k, v in source.state_dict().items()}}, ckpt)
    for file, prefix in ((ckpt, None), (ckpt, "trunk")):
        trunk = TimmTrunk(NAME, init_cfg=dict(type="Pretrained", checkpoint=str(file), prefix=prefix))
        trunk.init_weights()
        assert all(torch.equal(v, source.state_dict()[k]) for k, v in trunk.state_dict().items())
    report = TimmTrunk(NAME).load_pretrained(source.state_dict(), strict=True)
    assert report.fraction == 1.0


def test_pretrained_from_another_model_or_without_weights_fails_with_the_reason(timm_file, tmp_path):
    path, _ = timm_file
    with pytest.raises(ValueError, match="only .* trunk tensors .* load"):
        TimmTrunk("mobilenetv4_conv_medium").load_pretrained(path)
    empty = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(1)}, empty)
    with pytest.raises(ValueError, match="holds no mobilenetv4_conv_small weights.*'foo'"):
        TimmTrunk(NAME).load_pretrained(empty)
    with pytest.raises(ValueError, match="prefix 'backbone' matches no key"):
        TimmTrunk(NAME).load_pretrained(path, prefix="backbone")
    with pytest.raises(FileNotFoundError):
        TimmTrunk(NAME).load_pretrained(tmp_path / "missing.pth")


# ---- configs and the summary command ------------------------------------------------------------
def test_every_successor_config_loads_validates_and_differs_from_the_default_only_in_its_trunk():
    import mtmnv3.models  # noqa: F401
    from mtmnv3.engine import load_config, validate_config

    assert sorted(p.name for p in SUCCESSOR_CONFIGS) == sorted(
        f"mtmnv3_{n}_3task_synth.py" for n in SUCCESSOR_TRUNKS
    )
    default = load_config(ROOT / "configs" / "mtmnv3_small_3task_synth.py").to_dict()
    for path in SUCCESSOR_CONFIGS:
        assert path.read_text().startswith("# "), path  # the one-line description docs/configs.md shows
        cfg = load_config(path)
        validate_config(cfg)
        data = cfg.to_dict()
        name = path.name[len("mtmnv3_") : -len("_3task_synth.py")]
        assert data["model"].pop("trunk") == dict(type="TimmTrunk", name=name)
        expected = copy.deepcopy(default)
        expected["model"].pop("trunk")
        assert data == expected, path.name


@pytest.mark.parametrize("path", SUCCESSOR_CONFIGS, ids=[p.stem for p in SUCCESSOR_CONFIGS])
def test_every_successor_config_builds_its_model(path):
    import mtmnv3.models  # noqa: F401
    from mtmnv3.engine import load_config

    model = MODELS.build(load_config(path).model)
    assert isinstance(model.trunk, TimmTrunk)


def test_summary_shows_timm_variants(capsys):
    from mtmnv3.cli import main

    argv = [
        "summary",
        "--variants",
        "small",
        f"timm_{NAME}",
        "--size",
        "64",
        "--repeats",
        "1",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"timm_{NAME}" in out and "stage4" in out
    assert main(["summary", "--variants", "timm_nope"]) == 2
    assert "timm successors" in capsys.readouterr().err
