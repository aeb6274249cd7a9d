"""A model whose heads are named ``a``, ``b``, ``c`` (embedding, detection, classification) goes through
every entry point: train, test (with tracking), the live demo and export."""

from __future__ import annotations

import json

import pytest
from _helpers import CONFIG, run_tool, tiny_options

from mtmnv3.runtime.video import write_sequence_video

#: The default config's options with the head names ``cls``/``det``/``emb`` renamed to ``c``/``b``/``a``.
RENAMED = {
    "model.heads.cls.": "model.heads.c.",
    "model.heads.det.": "model.heads.b.",
    "model.heads.emb.": "model.heads.a.",
}


def abc_options(data_root):
    opts = []
    for opt in tiny_options(data_root):
        for old, new in RENAMED.items():
            opt = opt.replace(old, new)
        opts.append(opt)
    return opts


@pytest.fixture(scope="module")
def abc(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("abc")
    config = tmp / "abc_config.py"
    config.write_text(
        f"_base_ = [{str(CONFIG)!r}]\n"
        "model = dict(\n"
        "    task_weights=dict(_delete_=True, a=0.5),\n"
        "    heads=dict(_delete_=True, a={{_base_.model.heads.emb}}, b={{_base_.model.heads.det}}, "
        "c={{_base_.model.heads.cls}}),\n"
        ")\n"
    )
    data_root, work = tmp / "data", tmp / "work"
    r = run_tool("train", config, "--work-dir", work, "--cfg-options", *abc_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, config, data_root, work / "iter_6.pth"


def test_trained_checkpoint_holds_the_renamed_heads(abc):
    import torch

    _, _, _, ckpt = abc
    keys = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert {k.split(".")[1] for k in keys if k.startswith("heads.")} == {"a", "b", "c"}


def test_test_with_tracking(abc):
    tmp, config, data_root, ckpt = abc
    out = tmp / "metrics.json"
    r = run_tool("test", config, ckpt, "--track", "--out-json", out, "--cfg-options", *abc_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert {"cls/top1", "det/mAP_50", "mot/IDF1", "mot/HOTA"} <= set(metrics)


def test_live_demo_under_a_budget(abc):
    tmp, config, data_root, ckpt = abc
    val = next(p for p in data_root.iterdir() if p.name.startswith("val-"))
    video = tmp / "heldout.avi"
    n = write_sequence_video(sorted((val / "mot").iterdir())[0], video)
    summary = tmp / "summary.json"
    model_opts = [o for o in abc_options(data_root) if o.startswith("model.")]
    r = run_tool(
        "demo", config, ckpt, "--source", video, "--size", "96", "--resolutions", "96,64", "--budget-ms", "50",
        "--summary-json", summary, "--cfg-options", *model_opts,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert json.loads(summary.read_text())["frames"] == n


def test_export_with_parity(abc, tmp_path):
    _, config, data_root, ckpt = abc
    out = tmp_path / "abc.onnx"
    r = run_tool(
        "export", config, ckpt, "--out", out, "--parity-frames", "2", "--cfg-options", *abc_options(data_root)
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    meta = json.loads((tmp_path / "abc.onnx.json").read_text())
    assert {h: m["task"] for h, m in meta["heads"].items()} == {
        "a": "embedding",
        "b": "detection",
        "c": "classification",
    }
    assert meta["parity"]["passed"]
