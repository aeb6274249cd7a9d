"""ImageNet initialisation from a local torchvision file: ``init_cfg=dict(type='Pretrained', checkpoint=PATH)``.

The files are written here from randomly initialised torchvision models (with
non-trivial BatchNorm statistics), the way a user saves them on a machine with
internet access: ``torch.save(mobilenet_v3_small(weights=...).state_dict(), path)``.
"""

import importlib.util

import pytest
import torch
import torchvision
from torch import nn

from mtmnv3.backbone import pretrained
from mtmnv3.backbone.pretrained import load_pretrained_trunk, read_state_dict
from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.core.registry import MODELS


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


@pytest.fixture(scope="module")
def tv_small(tmp_path_factory):
    torch.manual_seed(0)
    tv = torchvision.models.mobilenet_v3_small()
    _randomise_bn(tv)
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v3_small.pth"
    torch.save(tv.state_dict(), path)
    return tv.eval(), path


@pytest.fixture
def logs(monkeypatch):
    lines = []
    monkeypatch.setattr(pretrained, "print_log", lambda msg, **kw: lines.append(msg))
    return lines


def _assert_matches_torchvision(trunk: MobileNetV3Trunk, tv: nn.Module) -> None:
    trunk.eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        ref = tv.features(x)
        ours = trunk.forward_stages(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_plain_torchvision_file_loads_and_matches_features(tv_small, logs):
    tv, path = tv_small
    trunk = MobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    trunk.init_weights()
    _assert_matches_torchvision(trunk, tv)
    n = len(trunk.state_dict())
    assert logs == [
        f"loaded {n}/{n} trunk tensors from checkpoint {str(path)!r} (prefix='features') "
        "into a small trunk (width_mult=1.0)"
    ]


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_torchvision_file_loads(tv_small, tmp_path, wrapper):
    tv, _ = tv_small
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: tv.state_dict(), "epoch": 600, "args": {"lr": 0.1}}, path)
    trunk = MobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    trunk.init_weights()
    _assert_matches_torchvision(trunk, tv)


def test_config_key_model_trunk_init_cfg_loads_in_the_multitask_model(tv_small):
    tv, path = tv_small
    model = MODELS.build(
        dict(
            type="MultiTaskPerceptor",
            channels_last=True,
            trunk=dict(
                type="MobileNetV3Trunk",
                arch="small",
                zero_init_residual=True,
                init_cfg=dict(type="Pretrained", checkpoint=str(path)),
            ),
            heads=dict(cls=dict(type="ClsHead", num_classes=3, hidden_channels=16)),
        )
    )
    model.init_weights()
    _assert_matches_torchvision(model.trunk, tv)


def test_explicit_features_prefix_and_strict(tv_small):
    tv, path = tv_small
    trunk = MobileNetV3Trunk(
        arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="features", strict=True)
    )
    trunk.init_weights()
    _assert_matches_torchvision(trunk, tv)


def test_prefix_matching_nothing_raises_instead_of_loading_nothing(tv_small):
    _, path = tv_small
    trunk = MobileNetV3Trunk(
        arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="backbone")
    )
    with pytest.raises(ValueError, match=r"prefix 'backbone' matches no key .*\['classifier', 'features'\]"):
        trunk.init_weights()


def test_file_for_the_wrong_arch_fails_naming_keys(tmp_path):
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(torchvision.models.mobilenet_v3_large().state_dict(), path)
    trunk = MobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    with pytest.raises(ValueError) as err:
        trunk.init_weights()
    msg = str(err.value)
    assert "mobilenet_v3_large.pth" in msg and "small trunk" in msg
    assert "fewer than the 95% required" in msg
    # small's block 1 has SE, large's has not: the first keys are named in the trunk's order
    assert "first keys that did not match: ['blocks.1.block.1.fc1.weight', " in msg
    assert "unused checkpoint keys ['blocks.1.block.1.0.weight', " in msg
    assert "(trunk blocks.<i> = torchvision features.<i>)" in msg


def test_wrong_width_fails(tv_small):
    _, path = tv_small
    trunk = MobileNetV3Trunk(
        arch="small", width_mult=0.5, init_cfg=dict(type="Pretrained", checkpoint=str(path))
    )
    with pytest.raises(ValueError, match=r"only \d+/\d+ trunk tensors .*width_mult=0\.5"):
        trunk.init_weights()


def test_a_few_missing_tensors_load_the_rest_and_say_so(tv_small, tmp_path, logs):
    tv, _ = tv_small
    state = {k: v for k, v in tv.state_dict().items() if not k.startswith("features.12.")}
    torch.save(state, tmp_path / "partial.pth")
    trunk = MobileNetV3Trunk(arch="small")
    report = load_pretrained_trunk(trunk, tmp_path / "partial.pth")
    assert report.total - len(report.loaded) == 6 and report.fraction >= 0.95
    assert "not loaded: ['blocks.12.0.weight'" in logs[0]
    with pytest.raises(ValueError, match=r"missing \['blocks\.12\.0\.weight'"):
        load_pretrained_trunk(trunk, tmp_path / "partial.pth", strict=True)
    with pytest.raises(ValueError, match=r"fewer than the 99% required"):
        load_pretrained_trunk(trunk, tmp_path / "partial.pth", min_loaded=0.99)


def test_se_free_variant_takes_a_stock_file(tv_small, logs):
    tv, path = tv_small
    trunk = MobileNetV3Trunk(arch="small", se="none", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    trunk.init_weights()
    torch.testing.assert_close(trunk.blocks[12][0].weight, tv.features[12][0].weight, rtol=0, atol=0)
    assert "checkpoint tensors unused: ['blocks.1.block.1.fc1.weight'" in logs[0]


@pytest.mark.parametrize(
    "damage",
    [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"not a checkpoint at all" * 20],
    ids=["truncated", "empty", "garbage"],
)
def test_truncated_or_corrupt_file_named(tv_small, tmp_path, damage):
    _, path = tv_small
    bad = tmp_path / "damaged.pth"
    bad.write_bytes(damage(path.read_bytes()))
    trunk = MobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(bad)))
    with pytest.raises(
        ValueError, match=r"cannot read weights file .*damaged\.pth: it is truncated or corrupt"
    ):
        trunk.init_weights()


def test_missing_file_and_non_state_dict_and_pickled_code(tmp_path):
    trunk = MobileNetV3Trunk(
        arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "no.pth"))
    )
    with pytest.raises(FileNotFoundError, match=r"weights file not found: .*no\.pth"):
        trunk.init_weights()
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(TypeError, match=r"meta\.pth: expected a state dict .* keys \['epoch', 'lr'\]"):
        read_state_dict(tmp_path / "meta.pth")
    torch.save({"features.0.0.weight": torch.zeros(1), "act": nn.ReLU()}, tmp_path / "code.pth")
    with pytest.raises(ValueError, match=r"code\.pth.*weights-only loading refuses"):
        read_state_dict(tmp_path / "code.pth")


def test_bad_init_cfg_rejected_at_build():
    with pytest.raises(ValueError, match=r"needs 'checkpoint'.*unknown keys \['prefx'\]"):
        MobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint="x.pth", prefx="trunk"))


def test_other_init_cfg_types_still_run():
    trunk = MobileNetV3Trunk(arch="small", init_cfg=dict(type="Constant", layer="Conv2d", val=0.5))
    trunk.init_weights()
    assert torch.all(trunk.blocks[0][0].weight == 0.5)


@pytest.mark.mmdet
@pytest.mark.skipif(importlib.util.find_spec("mmdet") is None, reason="needs the mmdet extra (make mmdet)")
def test_mmdet_adapter_takes_the_torchvision_file_without_prefix(tv_small):
    from mtmnv3.backbone.mmdet_adapter import MMDetMobileNetV3Trunk

    tv, path = tv_small
    trunk = MMDetMobileNetV3Trunk(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    trunk.init_weights()
    _assert_matches_torchvision(trunk, tv)
