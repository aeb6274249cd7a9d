"""The mmdet adapter: registration, backbone contract, strict pretrained loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("mmdet", reason="needs the mmdet extra (make mmdet)")

from mmdet.registry import MODELS as MMDET_MODELS  # noqa: E402
from mmdet.utils import register_all_modules  # noqa: E402

import mtmnv3.backbone.mmdet_adapter  # noqa: E402,F401  (registers the backbone)
from mtmnv3.backbone.mmdet_adapter import MMDetMobileNetV3Trunk, load_trunk_weights  # noqa: E402
from mtmnv3.backbone.trunk import MobileNetV3Trunk

pytestmark = pytest.mark.mmdet


def _build(**kwargs) -> MMDetMobileNetV3Trunk:
    register_all_modules(init_default_scope=True)
    return MMDET_MODELS.build(dict(type="MobileNetV3Trunk", **kwargs))


def test_core_package_imports_without_mmdet() -> None:
    code = (
        "import sys; sys.modules['mmdet'] = None; sys.modules['mmcv'] = None\n"
        "import mtmnv3; from mtmnv3 import MobileNetV3Trunk; MobileNetV3Trunk(arch='small')\n"
        "assert 'mtmnv3.backbone.mmdet_adapter' not in sys.modules\n"
        "try:\n    import mtmnv3.backbone.mmdet_adapter\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "make mmdet" in out


@pytest.mark.parametrize("arch,out_indices", [("large", (2, 3, 4)), ("small", (1, 2, 3, 4))])
def test_registered_backbone_matches_core_trunk(arch: str, out_indices: tuple[int, ...]) -> None:
    model = _build(arch=arch, out_indices=out_indices, width_mult=0.75)
    assert isinstance(model, MobileNetV3Trunk) and type(model) is MMDetMobileNetV3Trunk
    core = MobileNetV3Trunk(arch=arch, out_indices=out_indices, width_mult=0.75)
    assert model.feature_info == core.feature_info
    core.load_state_dict(model.state_dict())
    model.eval(), core.eval()
    x = torch.randn(2, 3, 96, 64)
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == len(out_indices)
    for out, ref, i in zip(outs, core(x), out_indices):
        info = model.feature_info[i]
        assert out.shape == (2, info["channels"], -(-96 // info["stride"]), -(-64 // info["stride"]))
        torch.testing.assert_close(out, ref)


def test_frozen_stages_and_norm_eval_through_mmdet_build() -> None:
    model = _build(arch="small", frozen_stages=1, norm_eval=True)
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    stage1_end = model.feature_info[1]["blocks"][1]
    assert frozen == {n for n, _ in model.named_parameters() if int(n.split(".")[1]) < stage1_end}
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def _multitask_checkpoint(path: Path, arch: str = "small") -> dict[str, torch.Tensor]:
    """A checkpoint laid out like the multi-task model's: the trunk under `trunk.`."""
    trunk = MobileNetV3Trunk(arch=arch)
    for p in trunk.parameters():
        torch.nn.init.normal_(p)
    state = {f"trunk.{k}": v for k, v in trunk.state_dict().items()}
    state["heads.det.cls.weight"] = torch.zeros(3, 8)
    torch.save({"meta": {"epoch": 3}, "state_dict": state}, path)
    return trunk.state_dict()


def test_pretrained_init_cfg_with_prefix_loads_trunk(tmp_path: Path) -> None:
    ckpt = tmp_path / "multitask.pth"
    expected = _multitask_checkpoint(ckpt)
    model = _build(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(ckpt), prefix="trunk"))
    before = model.state_dict()["blocks.0.0.weight"].clone()
    model.init_weights()
    got = model.state_dict()
    assert not torch.equal(before, got["blocks.0.0.weight"])
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, msg=k)


@pytest.mark.parametrize("prefix", ["backbone", "trunk.blocks.99", "trunks"])
def test_wrong_prefix_raises_instead_of_random_weights(tmp_path: Path, prefix: str) -> None:
    ckpt = tmp_path / "multitask.pth"
    _multitask_checkpoint(ckpt)
    model = _build(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(ckpt), prefix=prefix))
    with pytest.raises(ValueError, match=rf"prefix '{prefix}' matches no key.*\['heads', 'trunk'\]"):
        model.init_weights()


def test_mmengine_plain_pretrained_init_would_not_raise_cleanly(tmp_path: Path) -> None:
    """Why the adapter has its own loader: mmengine only asserts (gone under -O)."""
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix

    ckpt = tmp_path / "multitask.pth"
    _multitask_checkpoint(ckpt)
    with pytest.raises(AssertionError):
        _load_checkpoint_with_prefix("backbone", str(ckpt))


def test_prefix_of_other_arch_raises_shape_or_key_mismatch(tmp_path: Path) -> None:
    ckpt = tmp_path / "large.pth"
    _multitask_checkpoint(ckpt, arch="large")
    model = _build(arch="small")
    with pytest.raises(ValueError, match=r"shape mismatch .*small trunk"):
        load_trunk_weights(model, ckpt, prefix="trunk")


def test_missing_keys_raise_unless_not_strict(tmp_path: Path) -> None:
    trunk = MobileNetV3Trunk(arch="small")
    state = {f"trunk.{k}": v for k, v in trunk.state_dict().items() if not k.startswith("blocks.12.")}
    torch.save(state, tmp_path / "partial.pth")
    model = _build(arch="small")
    with pytest.raises(ValueError, match=r"missing \['blocks\.12\.0\.weight'"):
        load_trunk_weights(model, tmp_path / "partial.pth", prefix="trunk.")
    load_trunk_weights(model, tmp_path / "partial.pth", prefix="trunk.", strict=False)
    torch.testing.assert_close(
        model.state_dict()["blocks.1.block.0.0.weight"], trunk.state_dict()["blocks.1.block.0.0.weight"]
    )


def test_torchvision_layout_loads_with_features_prefix(tmp_path: Path) -> None:
    trunk = MobileNetV3Trunk(arch="small")
    torch.save(trunk.torchvision_state_dict(), tmp_path / "tv.pth")
    model = _build(
        arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "tv.pth"), prefix="features")
    )
    model.init_weights()
    for k, v in trunk.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_bad_init_cfg_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs 'checkpoint'.*unknown keys \['prefx'\]"):
        _build(init_cfg=dict(type="Pretrained", checkpoint="x.pth", prefx="trunk"))
    with pytest.raises(ValueError, match=r"needs 'checkpoint'"):
        _build(init_cfg=dict(type="Pretrained"))
    model = _build(arch="small", init_cfg=dict(type="Pretrained", checkpoint=str(tmp_path / "nope.pth")))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        model.init_weights()


def test_other_init_cfg_types_still_work() -> None:
    model = _build(arch="small", init_cfg=dict(type="Constant", layer="Conv2d", val=0.5))
    model.init_weights()
    assert torch.all(model.blocks[0][0].weight == 0.5)


def test_checkpoint_with_pickled_functions_raises_clearly(tmp_path: Path) -> None:
    trunk = MobileNetV3Trunk(arch="small")
    torch.save({"state_dict": trunk.state_dict(), "message_hub": {"fn": getattr}}, tmp_path / "foreign.pth")
    with pytest.raises(
        ValueError, match=r"foreign.pth.*weights-only loading refuses.*re-save just its weights"
    ):
        load_trunk_weights(_build(arch="small"), tmp_path / "foreign.pth")
