"""The MobileNetV3 trunk: parity with torchvision, every variant, stage API, errors."""

import math

import pytest
import torch
import torchvision
from torch import nn

from mtmnv3.backbone.trunk import MobileNetV3Trunk
from mtmnv3.backbone.variants import TRUNK_VARIANTS, create_trunk
from mtmnv3.core.registry import MODELS
from mtmnv3.core.specs import LARGE_SPECS, SMALL_SPECS, BlockSpec, parse_block


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine terms, so parity tests mean something."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)


@pytest.fixture(scope="module", params=["large", "small"])
def tv_pair(request, tmp_path_factory):
    arch = request.param
    torch.manual_seed(0)
    tv = getattr(torchvision.models, f"mobilenet_v3_{arch}")()
    with torch.no_grad():
        _randomise_bn(tv)
    tv.eval()
    path = tmp_path_factory.mktemp("weights") / f"mnv3_{arch}.pth"
    torch.save(tv.state_dict(), path)
    trunk = MobileNetV3Trunk.from_torchvision(path, arch=arch).eval()
    return arch, tv, trunk, path


@pytest.mark.parametrize("size", [(224, 224), (257, 193), (33, 47)])
def test_torchvision_parity_every_stage(tv_pair, size):
    arch, tv, trunk, _ = tv_pair
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        refs, y = [], x
        for block in tv.features:
            y = block(y)
            refs.append(y)
        outs = trunk(x)
    assert len(outs) == trunk.num_stages
    for info, out in zip(trunk.feature_info, outs):
        ref = refs[info["blocks"][1] - 1]
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() <= 1e-5, info["name"]


def test_torchvision_classifier_on_our_features_matches(tv_pair):
    arch, tv, trunk, _ = tv_pair
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        ours = tv.classifier(torch.flatten(tv.avgpool(trunk(x)[-1]), 1))
        ref = tv(x)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_torchvision_state_dict_round_trip(tv_pair):
    arch, tv, trunk, _ = tv_pair
    sd = trunk.torchvision_state_dict()
    ref = {k: v for k, v in tv.state_dict().items() if k.startswith("features.")}
    assert sd.keys() == ref.keys()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)


def test_from_torchvision_missing_and_unexpected_keys_named(tv_pair):
    arch, tv, _, _ = tv_pair
    sd = dict(tv.state_dict())
    sd.pop("features.1.block.0.0.weight")
    sd["features.99.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match=r"missing keys \['features\.1\.block\.0\.0\.weight'\]"):
        MobileNetV3Trunk.from_torchvision(sd, arch=arch)
    with pytest.raises(KeyError, match=r"features\.99\.weight"):
        MobileNetV3Trunk.from_torchvision(sd, arch=arch)


def test_from_torchvision_non_strict_loads_the_rest(tv_pair):
    arch, tv, _, _ = tv_pair
    sd = dict(tv.state_dict())
    sd.pop("features.1.block.0.0.weight")
    trunk = MobileNetV3Trunk.from_torchvision(sd, arch=arch, strict=False)
    torch.testing.assert_close(
        trunk.blocks[2].block[0][0].weight, tv.features[2].block[0][0].weight, rtol=0, atol=0
    )


def test_from_torchvision_wrong_arch_or_width_raises(tv_pair):
    arch, tv, _, path = tv_pair
    other = "small" if arch == "large" else "large"
    with pytest.raises(KeyError, match="does not match this"):
        MobileNetV3Trunk.from_torchvision(path, arch=other)
    with pytest.raises(ValueError, match="shape mismatch"):
        MobileNetV3Trunk.from_torchvision(path, arch=arch, width_mult=0.75)


def test_from_torchvision_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        MobileNetV3Trunk.from_torchvision(tmp_path / "nope.pth")
    path = tmp_path / "notasd.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(TypeError, match="expected a state dict"):
        MobileNetV3Trunk.from_torchvision(path)


def test_weights_only_loading_rejects_pickled_objects(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"features.0.0.weight": torch.zeros(1), "evil": nn.ReLU()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|Unsupported global"):
        MobileNetV3Trunk.from_torchvision(path)


@pytest.mark.parametrize("variant", sorted(TRUNK_VARIANTS))
def test_every_variant_forward_backward(variant):
    trunk = create_trunk(variant).train()
    x = torch.randn(2, 3, 64, 80)
    outs = trunk(x)
    loss = sum(o.float().pow(2).mean() for o in outs)
    loss.backward()
    assert all(torch.isfinite(o).all() for o in outs)
    no_grad = [n for n, p in trunk.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, no_grad
    # feature_info matches the real outputs
    for info, out in zip(trunk.feature_info, outs):
        assert out.shape[1] == info["channels"]
        assert out.shape[2:] == (math.ceil(64 / info["stride"]), math.ceil(80 / info["stride"]))
        assert info["params"] > 0 and info["macs"] > 0


def test_variant_switches_change_the_modules():
    assert not any(isinstance(m, nn.Hardswish) for m in create_trunk("small_relu").modules())
    assert any(isinstance(m, nn.ReLU6) for m in create_trunk("large_relu6").modules())
    from mtmnv3.core.layers import SqueezeExcite

    def n_se(t):
        return sum(isinstance(m, SqueezeExcite) for m in t.modules())

    assert n_se(create_trunk("large")) == sum(s.use_se for s in LARGE_SPECS) == 8
    assert n_se(create_trunk("small")) == sum(s.use_se for s in SMALL_SPECS) == 9
    assert n_se(create_trunk("small_no_se")) == 0
    # late SE: only blocks at output stride >= 16 (bneck 4.. in Small)
    late = create_trunk("small_late_se")
    assert late.se_blocks == (4, 5, 6, 7, 8, 9, 10, 11)
    assert MobileNetV3Trunk(arch="small", se="all").se_blocks == tuple(range(1, 12))
    assert MobileNetV3Trunk(arch="small", se=[2, 3]).se_blocks == (2, 3)
    minimal = create_trunk("large_minimal")
    assert n_se(minimal) == 0
    assert not any(isinstance(m, nn.Hardswish) for m in minimal.modules())
    dw = [m for m in minimal.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert dw and all(m.kernel_size == (3, 3) for m in dw)


def test_removed_se_keeps_its_slot_so_stock_weights_load_by_name():
    """A variant without the paper's SE keeps the stock layer names: a stock
    checkpoint loads into it with only the SE weights left over."""
    torch.manual_seed(0)
    stock = MobileNetV3Trunk(arch="small", width_mult=0.5)
    for variant in ("small_no_se", "small_qfriendly", "small_late_se"):
        trunk = create_trunk(variant, width_mult=0.5)
        result = trunk.load_state_dict(stock.state_dict(), strict=False)
        assert result.missing_keys == [], (variant, result.missing_keys)
        assert result.unexpected_keys and all(".fc1." in k or ".fc2." in k for k in result.unexpected_keys)
        removed = [i for i in stock.se_blocks if i not in trunk.se_blocks]
        assert len(result.unexpected_keys) == 4 * len(removed)  # fc1/fc2 weight and bias per removed SE
        own = trunk.state_dict()
        ref = stock.state_dict()
        assert all(torch.equal(own[k], ref[k]) for k in own)
    # the torchvision path too: every non-SE tensor loads, by name
    no_se = create_trunk("small_no_se", width_mult=0.5)
    no_se.load_torchvision_state_dict(stock.torchvision_state_dict(), strict=False)
    assert all(torch.equal(v, stock.state_dict()[k]) for k, v in no_se.state_dict().items())


def test_checkpoint_saved_before_the_se_slot_still_loads(tmp_path):
    """Older SE-free checkpoints have the projection one index earlier."""
    torch.manual_seed(0)
    trunk = create_trunk("small_no_se", width_mult=0.5)
    new_sd = trunk.state_dict()
    old_sd = {}
    for key, value in new_sd.items():
        parts = key.split(".")
        i = int(parts[1])  # blocks.<i>.block.<j>...
        if (
            parts[2] == "block"
            and trunk.blocks[i].se_slot is not None
            and int(parts[3]) > trunk.blocks[i].se_slot
        ):
            parts[3] = str(int(parts[3]) - 1)
        old_sd[".".join(parts)] = value
    assert old_sd.keys() != new_sd.keys()
    fresh = create_trunk("small_no_se", width_mult=0.5)
    fresh.load_state_dict(old_sd)  # strict: every key maps
    assert all(torch.equal(v, new_sd[k]) for k, v in fresh.state_dict().items())
    # the checkpoint loader's key check sees the upgraded names too
    from mtmnv3.core.checkpoint import load_model_checkpoint

    path = tmp_path / "old.pth"
    torch.save({"state_dict": old_sd, "meta": {}}, path)
    via_file = create_trunk("small_no_se", width_mult=0.5)
    load_model_checkpoint(via_file, path)  # strict
    assert all(torch.equal(v, new_sd[k]) for k, v in via_file.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    trunk.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x)[-1], trunk(x)[-1], rtol=0, atol=0)


def test_bn_eps_and_momentum():
    trunk = MobileNetV3Trunk(arch="small", bn_eps=1e-5, bn_momentum=0.1)
    bns = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in bns)


def test_zero_init_residual_starts_residual_blocks_as_identity():
    from mtmnv3.core.layers import InvertedResidual

    torch.manual_seed(0)
    plain = MobileNetV3Trunk(arch="small")
    torch.manual_seed(0)
    zero = MobileNetV3Trunk(arch="small", zero_init_residual=True)
    res = [i for i, b in enumerate(zero.blocks) if isinstance(b, InvertedResidual) and b.use_res_connect]
    assert len(res) == 6  # Small's stride-1 blocks with equal in/out channels
    x = torch.randn(2, 16, 8, 8)
    for i, block in enumerate(zero.blocks):
        if not isinstance(block, InvertedResidual):
            continue
        proj_bn = block.block[-1][1]
        assert (proj_bn.weight == 0).all() == (i in res)
        if i in res:
            x = torch.randn(2, block.block[0][0].in_channels, 8, 8)
            assert torch.equal(block.eval()(x), x)  # identity at init
    # nothing else changes: same parameters and the same draws elsewhere
    diff = [
        n
        for (n, a), (_, b) in zip(plain.named_parameters(), zero.named_parameters())
        if not torch.equal(a, b)
    ]
    assert len(diff) == 6 and all(n.endswith("1.weight") for n in diff), diff
    # and it still trains: the zeroed scales receive gradients
    zero.train()
    zero(torch.randn(2, 3, 64, 64))[-1].sum().backward()
    assert all(zero.blocks[i].block[-1][1].weight.grad.abs().sum() > 0 for i in res)


def test_macs_and_params_match_the_paper():
    # Paper / torchvision: Large 217M MACs and 5.48M params, Small 56M and 2.54M,
    # both including the classifier (1x1 conv to 1280/1024 + linear to 1000).
    for arch, last, hidden, macs_ref, params_ref in [
        ("large", 960, 1280, 217e6, 5.483e6),
        ("small", 576, 1024, 56.5e6, 2.543e6),
    ]:
        trunk = MobileNetV3Trunk(arch=arch)
        head_macs = last * hidden + hidden * 1000
        head_params = last * hidden + hidden + hidden * 1000 + 1000
        macs = sum(f["macs"] for f in trunk.feature_info) + head_macs
        params = sum(f["params"] for f in trunk.feature_info) + head_params
        assert abs(macs - macs_ref) / macs_ref < 0.01, (arch, macs)
        assert abs(params - params_ref) / params_ref < 0.001, (arch, params)
    trunk = MobileNetV3Trunk(arch="small")
    assert trunk.stage_macs(224, 224) == [f["macs"] for f in trunk.feature_info]
    assert sum(trunk.stage_macs(448, 448)) > 3.9 * sum(trunk.stage_macs(224, 224))


def test_forward_stages_composes_to_forward():
    trunk = create_trunk("tiny").eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        full = trunk(x)
        mid = trunk.forward_stages(x, 0, 2)
        torch.testing.assert_close(mid, full[1])
        rest = trunk.forward_stages(mid, 2)
        torch.testing.assert_close(rest, full[-1])
        taps = trunk.forward_taps(x, [1, 3])
    assert sorted(taps) == [1, 3]
    torch.testing.assert_close(taps[3], full[3])


def test_out_indices_and_negative_indices():
    trunk = MobileNetV3Trunk(arch="small", out_indices=(-1, 2))
    assert trunk.out_indices == (2, 4)
    outs = trunk(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [24, 576]


def test_with_cp_gives_the_same_gradients():
    torch.manual_seed(0)
    a = create_trunk("tiny").train()
    b = create_trunk("tiny", with_cp=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    for m in (a, b):
        sum(o.sum() for o in m(x)).backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, msg=n)


def test_frozen_stages():
    trunk = MobileNetV3Trunk(arch="small", frozen_stages=1)
    trunk.train()
    for i, (a, b) in enumerate(trunk.stage_plan.stages):
        for block in trunk.blocks[a:b]:
            frozen = i <= 1
            assert all(p.requires_grad != frozen for p in block.parameters())
            assert all(m.training != frozen for m in block.modules())
    before = trunk.blocks[0][1].running_mean.clone()
    trunk(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, trunk.blocks[0][1].running_mean)


def test_norm_eval():
    trunk = MobileNetV3Trunk(arch="small", norm_eval=True)
    trunk.train()
    assert trunk.training
    bns = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    convs = [m for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.training for m in convs)
    ref = [m.running_mean.clone() for m in bns]
    trunk(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(r, m.running_mean) for r, m in zip(ref, bns))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(arch="medium"), "unknown arch 'medium'"),
        (dict(activation="gelu"), "unknown activation 'gelu'"),
        (dict(se="sometimes"), "unknown se mode 'sometimes'"),
        (dict(se=[0, 12]), r"se block indices must lie in 1\.\.11.*\[0, 12\]"),
        (dict(out_indices=(5,)), r"out_indices .* got \[5\]"),
        (dict(out_indices=(1, 1)), "unique"),
        (dict(frozen_stages=5), "frozen_stages .* got 5"),
        (dict(frozen_stages=-2), "frozen_stages .* got -2"),
        (dict(width_mult=0), "width_mult must be a positive number, got 0"),
        (dict(minimalistic=True, se="paper"), "minimalistic trunks have no SE, got se='paper'"),
    ],
)
def test_invalid_arguments(kwargs, match):
    kwargs = {"arch": "small", **kwargs}
    with pytest.raises(ValueError, match=match):
        MobileNetV3Trunk(**kwargs)


def test_invalid_inputs():
    trunk = create_trunk("tiny")
    with pytest.raises(ValueError, match=r"Nx3xHxW images, got a tensor of shape \(3, 64, 64\)"):
        trunk(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match=r"got a tensor of shape \(1, 1, 64, 64\)"):
        trunk(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="stage 2 expects"):
        trunk.forward_stages(torch.randn(1, 3, 64, 64), 2)
    with pytest.raises(ValueError, match=r"need 0 <= start < end <= 5, got start=3, end=3"):
        trunk.forward_stages(torch.randn(1, 3, 64, 64), 3, 3)
    with pytest.raises(TypeError, match="expected a torch.Tensor input, got list"):
        trunk([1, 2, 3])


def test_built_from_registry_config():
    trunk = MODELS.build(dict(type="MobileNetV3Trunk", arch="small", out_indices=(3, 4)))
    assert isinstance(trunk, MobileNetV3Trunk) and trunk.out_indices == (3, 4)
    with pytest.raises(KeyError, match="already registered"):
        MODELS.register_module(name="MobileNetV3Trunk", module=MobileNetV3Trunk)


def test_block_specs_parse_and_reject_unknown_tokens():
    spec = parse_block("k5_e72_c40_s2_se_re")
    assert spec == BlockSpec(kernel=5, expanded=72, out=40, use_se=True, use_hs=False, stride=2)
    assert parse_block(spec.to_string()) == spec
    with pytest.raises(ValueError, match="unknown token 'x9'"):
        parse_block("k5_e72_c40_s2_x9_re")
    with pytest.raises(ValueError, match="lacks"):
        parse_block("k5_e72_s2_re")
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        BlockSpec(3, 16, 16, False, False, 3)
    assert len(LARGE_SPECS) == 15 and len(SMALL_SPECS) == 11


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown trunk variant 'huge'"):
        create_trunk("huge")


@pytest.mark.parametrize("channels_last", [False, True])
def test_fold_batchnorm_keeps_the_outputs(channels_last):
    from mtmnv3.core.layers import fold_batchnorm
    from mtmnv3.models import MultiTaskPerceptor

    torch.manual_seed(0)
    model = MultiTaskPerceptor(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.5),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=5, hidden_channels=32),
            det=dict(type="CenterDetHead", num_classes=3, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
        channels_last=channels_last,
    )
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)
    model.eval()
    num_bn = 0
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics far from identity, so folding matters
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.3, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
            num_bn += 1
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        before = model.head_outputs(x, ("cls", "det"))
        assert fold_batchnorm(model) == num_bn > 0
        after = model.head_outputs(x, ("cls", "det"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after["cls"], before["cls"], atol=1e-4, rtol=1e-4)
    for key in before["det"]:
        torch.testing.assert_close(after["det"][key], before["det"][key], atol=1e-4, rtol=1e-4)
    assert fold_batchnorm(model) == 0  # nothing left to fold


def test_interleaved_timings_warm_up_then_rotate_the_order_each_round():
    from mtmnv3.core.profiling import interleaved_ratio, interleaved_timings

    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    timings = interleaved_timings(fns, rounds=3, inner=2, warmup=1)
    assert calls[:3] == list("abc")  # warm-up, once each
    rounds = calls[3:]
    assert rounds == list("aabbcc" + "bbccaa" + "ccaabb")
    assert set(timings) == set("abc") and all(t.repeats == 3 and t.median_ms >= 0 for t in timings.values())
    ratio, t_fn, t_ref = interleaved_ratio(
        lambda: sum(range(100)), lambda: None, rounds=4, inner=50, warmup=0
    )
    assert ratio == pytest.approx(t_fn.median_ms / t_ref.median_ms) and t_fn.repeats == 4
    with pytest.raises(ValueError, match="rounds >= 1"):
        interleaved_timings(fns, rounds=0)


def test_compare_backends_times_every_call_and_reports_the_largest_disagreement():
    from mtmnv3.core.profiling import compare_backends

    calls = {
        "ref": lambda: {"a": 1.0, "b": float("nan"), "c": 3.0},
        "same": lambda: {"a": 1.0, "b": float("nan")},  # NaN equals NaN; a subset of keys is fine
        "off": lambda: {"a": 1.0, "c": 3.25},
    }
    cmp = compare_backends(calls, rounds=2)
    assert cmp.max_diff == pytest.approx(0.25)
    assert set(cmp.outputs) == set(calls) and all(t.repeats == 2 for t in cmp.timings.values())
    rows = cmp.rows()
    assert [r[0] for r in rows] == list(calls) and rows[0][2] == "1.00"
    assert compare_backends({"ref": calls["ref"], "same": calls["same"]}, rounds=1).max_diff == 0.0
