"""The robustness study (``mtmnv3 robustness``) and robust training (RobustMultiTaskPerceptor)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _helpers import train_data_options
from mmengine.optim import OptimWrapper
from mmengine.structures import InstanceData

import mtmnv3.models  # noqa: F401  (registers RobustMultiTaskPerceptor in MODELS)
from mtmnv3.core.registry import MODELS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.data import PackMultiTaskInputs, SynthMultiTaskDataset
from mtmnv3.data.corrupt_transforms import CorruptFrames
from mtmnv3.data.corruptions import CORRUPTIONS
from mtmnv3.data.transforms import Letterbox
from mtmnv3.models.dro import AUGMIX_EXTRA_OPS
from mtmnv3.models.robust import (
    AUGMIX_HELD_OUT,
    AUGMIX_TRAIN_OPS,
    RobustMultiTaskPerceptor,
    bernoulli_js_consistency,
    clean_anchored_consistency,
)
from mtmnv3.studies.robustness import (
    corrupt_batch,
    mean_corruption_error,
    parse_corruptions,
    parse_eps,
    parse_severities,
    relative_corruption_error,
    summarise,
)

ROOT = Path(__file__).resolve().parents[2]
ROBUST_CONFIG = ROOT / "configs" / "mtmnv3_small_3task_robust_synth.py"
CORRUPTION_PAIR = ("contrast", "gaussian_noise")
SEVERITY_PAIR = (1, 3)
IMAGE_SIZE = 64


def tiny_options(data_root, max_iters=2):
    """Shrink the robust three-task config: tiny trunk, tiny data at 64 px, two iterations."""
    opts = [
        "model.trunk.width_mult=0.25",
        "model.neck.out_channels=16",
        "model.heads.cls.hidden_channels=32",
        "model.heads.det.feat_channels=16",
        "model.heads.emb.feat_channels=16",
        f"train_cfg.max_iters={max_iters}",
        f"train_cfg.val_interval={max_iters + 1}",
        "param_scheduler.0.end=1",
        "param_scheduler.1.begin=1",
        f"param_scheduler.1.end={max_iters}",
        f"default_hooks.checkpoint.interval={max_iters}",
        "default_hooks.logger.interval=1",
        "train_dataloader.batch_size=5",
        "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False",
        "val_dataloader.num_workers=0",
        "val_dataloader.persistent_workers=False",
        "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
        "test_dataloader.batch_size=4",
    ]
    for split in ("val", "test"):
        opts += [
            f"{split}_dataloader.dataset.data_root={data_root}",
            f"{split}_dataloader.dataset.num_sequences=2",
            f"{split}_dataloader.dataset.num_frames=5",
            f"{split}_dataloader.dataset.image_size={IMAGE_SIZE}",
            f"{split}_dataloader.dataset.pipeline.0.size={IMAGE_SIZE}",
        ]
    return opts + train_data_options(
        ROBUST_CONFIG, data_root, num_sequences=5, num_frames=2, image_size=IMAGE_SIZE
    )


def run_tool(tool, *args, timeout=400):
    """Run ``python -m mtmnv3 <tool without .py>`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "mtmnv3", tool.removesuffix(".py"), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


# ---- end to end: train the robust config, then the study CLI ------------------------------------------
@pytest.fixture(scope="module")
def robust_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("robust")
    data_root, work = tmp / "data", tmp / "work"
    r = run_tool("train.py", ROBUST_CONFIG, "--work-dir", work, "--cfg-options", *tiny_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return data_root, work / "iter_2.pth", r.stdout + r.stderr


def test_robust_config_trains_with_consistency_and_group_dro(robust_ckpt):
    _, ckpt, log = robust_ckpt
    assert ckpt.is_file()
    for key in (
        "loss_cls_js",
        "loss_det_js",
        "loss_cls",
        "loss_det_heatmap",
        "loss_emb",
        "dro_weight_smooth",
    ):
        assert key in log, key
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    weights = state["group_dro.weights"]
    assert weights.shape == (5,) and math.isclose(float(weights.sum()), 1.0, rel_tol=1e-5)
    assert not torch.allclose(weights, torch.full((5,), 0.2)), "group weights never moved"


@pytest.fixture(scope="module")
def study_run(robust_ckpt, tmp_path_factory):
    data_root, ckpt, _ = robust_ckpt
    out = tmp_path_factory.mktemp("study")
    r = run_tool(
        "robustness.py",
        ROBUST_CONFIG,
        ckpt,
        "--corruptions",
        ",".join(CORRUPTION_PAIR),
        "--severities",
        ",".join(map(str, SEVERITY_PAIR)),
        "--out-dir",
        out,
        "--no-fold-bn",  # test_clean_metrics_equal_the_test_tool compares to the last digit
        "--cfg-options",
        *tiny_options(data_root),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r


def test_study_writes_json_markdown_and_plot(study_run):
    out, r = study_run
    results = json.loads((out / "robustness.json").read_text())
    assert results["num_samples"] == 10
    assert results["metrics"] == ["cls/top1", "det/mAP", "det/mAP_50"]
    assert set(results["corruptions"]) == set(CORRUPTION_PAIR)
    for per_sev in results["corruptions"].values():
        assert set(per_sev) == {"1", "3"}
        for metrics in per_sev.values():
            assert all(0 <= metrics[m] <= 1 for m in results["metrics"])
    for metric in results["metrics"]:
        summary = results["summary"][metric]
        assert summary["normalised"] is False
        errors = [1 - results["corruptions"][c][s][metric] for c in CORRUPTION_PAIR for s in ("1", "3")]
        assert summary["mCE"] == pytest.approx(sum(errors) / len(errors))
        drop = results["relative_robustness"][metric]["contrast"]["3"]
        assert drop == pytest.approx(
            results["clean"][metric] - results["corruptions"]["contrast"]["3"][metric]
        )
    # the robust model's AugMix families split the suite into seen and held-out families
    assert results["augmix_ops"] == list(AUGMIX_TRAIN_OPS)
    assert "mCE_seen" in results["summary"]["cls/top1"] and "mCE_unseen" in results["summary"]["cls/top1"]
    md = (out / "robustness.md").read_text()
    assert "## Summary" in md and "## det/mAP per corruption and severity" in md and "| contrast |" in md
    assert (out / "severity_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".*.tmp"))
    assert "%|" in r.stderr  # the tqdm progress bar


def test_clean_metrics_equal_the_test_tool(robust_ckpt, study_run, tmp_path):
    data_root, ckpt, _ = robust_ckpt
    out, _ = study_run
    metrics_json = tmp_path / "metrics.json"
    r = run_tool(
        "test.py", ROBUST_CONFIG, ckpt, "--out-json", metrics_json, "--cfg-options", *tiny_options(data_root)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    expected = json.loads(metrics_json.read_text())
    clean = json.loads((out / "robustness.json").read_text())["clean"]
    assert set(expected) == set(clean)
    for key, value in expected.items():
        assert clean[key] == pytest.approx(value, abs=1e-12), key


def test_reference_normalises_ce_and_attacks_give_a_transfer_table(robust_ckpt, study_run, tmp_path):
    data_root, ckpt, _ = robust_ckpt
    out, _ = study_run
    r = run_tool(
        "robustness.py",
        ROBUST_CONFIG,
        ckpt,
        "--corruptions",
        ",".join(CORRUPTION_PAIR),
        "--severities",
        ",".join(map(str, SEVERITY_PAIR)),
        "--reference-json",
        out / "robustness.json",
        "--attacks",
        "--eps",
        "1/255",
        "--pgd-steps",
        "2",
        "--no-progress",
        "--out-dir",
        tmp_path,
        "--cfg-options",
        *tiny_options(data_root),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((tmp_path / "robustness.json").read_text())
    for metric, summary in results["summary"].items():
        assert summary["normalised"] is True
        # the model is its own reference: every defined CE is exactly 1
        defined = [v for v in summary["CE"].values() if v is not None]
        assert all(v == pytest.approx(1.0) for v in defined), (metric, summary["CE"])
    attacks = results["attacks"]
    assert set(attacks["targets"]) == {"cls", "det", "emb", "trunk"}
    for method in ("fgsm", "pgd"):
        for target in attacks["targets"]:
            assert set(attacks[method]["1/255"][target]) >= set(results["metrics"])
    md = (tmp_path / "robustness.md").read_text()
    assert "### PGD eps=1/255, 2 steps" in md and "| trunk |" in md
    assert "%|" not in r.stderr


def test_track_adds_mota_and_idf1_per_condition_on_whole_videos(robust_ckpt, tmp_path):
    data_root, ckpt, _ = robust_ckpt
    r = run_tool(
        "robustness.py",
        ROBUST_CONFIG,
        ckpt,
        "--corruptions",
        "contrast",
        "--severities",
        "1,5",
        "--track",
        "--max-samples",
        "6",
        "--workers",
        "2",
        "--no-progress",
        "--out-dir",
        tmp_path,
        "--cfg-options",
        *tiny_options(data_root),
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads((tmp_path / "robustness.json").read_text())
    assert results["num_samples"] == 5  # one whole 5-frame video fits in 6 samples; frames are not thinned
    assert results["metrics"] == ["cls/top1", "det/mAP", "det/mAP_50", "mot/MOTA", "mot/IDF1"]
    assert results["timing"]["workers"] == 2
    for metrics in [results["clean"], *results["corruptions"]["contrast"].values()]:
        assert {"mot/MOTA", "mot/IDF1", "mot/IDSW"} <= set(metrics)
        assert "mot/HOTA" not in metrics  # the suite leaves HOTA out unless the config asks for it
        assert metrics["mot/MOTA"] <= 1 and 0 <= metrics["mot/IDF1"] <= 1
    assert (
        "mot/IDF1" in results["summary"]
        and "## mot/IDF1 per corruption and severity" in (tmp_path / "robustness.md").read_text()
    )


def _tiny_study(data_root, ckpt, **kwargs):
    import argparse

    from mtmnv3.engine import DictAction, load_config
    from mtmnv3.studies.robustness import build_study

    parser = argparse.ArgumentParser()
    parser.add_argument("--o", nargs="+", action=DictAction)
    cfg = load_config(ROBUST_CONFIG, parser.parse_args(["--o", *tiny_options(data_root)]).o)
    return build_study(cfg, str(ckpt), progress=False, device="cpu", **kwargs)[0]


def test_workers_give_the_numbers_of_one_process(robust_ckpt):
    data_root, ckpt, _ = robust_ckpt
    study = _tiny_study(data_root, ckpt, track=True)
    one = study.run_corruptions(list(CORRUPTION_PAIR), list(SEVERITY_PAIR))
    study.workers = 3
    three = study.run_corruptions(list(CORRUPTION_PAIR), list(SEVERITY_PAIR))
    assert three["timing"]["workers"] == 3 and one["timing"]["workers"] == 1
    same = json.dumps([three["clean"], three["corruptions"]], sort_keys=True)  # NaN-safe equality
    assert same == json.dumps([one["clean"], one["corruptions"]], sort_keys=True)
    assert set(three["timing"]["per_condition_s"]) == set(one["timing"]["per_condition_s"])
    # a failure inside a worker reaches the caller, with the worker's message
    from mtmnv3.studies.robustness import WorkerError

    with pytest.raises(WorkerError, match="robustness worker failed: .*snow"):
        study.run_corruptions(["contrast", "snow"], [1])


def test_worker_count_is_checked():
    from mtmnv3.studies.robustness import check_workers

    assert check_workers(2, "cpu") == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="workers must be a positive int"):
            check_workers(bad, "cpu")
    with pytest.raises(ValueError, match="forked CPU processes"):
        check_workers(2, "cuda")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"config": "configs/nope.py"}, "config file not found"),
        ({"checkpoint": "missing.pth"}, "checkpoint not found"),
        ({"extra": ["--corruptions", "contrast,snow"]}, r"unknown corruption\(s\) \['snow'\]"),
        ({"extra": ["--severities", "0,2"]}, "severities must be integers in 1..5, got '0'"),
        ({"extra": ["--attacks", "--eps", "-1"]}, "eps must be numbers in"),
        ({"extra": ["--reference-json", "nope.json"]}, "reference JSON not found"),
        ({"extra": ["--iou-only"]}, "--iou-only needs --track"),
        ({"extra": ["--workers", "0"]}, "workers must be a positive int, got 0"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(robust_ckpt, change, match):
    import re

    data_root, ckpt, _ = robust_ckpt
    args = [change.get("config", ROBUST_CONFIG), change.get("checkpoint", ckpt), *change.get("extra", [])]
    r = run_tool("robustness.py", *args, "--cfg-options", *tiny_options(data_root), timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert re.search(match, r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr


# ---- corrupting collated batches ------------------------------------------------------------------
def test_corrupt_batch_matches_the_pipeline_transform(tmp_path):
    kwargs = dict(data_root=str(tmp_path), split="test", num_sequences=2, num_frames=3, image_size=48)
    clean = SynthMultiTaskDataset(**kwargs, pipeline=[Letterbox(size=IMAGE_SIZE), PackMultiTaskInputs()])
    for name, severity in (("motion_blur", 4), ("gaussian_noise", 2)):
        shifted = SynthMultiTaskDataset(
            **kwargs,
            pipeline=[
                Letterbox(size=IMAGE_SIZE),
                CorruptFrames(name, severity, seed=3),
                PackMultiTaskInputs(),
            ],
        )
        items = [clean[i] for i in range(len(clean))]
        out = corrupt_batch(
            [it["inputs"] for it in items], [it["data_samples"] for it in items], name, severity, 3
        )
        for i, img in enumerate(out):
            assert torch.equal(img, shifted[i]["inputs"]), (name, i)


# ---- mCE arithmetic -----------------------------------------------------------------------------
ERRORS = {"a": {1: 0.2, 2: 0.4}, "b": {1: 0.5, 2: 0.7}}
REF_ERRORS = {"a": {1: 0.4, 2: 0.6}, "b": {1: 0.6, 2: 0.6}}


def test_mean_corruption_error_by_hand():
    ce, mce = mean_corruption_error(ERRORS, REF_ERRORS)
    # CE_a = (0.2 + 0.4) / (0.4 + 0.6) = 0.6; CE_b = (0.5 + 0.7) / (0.6 + 0.6) = 1.0
    assert ce == pytest.approx({"a": 0.6, "b": 1.0}) and mce == pytest.approx(0.8)
    ce, mce = mean_corruption_error(ERRORS)  # unnormalised: mean error per corruption
    assert ce == pytest.approx({"a": 0.3, "b": 0.6}) and mce == pytest.approx(0.45)
    # relative: (0.1 + 0.3) / (0.2 + 0.4) and (0.4 + 0.6) / (0.4 + 0.4)
    rce, rmce = relative_corruption_error(ERRORS, 0.1, REF_ERRORS, 0.2)
    assert rce == pytest.approx({"a": 2 / 3, "b": 1.25}) and rmce == pytest.approx((2 / 3 + 1.25) / 2)
    # a perfect reference leaves CE undefined rather than dividing by zero
    ce, mce = mean_corruption_error({"a": {1: 0.1}, "b": {1: 0.2}}, {"a": {1: 0.0}, "b": {1: 0.4}})
    assert ce == {"a": None, "b": pytest.approx(0.5)} and mce == pytest.approx(0.5)


def test_summarise_by_hand():
    def results(clean, errors):
        return {
            "metrics": ["cls/top1"],
            "clean": {"cls/top1": 1 - clean},
            "corruptions": {
                c: {str(s): {"cls/top1": 1 - e} for s, e in v.items()} for c, v in errors.items()
            },
        }

    model, ref = results(0.1, ERRORS), results(0.2, REF_ERRORS)
    s = summarise(model, ref, unseen=["b"])["cls/top1"]
    assert s["clean"] == pytest.approx(0.9)
    assert s["mean_corrupted"] == pytest.approx(1 - (0.2 + 0.4 + 0.5 + 0.7) / 4)
    assert s["relative_robustness"] == pytest.approx(0.9 - 0.55)
    assert s["mCE"] == pytest.approx(0.8) and s["relative_mCE"] == pytest.approx((2 / 3 + 1.25) / 2)
    assert s["mCE_unseen"] == pytest.approx(1.0) and s["mCE_seen"] == pytest.approx(0.6)


def test_argument_parsers():
    assert parse_corruptions("all") == list(CORRUPTIONS)
    assert parse_corruptions("jpeg_compression, contrast") == ["jpeg_compression", "contrast"]
    assert parse_severities("3,1") == [1, 3]
    assert parse_eps("2/255,0.01") == [("2/255", 2 / 255), ("0.01", 0.01)]
    with pytest.raises(ValueError, match=r"unknown corruption\(s\) \['fog'\]"):
        parse_corruptions("fog")
    with pytest.raises(ValueError, match="distinct"):
        parse_corruptions("contrast,contrast")
    for bad in ("6", "x", "1.5", ""):
        with pytest.raises(ValueError, match="severities"):
            parse_severities(bad)
    for bad in ("0", "2", "a/255"):
        with pytest.raises(ValueError, match="eps must be"):
            parse_eps(bad)
    assert set(AUGMIX_TRAIN_OPS).isdisjoint(AUGMIX_HELD_OUT)
    assert set(AUGMIX_TRAIN_OPS) | set(AUGMIX_HELD_OUT) == set(CORRUPTIONS)


# ---- robust training -------------------------------------------------------------------------------
GROUPS = ("smooth", "stripes", "checker")
SIZE = 64


def robust_model(**robust) -> RobustMultiTaskPerceptor:
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type="RobustMultiTaskPerceptor",
            trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.25),
            heads=dict(
                cls=dict(type="ClsHead", num_classes=11, hidden_channels=16),
                det=dict(type="CenterDetHead", num_classes=10, feat_channels=16),
                emb=dict(type="EmbeddingHead", num_ids=20, embed_dim=16, feat_channels=16),
            ),
            neck=dict(type="FPNLite", out_channels=16),
            robust=robust,
        )
    )


def train_batch(domains) -> dict:
    """uint8 images with labels; sample i belongs to group ``domains[i]``."""
    g = torch.Generator().manual_seed(1)
    inputs, samples = [], []
    for i, domain in enumerate(domains):
        inputs.append(torch.randint(0, 256, (3, SIZE, SIZE), generator=g, dtype=torch.uint8))
        s = MultiTaskDataSample(
            metainfo=dict(
                tasks=("cls", "det", "track"),
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                scale_factor=(1.0, 1.0),
                domain=domain,
            )
        )
        k = 1 + 2 * (domain == "stripes")  # the 'stripes' group carries more (hard) objects
        inst = InstanceData()
        inst.bboxes = torch.tensor([[4.0 + 8 * j, 6.0, 20.0 + 8 * j, 30.0] for j in range(k)])
        inst.labels = torch.arange(k) % 10
        inst.instance_ids = torch.arange(k) + 1 + 3 * i
        inst.ignore = torch.zeros(k, dtype=torch.bool)
        inst.visibility = torch.ones(k)
        s.gt_instances = inst
        s.gt_label = torch.tensor(i % 11)
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def test_bernoulli_js_by_hand():
    p = torch.tensor([0.2, 0.2, 0.8])
    logits = [torch.logit(v).view(1, 1, 1, 1) for v in p]
    # M = 0.4; KL(0.2||0.4) = 0.091517, KL(0.8||0.4) = 0.334796; JS = (2 * 0.091517 + 0.334796) / 3
    assert bernoulli_js_consistency(*logits).item() == pytest.approx(0.172610, abs=1e-5)
    x = torch.randn(2, 3, 4, 4)
    assert bernoulli_js_consistency(x, x, x).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same"):
        bernoulli_js_consistency(x, x, x[:1])


def test_clean_anchored_consistency_by_hand_and_its_gradient():
    # Bernoulli: KL(0.2 || 0.4) = 0.091517 and KL(0.2 || 0.8) = 0.831777, averaged over the two views
    p = torch.tensor([0.2, 0.4, 0.8])
    clean, aug1, aug2 = (torch.logit(v).view(1, 1, 1, 1) for v in p)
    kl = clean_anchored_consistency(clean, aug1, aug2, kind="bernoulli")
    assert kl.item() == pytest.approx((0.091517 + 0.831777) / 2, abs=1e-5)
    # softmax: KL(p_c || p_a) batch mean; 0 when the views agree with the clean one
    logits = torch.randn(4, 7)
    assert clean_anchored_consistency(logits, logits, logits, kind="softmax").abs() < 1e-6
    other = torch.randn(4, 7)
    expected = torch.nn.functional.kl_div(
        torch.log_softmax(other, 1), torch.softmax(logits, 1), reduction="batchmean"
    )
    got = clean_anchored_consistency(logits, other, logits, kind="softmax")
    assert got.item() == pytest.approx(expected.item() / 2, rel=1e-5)
    # only the augmented views receive a gradient; the clean prediction is the fixed target
    views = [torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(3)]
    clean_anchored_consistency(*views, kind="bernoulli").backward()
    assert views[0].grad is None and views[1].grad.abs().sum() > 0 and views[2].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same"):
        clean_anchored_consistency(logits, logits[:2], logits, kind="softmax")
    with pytest.raises(ValueError, match="kind must be"):
        clean_anchored_consistency(logits, logits, logits, kind="gaussian")


def test_anchored_consistency_and_extra_ops_train():
    model = robust_model(
        consistency=dict(
            heads=("cls", "det"), anchor="clean", severity=5, ops=("contrast",) + AUGMIX_EXTRA_OPS
        )
    )
    assert model.consistency_anchor == "clean" and model.augmix_ops[-1] == "sharpness"
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log_vars = model.train_step(train_batch(["smooth", "stripes"]), optim)
    assert torch.isfinite(log_vars["loss"])
    assert log_vars["loss_cls_js"] > 0 and log_vars["loss_det_js"] > 0


def test_train_step_with_consistency_and_group_dro_moves_weight_to_the_worse_group():
    eta = 0.5
    model = robust_model(
        consistency=dict(weight=12.0, severity=3, heads=("cls", "det")),
        group_dro=dict(eta=eta, groups=GROUPS),
    )
    model.train()
    for m in model.modules():  # frozen batch-norm statistics: a sample's outputs do not depend on its batch
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    data = train_batch(["smooth", "stripes", "smooth", "stripes"])
    # the per-group losses the update must see, computed independently from each group's own forward
    pre = model.data_preprocessor(data, True)
    expected = torch.zeros(len(GROUPS))
    with torch.no_grad():
        for gi, group in enumerate(GROUPS):
            idx = [i for i, s in enumerate(pre["data_samples"]) if s.metainfo["domain"] == group]
            if not idx:
                continue
            outputs = model.head_outputs(pre["inputs"][idx], list(model.heads))
            samples = [pre["data_samples"][i] for i in idx]
            expected[gi] = sum(sum(model.heads[n].loss(outputs[n], samples).values()) for n in model.heads)
    assert expected[1] > expected[0], "the test's 'stripes' group should be the worse one"

    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    log_vars = model.train_step(data, optim)
    assert torch.isfinite(log_vars["loss"]) and log_vars["loss"] > 0
    assert log_vars["loss_cls_js"] > 0 and log_vars["loss_det_js"] >= 0
    # Sagawa et al.'s step: q_g ∝ q_g exp(eta L_g) for the groups present; 'checker' is absent
    logq = torch.log(torch.full((3,), 1 / 3)) + eta * expected * torch.tensor([1.0, 1.0, 0.0])
    q = model.group_dro.weights
    assert torch.allclose(q, torch.softmax(logq, 0), atol=1e-4), (q, torch.softmax(logq, 0))
    assert q[1] > 1 / 3 > q[0]


def test_robust_losses_are_the_parent_losses_in_eval_and_without_options():
    data = train_batch(["smooth", "stripes"])
    plain = robust_model()
    pre = plain.data_preprocessor(data, True)
    plain.eval()
    assert set(plain.loss(pre["inputs"], pre["data_samples"])) == {
        "loss_cls",
        "loss_det_heatmap",
        "loss_det_wh",
        "loss_det_offset",
        "loss_emb",
    }
    model = robust_model(consistency=dict(heads=("cls",)), group_dro=dict())
    model.eval()
    assert "loss_cls_js" not in model.loss(pre["inputs"], pre["data_samples"])
    model.train()
    losses = model.loss(pre["inputs"], pre["data_samples"])
    assert "loss_det_js" not in losses
    assert torch.isfinite(losses["loss_cls_js"]) and losses["loss_cls_js"] > 0
    assert model.augmix_ops == AUGMIX_TRAIN_OPS


@pytest.mark.parametrize("views", ["clean", "all"])
def test_task_losses_read_the_clean_view_or_all_three(views):
    model = robust_model(consistency=dict(heads=("cls", "det"), task_loss_views=views))
    model.train()
    for m in model.modules():  # frozen batch-norm statistics: outputs do not depend on the batch
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    pre = model.data_preprocessor(train_batch(["smooth", "stripes", "checker"]), True)
    inputs, samples = pre["inputs"], pre["data_samples"]
    torch.manual_seed(5)
    losses = model.task_losses(inputs, samples)
    torch.manual_seed(5)
    aug1, aug2 = model.augmix_views(inputs)
    assert not torch.equal(aug1, inputs) and not torch.equal(aug1, aug2)
    with torch.no_grad():
        if views == "all":
            outputs, expected_samples = (
                model.head_outputs(torch.cat([inputs, aug1, aug2]), ["det"]),
                samples * 3,
            )
        else:
            outputs, expected_samples = model.head_outputs(inputs, ["det"]), samples
        expected = model.heads["det"].loss(outputs["det"], expected_samples)
    for key, value in expected.items():
        assert losses["det"][key].item() == pytest.approx(value.item(), rel=1e-5), key
    assert "loss_det_js" in losses["det"] and "loss_cls_js" in losses["cls"]


@pytest.mark.parametrize(
    "robust, err, match",
    [
        (dict(mixup=dict()), ValueError, r"unknown robust option\(s\) \['mixup'\]"),
        (dict(consistency=dict(heads=("emb",))), ValueError, "must name heads of tasks"),
        (dict(consistency=dict(severity=7)), ValueError, "severity must be an int in 1..5, got 7"),
        (dict(consistency=dict(ops=("snow",))), ValueError, "ops must be corruption families"),
        (dict(consistency=dict(weight=-1.0)), ValueError, "weight must be >= 0"),
        (dict(consistency=dict(task_loss_views="aug")), ValueError, "task_loss_views must be one of"),
        (dict(consistency=dict(anchor="aug")), ValueError, r"anchor must be one of \('mixture', 'clean'\)"),
        (dict(group_dro=dict(eta=0)), ValueError, "eta must be positive"),
        (dict(group_dro=dict(temperature=1)), ValueError, r"unknown robust.group_dro option\(s\)"),
    ],
)
def test_robust_options_are_validated(robust, err, match):
    with pytest.raises(err, match=match):
        robust_model(**robust)


def test_group_dro_needs_the_group_key():
    model = robust_model(group_dro=dict(groups=GROUPS))
    model.train()
    data = train_batch(["smooth", "blobs"])
    pre = model.data_preprocessor(data, True)
    with pytest.raises(ValueError, match=r"domain='blobs' is not one of the groups"):
        model.loss(pre["inputs"], pre["data_samples"])
    for s in pre["data_samples"]:
        s.set_metainfo(dict(domain="smooth"))
    del pre["data_samples"][0].domain
    with pytest.raises(ValueError, match="group DRO needs metainfo 'domain'"):
        model.loss(pre["inputs"], pre["data_samples"])


# ---- tracking under the shift suite ----------------------------------------------------------------
def _tracked_sample(video: int, frame: int, boxes: torch.Tensor, ids: torch.Tensor) -> MultiTaskDataSample:
    s = MultiTaskDataSample(
        metainfo=dict(
            img_id=100 * video + frame,
            video_id=video,
            frame_id=frame,
            tasks=("det", "track"),
            scale_factor=(1.0, 1.0),
            ori_shape=(SIZE, SIZE),
            img_shape=(SIZE, SIZE),
        )
    )
    gt = InstanceData()
    gt.bboxes, gt.labels, gt.instance_ids = boxes, torch.zeros(len(boxes), dtype=torch.long), ids
    gt.ignore = torch.zeros(len(boxes), dtype=torch.bool)
    s.gt_instances = gt
    pred = InstanceData()
    pred.bboxes, pred.scores = boxes.clone(), torch.full((len(boxes),), 0.9)
    pred.labels = torch.zeros(len(boxes), dtype=torch.long)
    pred.embeddings = torch.nn.functional.normalize(torch.eye(len(boxes), 8) + 0.1, dim=1)
    s.pred_instances = pred
    return s


def test_tracking_hook_keeps_a_tracker_per_video_and_scores_perfect_detections_as_perfect():
    from mtmnv3.evaluation import MOTMetric
    from mtmnv3.studies.robustness.tracking import TrackingHook

    hook = TrackingHook(dict(high_thr=0.4, new_track_thr=0.5))
    metric = MOTMetric()
    for frame in range(1, 7):  # two videos interleaved in one batch, two objects moving right
        batch = []
        for video in (0, 1):
            x = 2.0 * frame + 10 * video
            boxes = torch.tensor([[x, 4.0, x + 12, 20.0], [x + 30, 30.0, x + 44, 50.0]])
            batch.append(_tracked_sample(video, frame, boxes, torch.tensor([1, 2])))
        hook(batch)
        for s in batch:
            assert len(s.pred_track_instances.instance_ids) == 2
        metric.process(None, batch)
    assert set(hook.trackers) == {0, 1}
    result = metric.evaluate(12)
    assert result["mot/MOTA"] == pytest.approx(1.0) and result["mot/IDF1"] == pytest.approx(1.0)
    assert result["mot/IDSW"] == 0
    # frames must arrive in order within a video; samples need their video
    with pytest.raises(ValueError, match="frame"):
        hook([_tracked_sample(0, 3, torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([1]))])
    bad = _tracked_sample(0, 9, torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([1]))
    bad.set_metainfo(dict(video_id=-1))
    with pytest.raises(ValueError, match="video_id >= 0"):
        hook([bad])
    with pytest.raises(ValueError, match="unknown tracker type"):
        TrackingHook(dict(type="SORT"))
