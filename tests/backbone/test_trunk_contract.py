"""The trunk contract, over every trunk: MobileNetV3 and the timm successors.

The neck, the heads, the multi-task model, stage plans and the mmdet adapter
only use this contract (feature_info, forward_stages / forward_taps / forward,
out_indices, frozen_stages, norm_eval), so any trunk that passes here plugs in.
Inputs are 64 px; one tiny batch trains one step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData
from torch import nn

from mtmnv3.backbone.timm_trunk import TESTED_TIMM_TRUNKS
from mtmnv3.core.registry import MODELS
from mtmnv3.core.structures import MultiTaskDataSample

SIZE = 64

#: (id, trunk config): the package's MobileNetV3-Small and every tested timm model.
TRUNKS = [("mobilenetv3_trunk_small", dict(type="MobileNetV3Trunk", arch="small"))] + [
    (name, dict(type="TimmTrunk", name=name)) for name in TESTED_TIMM_TRUNKS
]
IDS = [i for i, _ in TRUNKS]
CFGS = [c for _, c in TRUNKS]


def _build(cfg: dict, **kwargs) -> nn.Module:
    return MODELS.build({**cfg, **kwargs})


@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_feature_info_matches_the_outputs_and_stages_compose(cfg):
    trunk = _build(cfg).eval()
    info = trunk.feature_info
    assert len(info) == trunk.num_stages == len(trunk.out_indices)
    strides = [f["stride"] for f in info]
    assert strides[-1] == 32 and all(b == 2 * a for a, b in zip(strides, strides[1:]))
    assert {8, 16, 32} <= set(strides)
    assert all(f["macs"] > 0 and f["params"] > 0 for f in info)
    assert [trunk.stage_in_channels(i) for i in range(trunk.num_stages)] == [3] + [
        f["channels"] for f in info[:-1]
    ]
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        outs = trunk(x)
        assert isinstance(outs, tuple) and len(outs) == trunk.num_stages
        for out, f in zip(outs, info):
            assert out.shape == (2, f["channels"], SIZE // f["stride"], SIZE // f["stride"]), f
        # forward_stages(0, k) then (k, end) is forward, for every cut k
        for k in range(1, trunk.num_stages):
            head = trunk.forward_stages(x, 0, k)
            torch.testing.assert_close(head, outs[k - 1])
            torch.testing.assert_close(trunk.forward_stages(head, k), outs[-1])
        taps = trunk.forward_taps(x, [1, 3])
        assert sorted(taps) == [1, 3]
        torch.testing.assert_close(taps[3], outs[3])
    with pytest.raises(ValueError, match="expects"):
        trunk.forward_stages(torch.randn(1, 5, SIZE, SIZE), 1)


@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_out_indices_frozen_stages_and_norm_eval(cfg):
    trunk = _build(cfg, out_indices=(2, -1), frozen_stages=1, norm_eval=True).train()
    outs = trunk(torch.randn(1, 3, SIZE, SIZE))
    assert [o.shape[1] for o in outs] == [
        trunk.feature_info[i]["channels"] for i in (2, trunk.num_stages - 1)
    ]
    frozen, trainable = [], []
    for stage, (a, b) in enumerate(trunk.stage_plan.stages):
        for block in trunk.blocks[a:b]:
            params = list(block.parameters())
            (frozen if stage <= 1 else trainable).extend(params)
            if stage <= 1:
                assert not any(m.training for m in block.modules())
    assert frozen and not any(p.requires_grad for p in frozen)
    assert trainable and all(p.requires_grad for p in trainable)
    norms = [m for m in trunk.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms)
    # without norm_eval, the unfrozen BatchNorms train
    plain = _build(cfg).train()
    assert all(m.training for m in plain.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    with pytest.raises(ValueError, match="frozen_stages"):
        _build(cfg, frozen_stages=trunk.num_stages)


@pytest.mark.mmdet
@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_mmdet_adapter_builds_the_trunk(cfg):
    pytest.importorskip("mmdet", reason="needs the mmdet extra (make mmdet)")
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules

    import mtmnv3.backbone.mmdet_adapter  # noqa: F401  (registers the backbones)

    register_all_modules(init_default_scope=True)
    backbone = MMDET_MODELS.build({**cfg, "out_indices": (-3, -2, -1)}).eval()  # strides 8, 16, 32
    assert type(backbone).__module__ == "mtmnv3.backbone.mmdet_adapter"
    assert backbone.pretrained_strict_default is True
    outs = backbone(torch.randn(1, 3, SIZE, SIZE))
    info = backbone.feature_info[-3:]
    assert [f["stride"] for f in info] == [8, 16, 32]
    assert [o.shape[1:] for o in outs] == [
        (f["channels"], SIZE // f["stride"], SIZE // f["stride"]) for f in info
    ]


def _sample(label: int) -> MultiTaskDataSample:
    s = MultiTaskDataSample(
        metainfo=dict(
            tasks=("cls", "det", "track"),
            img_shape=(SIZE, SIZE),
            ori_shape=(SIZE, SIZE),
            scale_factor=(1.0, 1.0),
        )
    )
    gi = InstanceData()
    gi.bboxes = torch.tensor([[4.0, 6.0, 26.0, 30.0], [32.0, 16.0, 60.0, 46.0]])
    gi.labels = torch.tensor([1, 3])
    gi.instance_ids = torch.tensor([3, 7])
    gi.ignore = torch.tensor([False, False])
    gi.visibility = torch.ones(2)
    s.gt_instances = gi
    s.gt_label = label
    return s


@pytest.fixture(scope="module")
def three_task_cfg():
    from _helpers import CONFIG

    from mtmnv3.engine import load_config

    return load_config(CONFIG).model


@pytest.mark.parametrize("cfg", CFGS, ids=IDS)
def test_three_task_model_trains_a_step_with_the_trunk_swapped_in(cfg, three_task_cfg):
    import mtmnv3.models  # noqa: F401  (registers the model)

    model_cfg = copy.deepcopy(three_task_cfg)
    model_cfg.trunk = dict(cfg)
    model = MODELS.build(model_cfg).train()
    assert type(model.trunk).__name__ == cfg["type"]
    # the neck taps the trunk's stride-8/16/32 stages and reads their channels
    assert [model.trunk.feature_info[t]["stride"] for t in model.neck.taps] == [8, 16, 32]
    g = torch.Generator().manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in range(2)],
        data_samples=[_sample(3), _sample(5)],
    )
    before = {n: p.detach().clone() for n, p in model.trunk.named_parameters()}
    log_vars = model.train_step(data, OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01)))
    assert torch.isfinite(log_vars["loss"])
    assert {"loss_cls", "loss_det_heatmap", "loss_emb"} <= set(log_vars)
    changed = [n for n, p in model.trunk.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) > len(before) // 2  # the step reached the trunk
    model.eval()
    preds = model.predict(model.data_preprocessor(data, False)["inputs"])
    assert len(preds) == 2 and "pred_instances" in preds[0]
