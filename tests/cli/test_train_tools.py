"""mtmnv3 train and mtmnv3 test through mmengine's real Runner, on tiny settings."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from _helpers import CONFIG, ROOT, run_tool, tiny_options, train_data_options


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data_root, work = tmp / "data", tmp / "work"
    r = run_tool("train.py", CONFIG, "--work-dir", work, "--cfg-options", *tiny_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return tmp, data_root, work, r


def test_train_writes_checkpoints_logs_eta_and_metrics(trained):
    tmp, data_root, work, r = trained
    log = r.stdout + r.stderr
    assert (work / "iter_6.pth").is_file() and (work / "last_checkpoint").is_file()
    assert "eta:" in log
    for key in ("loss_cls", "loss_det_heatmap", "loss_emb"):
        assert key in log
    assert "cls/top1" in log and "det/mAP" in log
    assert not list(work.glob(".*.tmp"))
    # the per-task weights and losses plotted when training ended
    assert (work / "loss_weights.png").stat().st_size > 1000 and "loss_weights.png" in log


def test_train_console_is_quiet_and_the_log_file_keeps_the_setup(trained):
    """No registry-scope fallback warning, no environment/config/hook dumps on the console; the log file has them."""
    _, _, work, r = trained
    console = r.stdout + r.stderr
    assert "Failed to search registry" not in console and "Failed to import" not in console
    assert "Hooks will be executed" not in console and "System environment" not in console
    assert "HardDiskBackend" not in console
    (log_file,) = work.glob("*/*.log")
    text = log_file.read_text()
    assert "Hooks will be executed" in text and "System environment" in text and "Config:" in text
    ckpt = torch.load(work / "iter_6.pth", map_location="cpu", weights_only=False)
    assert any(k.startswith("trunk.blocks.") for k in ckpt["state_dict"])
    # what it was trained on: both parts of the synthetic training mix
    parts = ckpt["meta"]["train_data"]
    assert [p["type"] for p in parts] == ["SynthMultiTaskDataset"] * 2 and all(p["synthetic"] for p in parts)
    assert parts[1]["tasks"] == ["cls", "det"] and all(p["size"] > 0 for p in parts)


def test_test_tool_reports_metrics(trained, tmp_path):
    tmp, data_root, work, _ = trained
    out = tmp_path / "metrics.json"
    r = run_tool(
        "test.py", CONFIG, work / "iter_6.pth", "--out-json", out, "--cfg-options", *tiny_options(data_root)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads(out.read_text())
    assert 0 <= metrics["cls/top1"] <= 1 and 0 <= metrics["det/mAP_50"] <= 1


def test_test_tool_splits_report_each_seed_and_their_spread(trained, tmp_path):
    tmp, data_root, work, _ = trained
    out = tmp_path / "splits.json"
    opts = tiny_options(data_root)
    r = run_tool(
        "test.py", CONFIG, work / "iter_6.pth", "--splits", 0, 1, "--out-json", out, "--cfg-options", *opts
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["splits"]) == {"0", "1"}
    top1 = [result["splits"][k]["cls/top1"] for k in ("0", "1")]
    summary = result["summary"]["cls/top1"]
    assert summary["n"] == 2 and summary["mean"] == pytest.approx(sum(top1) / 2)
    assert "mean +- std" in r.stdout
    # Each seed is its own generated split: the second one's frames differ from the first's.
    dirs = sorted(p.name for p in data_root.iterdir() if p.name.startswith("val-"))
    assert len(dirs) >= 2, dirs
    # The seed-0 split is the one a plain test run evaluates.
    plain = tmp_path / "plain.json"
    r = run_tool("test.py", CONFIG, work / "iter_6.pth", "--out-json", plain, "--cfg-options", *opts)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(plain.read_text())["cls/top1"] == pytest.approx(result["splits"]["0"]["cls/top1"])


def test_test_tool_splits_need_a_seeded_test_split(trained, tmp_path):
    tmp, data_root, work, _ = trained
    opts = tiny_options(data_root)
    r = run_tool("test.py", CONFIG, work / "iter_6.pth", "--splits", 0, 0, "--cfg-options", *opts)
    assert r.returncode == 2 and "distinct" in r.stderr and "Traceback" not in r.stderr
    mot = tmp_path / "mot"
    mot.mkdir()
    r = run_tool(
        "test.py",
        CONFIG,
        work / "iter_6.pth",
        "--splits",
        0,
        1,
        "--cfg-options",
        *opts,
        "test_dataloader.dataset.type=MOTChallengeDataset",
        f"test_dataloader.dataset.data_root={mot}",
    )
    assert r.returncode == 2 and "--splits needs a test split generated from a seed" in r.stderr


def test_summarize_splits_mean_and_sample_std():
    from mtmnv3.evaluation import summarize_splits

    s = summarize_splits({0: {"cls/top1": 0.7, "det/mAP": 0.5}, 1: {"cls/top1": 0.8}, 2: {"cls/top1": 0.9}})
    assert s["cls/top1"]["mean"] == pytest.approx(0.8) and s["cls/top1"]["std"] == pytest.approx(0.1)
    assert s["det/mAP"] == {"mean": 0.5, "std": 0.0, "n": 1}
    with pytest.raises(ValueError, match="empty"):
        summarize_splits({})
    with pytest.raises(ValueError, match="not a number"):
        summarize_splits({0: {"cls/top1": "high"}})


def test_split_means_reads_both_out_json_shapes():
    from mtmnv3.evaluation import split_means, summarize_splits

    per_split = {"0": {"cls/top1": 0.7}, "1": {"cls/top1": 0.9}}
    means, stds = split_means({"splits": per_split, "summary": summarize_splits(per_split)})
    assert means == {"cls/top1": pytest.approx(0.8)} and stds["cls/top1"] == pytest.approx(0.1414, abs=1e-4)
    assert split_means({"cls/top1": 0.7}) == ({"cls/top1": 0.7}, {})


def test_test_tool_rejects_checkpoint_of_another_architecture(trained, tmp_path):
    tmp, data_root, work, _ = trained
    opts = [o for o in tiny_options(data_root) if not o.startswith("model.trunk.width_mult")]
    r = run_tool("test.py", CONFIG, work / "iter_6.pth", "--cfg-options", *opts, "model.trunk.width_mult=0.5")
    assert r.returncode == 2
    assert "does not match the model" in r.stderr and "shape mismatches" in r.stderr
    assert "Traceback" not in r.stderr


def test_killed_run_resumes_from_last_checkpoint(tmp_path):
    data_root, work = tmp_path / "data", tmp_path / "work"
    # Generate the data first so the timed part is training only.
    opts = tiny_options(data_root, max_iters=12, ckpt_interval=2, batch=2)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtmnv3",
            "train",
            str(CONFIG),
            "--work-dir",
            str(work),
            "--cfg-options",
            *opts,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not (work / "iter_4.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (work / "iter_4.pth").exists(), "training never reached its first checkpoints"
    assert not (work / "iter_12.pth").exists()
    # every checkpoint on disk is complete (atomic writes)
    for ckpt in work.glob("iter_*.pth"):
        torch.load(ckpt, map_location="cpu", weights_only=False)
    r = run_tool("train.py", CONFIG, "--work-dir", work, "--resume", "--cfg-options", *opts)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed" in (r.stdout + r.stderr).lower()
    assert (work / "iter_12.pth").is_file()


def test_resume_with_explicit_missing_path(tmp_path):
    r = run_tool("train.py", CONFIG, "--work-dir", tmp_path, "--resume", tmp_path / "nope.pth")
    assert r.returncode == 2 and "--resume checkpoint not found" in r.stderr


@pytest.mark.parametrize(
    "option, message",
    [
        ("model.heads.cls.type=SegHead", "SegHead"),
        ("train_dataloader.dataset.type=NoSuchDataset", "NoSuchDataset"),
    ],
)
def test_unknown_head_or_dataset_is_a_clear_error(tmp_path, option, message):
    r = run_tool(
        "train.py",
        CONFIG,
        "--work-dir",
        tmp_path / "w",
        "--cfg-options",
        *tiny_options(tmp_path / "data"),
        option,
    )
    assert r.returncode != 0
    assert message in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
@pytest.mark.parametrize("method", ["GradNorm", "PCGrad"])
def test_gradient_weighting_under_a_launcher_is_refused_before_anything_runs(tmp_path, method):
    """Checked in the config, before the process group or the model exist."""
    r = run_tool(
        "train.py", CONFIG, "--work-dir", tmp_path / "w", "--launcher", "pytorch",
        "--cfg-options", *tiny_options(tmp_path / "data"), f"model.loss_weighting.type={method}",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"{method!r} manipulates per-task gradients" in r.stderr and "--launcher pytorch" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "w").exists()


def test_amp_without_gpu_is_a_clear_error(tmp_path):
    r = run_tool("train.py", CONFIG, "--work-dir", tmp_path / "w", "--amp")
    assert r.returncode == 2 and "--amp needs a CUDA GPU" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config(tmp_path):
    r = run_tool("train.py", tmp_path / "nope.py")
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_concat_dataset_parts_are_checked_and_addressable():
    from mtmnv3.engine import dataset_keys, load_config, validate_config

    cfg = load_config(CONFIG)
    keys = dataset_keys(cfg, "train")
    assert keys == ["train_dataloader.dataset.datasets.0", "train_dataloader.dataset.datasets.1"]
    assert dataset_keys(cfg, "val") == ["val_dataloader.dataset"]
    # The single-frame part trains classification and detection only.
    assert cfg.train_dataloader.dataset.datasets[1].tasks == ("cls", "det")
    cfg.merge_from_dict({f"{keys[1]}.type": "NoSuchDataset"})
    with pytest.raises(KeyError, match=r"NoSuchDataset.*train_dataloader\.dataset\.datasets\.1"):
        validate_config(cfg)
    cfg.test_dataloader = None
    with pytest.raises(KeyError, match="no test_dataloader.dataset"):
        dataset_keys(cfg, "test")


def test_input_size_is_the_test_pipelines_letterbox():
    """Tools that feed frames themselves (tracking, the demo) run the network at
    the size the config evaluates at: the Letterbox size, not the frame size."""
    from mtmnv3.engine import input_size, load_config

    cfg = load_config(CONFIG)
    data = cfg.test_dataloader.dataset
    assert input_size(data) == 160 and data.image_size == 128
    assert input_size(dict(image_size=96, pipeline=[dict(type="PackMultiTaskInputs")])) == 96
    assert input_size(dict(pipeline=[dict(type="Letterbox", size=(96, 128))])) == 128
    assert input_size({}) == 320


def test_quantization_calibration_reads_every_training_part(tmp_path):
    """Calibrating on the train split builds each ConcatDataset part with the
    deterministic test pipeline (no flip, no colour jitter)."""
    from mmengine.config import DictAction

    from mtmnv3.engine import dataset_keys, dataset_parts, load_config
    from mtmnv3.studies.quantization import build_loader

    opts = train_data_options(CONFIG, tmp_path / "data", num_sequences=1, num_frames=2, image_size=64)
    cfg = load_config(CONFIG, {k: DictAction._parse_iterable(v) for k, v in (o.split("=", 1) for o in opts)})
    parts = dataset_parts(cfg.train_dataloader.dataset)
    assert len(parts) == len(dataset_keys(cfg, "train")) == 2
    assert parts[1] is cfg.train_dataloader.dataset.datasets[1]
    loader = build_loader(cfg, "train", shuffle=False, seed=0, batch_size=4)
    assert len(loader.dataset) == 3  # 1 video x 2 frames + 1 single frame
    test_types = [t["type"] for t in cfg.val_dataloader.dataset.pipeline]
    for part in loader.dataset.datasets:
        assert [type(t).__name__ for t in part.pipeline.transforms] == test_types
    batch = next(iter(loader))
    assert len(batch["inputs"]) == 3


def test_close_distributed_tears_down_the_process_group(tmp_path):
    """The tools destroy the gloo group after a successful run (left to the
    interpreter's exit, a rank can abort after finishing); a no-op without one."""
    import torch.distributed as dist

    from mtmnv3.engine import close_distributed

    close_distributed()  # nothing initialised: no error
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        t = torch.ones(2)
        dist.all_reduce(t)
        assert dist.is_initialized() and t.tolist() == [1.0, 1.0]
    finally:
        close_distributed()
    assert not dist.is_initialized()


def test_embedding_finetune_config_trains_only_the_embedding_head_of_a_default_model():
    """The embft config builds the default model with everything but the embedding head frozen,
    reads the default data's video part in video groups, and takes a default checkpoint's weights."""
    from mmengine.registry import init_default_scope

    from mtmnv3.core.registry import MODELS
    from mtmnv3.engine import load_config

    init_default_scope("mtmnv3")
    default = MODELS.build(load_config(CONFIG, None).model)
    cfg = load_config(ROOT / "configs" / "mtmnv3_small_3task_embft_synth.py", None)
    model = MODELS.build(cfg.model)
    trainable = {
        n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad
    }
    assert trainable == {"heads.emb"}
    assert model.heads["emb"].loss_type == "contrastive" and model.loss_weighting.task_names == ("emb",)
    assert cfg.train_dataloader.sampler.type == "VideoGroupSampler"
    video_part = load_config(CONFIG, None).train_dataloader.dataset.datasets[0]
    assert dict(cfg.train_dataloader.dataset) == {k: v for k, v in video_part.items()}
    # A default checkpoint loads: the identity classifier and FAMO's state are the only leftovers.
    result = model.load_state_dict(default.state_dict(), strict=False)
    assert not result.missing_keys
    assert all(k == "heads.emb.classifier" or k.startswith("loss_weighting.") for k in result.unexpected_keys)


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("mtmnv3_*.py")))
def test_every_shipped_config_loads_validates_and_builds_its_model(config):
    import mtmnv3.models  # noqa: F401  (registers the robust model type)
    from mtmnv3.core.registry import MODELS
    from mtmnv3.engine import load_config, validate_config

    cfg = load_config(ROOT / "configs" / config)
    validate_config(cfg)
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
