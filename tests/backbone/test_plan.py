"""Stage plans: JSON round trip, validation, and custom plans rebuilding the trunk."""

import json

import pytest
import torch

from mtmnv3.backbone.plan import PLAN_VERSION, StagePlan
from mtmnv3.backbone.trunk import MobileNetV3Trunk


def test_default_plan_cuts_where_the_stride_changes():
    trunk = MobileNetV3Trunk(arch="large")
    assert trunk.stage_plan.stages == ((0, 2), (2, 4), (4, 7), (7, 13), (13, 17))
    assert [f["stride"] for f in trunk.feature_info] == [2, 4, 8, 16, 32]
    small = MobileNetV3Trunk(arch="small")
    assert small.stage_plan.stages == ((0, 1), (1, 2), (2, 4), (4, 9), (9, 13))
    assert [f["channels"] for f in small.feature_info] == [16, 16, 24, 48, 576]


def test_json_round_trip(tmp_path):
    plan = StagePlan.from_cuts(
        17,
        [4, 9],
        name="balanced-3",
        arch="large",
        device_profile={"backend": "onnxruntime", "threads": 2, "resolution": 224, "dtype": "fp32"},
        predicted_ms=[1.0, 1.1, 0.9],
        measured_ms=[1.05, 1.0, 0.95],
        placement=["device", "device", "server"],
        meta={"note": "x"},
    )
    again = StagePlan.from_json(plan.to_json())
    assert again == plan
    path = tmp_path / "plan.json"
    plan.save(path)
    assert StagePlan.load(path) == plan
    d = json.loads(path.read_text())
    assert d["format"] == "mtmnv3.StagePlan" and d["version"] == PLAN_VERSION
    assert not list(tmp_path.glob(".*.tmp"))


def test_custom_plan_rebuilds_stages_and_feature_info(tmp_path):
    plan = StagePlan.from_cuts(13, [3, 8])
    trunk = MobileNetV3Trunk(arch="small", stage_plan=plan).eval()
    ref = MobileNetV3Trunk(arch="small").eval()
    ref.load_state_dict(trunk.state_dict())  # same parameter names whatever the plan
    assert trunk.num_stages == 3
    assert [f["channels"] for f in trunk.feature_info] == [24, 48, 576]
    assert [f["stride"] for f in trunk.feature_info] == [8, 16, 32]
    assert sum(f["macs"] for f in trunk.feature_info) == sum(f["macs"] for f in ref.feature_info)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outs = trunk(x)
        torch.testing.assert_close(outs[-1], ref(x)[-1])
        y = x
        for block in ref.blocks[:3]:
            y = block(y)
        torch.testing.assert_close(outs[0], y)
    # from a JSON file and from a dict
    plan.save(tmp_path / "p.json")
    assert MobileNetV3Trunk(arch="small", stage_plan=tmp_path / "p.json").stage_plan == plan
    assert MobileNetV3Trunk(arch="small", stage_plan=plan.to_dict()).stage_plan == plan


@pytest.mark.parametrize(
    "stages, n, match",
    [
        ([], 3, "at least one stage"),
        ([(0, 2), (3, 4)], 4, "contiguous"),
        ([(0, 2), (2, 2), (2, 4)], 4, "non-empty"),
        ([(0, 2)], 4, "cover 2 blocks but the trunk has 4"),
    ],
)
def test_invalid_plans(stages, n, match):
    with pytest.raises(ValueError, match=match):
        StagePlan(stages, n)


def test_invalid_plan_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"cut points must lie in 1\.\.12, got \[13\]"):
        StagePlan.from_cuts(13, [13])
    with pytest.raises(ValueError, match="predicted_ms has 1 entries for 2 stages"):
        StagePlan.from_cuts(13, [5], predicted_ms=[1.0])
    with pytest.raises(ValueError, match="covers 17 blocks but this small trunk has 13"):
        MobileNetV3Trunk(arch="small", stage_plan=StagePlan.from_cuts(17, [5]))
    d = StagePlan.from_cuts(13, [5]).to_dict()
    with pytest.raises(ValueError, match="unsupported stage plan version 99"):
        StagePlan.from_dict({**d, "version": 99})
    with pytest.raises(ValueError, match=r"unknown stage plan fields \['colour'\]"):
        StagePlan.from_dict({**d, "colour": "red"})
    with pytest.raises(FileNotFoundError, match="stage plan file not found"):
        StagePlan.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        StagePlan.load(tmp_path / "bad.json")
    with pytest.raises(TypeError, match="stage_plan must be a StagePlan"):
        MobileNetV3Trunk(arch="small", stage_plan=42)


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os
    import stat

    StagePlan.from_cuts(13, [5]).save(tmp_path / "p.json")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o666 & ~umask
