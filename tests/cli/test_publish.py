"""mtmnv3 publish (weights-only release + model card) and the demo job on released weights, on tiny settings."""

import json

import pytest
import torch
from _helpers import CONFIG, run_tool, tiny_options
from mmengine.config import Config, DictAction

pytestmark = pytest.mark.slow


def _tiny_config(path, data_root):
    """The default config with the tiny options baked in (a released config takes no --cfg-options)."""
    import argparse

    ns = argparse.Namespace()
    DictAction(option_strings=["--cfg-options"], dest="opts")(None, ns, tiny_options(data_root))
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(ns.opts)
    path.parent.mkdir(parents=True)
    cfg.dump(path)
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A repository layout: configs/tiny.py, weights/tiny.pth + its card, from a real tiny training run."""
    tmp = tmp_path_factory.mktemp("publish")
    repo, data_root, work = tmp / "repo", tmp / "data", tmp / "work"
    config = _tiny_config(repo / "configs" / "tiny.py", data_root)
    r = run_tool("train", config, "--work-dir", work)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = tmp / "heldout.json"
    r = run_tool("test", config, work / "iter_6.pth", "--track", "--splits", "0", "1", "--out-json", metrics)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    weights = repo / "weights" / "tiny.pth"
    r = run_tool(
        "publish", config, work / "iter_6.pth", "--out", weights, "--metrics-json", metrics,
        "--command", "mtmnv3 train configs/tiny.py",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, config, weights, work


def test_release_is_weights_only_with_its_card(released):
    _, config, weights, work = released
    full = torch.load(work / "iter_6.pth", map_location="cpu", weights_only=False)
    ckpt = torch.load(weights, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}  # no optimizer, scheduler or message hub
    assert weights.stat().st_size < (work / "iter_6.pth").stat().st_size
    for key, value in full["state_dict"].items():
        assert torch.equal(ckpt["state_dict"][key], value), key
    meta = ckpt["meta"]
    assert meta["config"] == "tiny.py" and meta["iter"] == 6
    assert all(p["synthetic"] for p in meta["train_data"]) and "videos" not in meta["dataset_meta"]
    card = json.loads(weights.with_suffix(".json").read_text())
    import hashlib

    assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert list(card["metrics"]["splits"]) == ["0", "1"] and card["train_seconds"] > 0
    page = weights.with_suffix(".md").read_text()
    assert "| top-1 |" in page and "seed 1" in page and "mtmnv3 train configs/tiny.py" in page
    assert "these weights are iteration 6 (the end of the schedule)" in page
    assert weights.with_name("tiny_curve.png").stat().st_size > 1000


def test_demo_job_uses_the_released_weights_and_retrains_against_the_card(released):
    tmp, config, weights, _ = released
    job = ["--config", config, "--budget-ms", "500", "--frames", "12", "--video-size", "96"]
    r = run_tool("demo", *job, "--work-dir", tmp / "job", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "the released model" in r.stdout and "== training" not in r.stdout
    assert (tmp / "job" / "model.pth").read_bytes() == weights.read_bytes()
    assert (tmp / "job" / "report.md").is_file() and (tmp / "job" / "demo.mp4").is_file()
    # the job's own video is a synthetic scene: no real-footage notice
    assert "trained only on synthetic scenes" not in r.stderr

    r = run_tool("demo", *job, "--work-dir", tmp / "retrain", "--retrain", timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    compare = (tmp / "retrain" / "compare.md").read_text()
    assert "| top-1 |" in compare and "model card" in compare
    assert (tmp / "retrain" / "train" / "iter_6.pth").is_file()


def test_live_demo_says_once_that_a_synthetic_model_meets_real_footage(released):
    tmp, config, weights, _ = released
    video = tmp / "job" / "heldout.mp4"
    if not video.is_file():
        pytest.skip("needs the job's video (test order)")
    args = [config, weights, "--source", video, "--backend", "torch", "--max-frames", "3", "--size", "96"]
    r = run_tool("demo", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("trained only on synthetic scenes") == 1 and "own-data" in r.stderr
    r = run_tool("demo", *args, "--synthetic-source")
    assert r.returncode == 0 and "trained only on synthetic scenes" not in r.stderr


def test_publish_bad_input_leaves_no_file(released, tmp_path):
    tmp, config, weights, work = released
    out = tmp_path / "w.pth"
    r = run_tool(
        "publish", CONFIG, work / "iter_6.pth", "--out", out
    )  # the full-size model: another architecture
    assert r.returncode == 2 and "does not match the model" in r.stderr and not out.exists()
    assert not list(tmp_path.iterdir())
    bad = tmp_path / "m.json"
    bad.write_text('{"cls/top1": 0.5}')
    r = run_tool("publish", config, work / "iter_6.pth", "--out", out, "--metrics-json", bad)
    assert r.returncode == 2 and "--splits" in r.stderr and not out.exists()
    r = run_tool("publish", config, work / "iter_6.pth", "--out", tmp_path / "w.bin")
    assert r.returncode == 2 and ".pth" in r.stderr


def test_card_only_reevaluation_keeps_the_file_and_the_old_metrics(released, tmp_path):
    tmp, config, weights, _ = released
    before = json.loads(weights.with_suffix(".json").read_text())
    data = weights.read_bytes()
    new = json.loads(json.dumps(before["metrics"]))
    new["summary"]["mot/IDF1"]["mean"] = 0.999  # stands for a re-run under another tracker
    metrics = tmp_path / "new.json"
    metrics.write_text(json.dumps(new))
    r = run_tool(
        "publish", config, weights, "--out", weights, "--card-only", "--metrics-json", metrics,
        "--note", "tracker changed",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert weights.read_bytes() == data  # the released file itself is untouched
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["metrics"]["summary"]["mot/IDF1"]["mean"] == 0.999
    assert (
        card["history"][0]["metrics"] == before["metrics"] and card["history"][0]["note"] == "tracker changed"
    )
    assert card["tracker"]["type"] == "EmbeddingTracker" and card["train_seconds"] == before["train_seconds"]
    page = weights.with_suffix(".md").read_text()
    assert (
        "Before re-evaluation (tracker changed)" in page
        and "Tracking metrics with the config's tracker" in page
    )
    # another file than the card's, or no metrics: refused, nothing changed
    other = tmp_path / "other.pth"
    other.write_bytes(data + b"x")
    r = run_tool("publish", config, other, "--out", other, "--card-only", "--metrics-json", metrics)
    assert r.returncode == 2 and "no model card" in r.stderr
    r = run_tool("publish", config, weights, "--out", weights, "--card-only")
    assert r.returncode == 2 and "--card-only needs --metrics-json" in r.stderr
