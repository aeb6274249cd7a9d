"""tools/demo.py, tools/test.py --track and the make-demo job on a tiny trained model and real video files."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from test_train_tools import CONFIG, run_tool, tiny_options

from mtmnv3.evaluation import load_mot_txt
from mtmnv3.video import VideoFileReader, write_sequence_video

#: The tiny model's architecture overrides (the demo must build the same model).
MODEL_OPTIONS = [o for o in tiny_options("unused") if o.startswith("model.")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    data_root, work = tmp / "data", tmp / "work"
    r = run_tool("train.py", CONFIG, "--work-dir", work, "--cfg-options", *tiny_options(data_root))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    val = next(p for p in data_root.iterdir() if p.name.startswith("val-"))
    seq = sorted((val / "mot").iterdir())[0]
    video = tmp / "heldout.avi"
    n = write_sequence_video(seq, video)
    return tmp, data_root, work / "iter_6.pth", video, n, seq


def demo(tmp, ckpt, video, *extra, env=None):
    out = tmp / "out"
    args = [
        "--config", CONFIG, "--checkpoint", ckpt, "--video", video, "--size", "96", "--resolutions", "96,64",
        "--out", out / "demo.mp4", "--mot-out", out / "mot.txt", "--summary-json", out / "summary.json",
        "--budget-log", out / "budget.json", *extra, "--cfg-options", *MODEL_OPTIONS,
    ]  # fmt: skip
    return run_tool("demo.py", *args, env=env), out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_demo_on_a_video_writes_everything(tiny_model, backend):
    tmp, _, ckpt, video, n, _ = tiny_model
    r, out = demo(tmp / backend, ckpt, video, "--backend", backend)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == n and summary["backend"] == backend
    assert summary["fps"] > 0 and summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"] > 0
    assert summary["deadline_misses"] == 0  # no budget: every frame meets an infinite deadline
    frames = list(VideoFileReader(out / "demo.mp4"))
    assert len(frames) == n and frames[0].image.shape[:2] == VideoFileReader(video).size[::-1]
    rows = load_mot_txt(out / "mot.txt")
    assert rows.shape[1] == 10 and (rows.size == 0 or rows[:, 0].max() <= n)
    log = json.loads((out / "budget.json").read_text())
    assert len(log["records"]) == n and all(rec["plan"]["mode"] == "full" for rec in log["records"])


def test_demo_under_a_budget_records_plans_and_staleness(tiny_model):
    tmp, _, ckpt, video, n, _ = tiny_model
    r, out = demo(
        tmp / "budget", ckpt, video, "--backend", "onnxruntime", "--budget-ms", "1000", "--cls-period", "3"
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget_ms"] == 1000 and summary["policy"] == "adaptive"
    assert set(summary["mean_staleness"]) == {"cls", "det", "emb"}
    records = json.loads((out / "budget.json").read_text())["records"]
    assert len(records) == n
    assert all(rec["budget_ms"] == 1000 for rec in records)
    assert {rec["plan"]["resolution"] for rec in records} <= {96, 64}
    assert "deadline misses" in r.stdout


def test_iou_only_association_flag(tiny_model):
    tmp, _, ckpt, video, _, _ = tiny_model
    r, out = demo(tmp / "iou", ckpt, video, "--backend", "torch", "--iou-only", "--max-frames", "4")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["association"] == "iou" and summary["frames"] == 4


def _no_outputs(out):
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_video", "video file not found"),
        ("corrupt_video", "cannot (open|read)"),
        ("missing_checkpoint", "checkpoint not found"),
        ("camera", "cannot open camera 97"),
        ("show", "--show needs a display"),
        ("bad_out", "--out must end in one of"),
        ("wrong_model", "does not match the model"),
    ],
)
def test_demo_bad_input_is_a_clear_error(tiny_model, case, match):
    tmp, _, ckpt, video, _, _ = tiny_model
    base = tmp / f"bad_{case}"
    base.mkdir(exist_ok=True)
    out = base / "out"
    common = [
        "--config",
        CONFIG,
        "--out",
        out / "demo.mp4",
        "--summary-json",
        out / "s.json",
        "--cfg-options",
        *MODEL_OPTIONS,
    ]
    env = None
    if case == "missing_video":
        args = [*common, "--checkpoint", ckpt, "--video", base / "nope.mp4"]
    elif case == "corrupt_video":
        bad = base / "bad.mp4"
        bad.write_bytes(os.urandom(4096))
        args = [*common, "--checkpoint", ckpt, "--video", bad]
    elif case == "missing_checkpoint":
        args = [*common, "--checkpoint", base / "none.pth", "--video", video]
    elif case == "camera":
        args = [*common, "--checkpoint", ckpt, "--camera-id", "97"]
    elif case == "show":
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        args = [*common, "--checkpoint", ckpt, "--video", video, "--show"]
    elif case == "wrong_model":  # the tiny checkpoint against the full-size model
        args = ["--config", CONFIG, "--checkpoint", ckpt, "--video", video, "--out", out / "demo.mp4"]
    else:
        args = ["--config", CONFIG, "--checkpoint", ckpt, "--video", video, "--out", out / "demo.gif"]
    r = run_tool("demo.py", *args, env=env)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert any(line.startswith("error:") for line in r.stderr.splitlines())
    assert re.search(match, r.stderr), r.stderr
    assert _no_outputs(out)


def test_test_tool_tracks_mot_sequences(tiny_model):
    tmp, data_root, ckpt, _, _, _ = tiny_model
    out_json = tmp / "track_metrics.json"
    r = run_tool(
        "test.py", CONFIG, ckpt, "--track", "--work-dir", tmp / "test_work", "--out-json", out_json,
        "--cfg-options", *tiny_options(data_root),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    metrics = json.loads(out_json.read_text())
    for key in ("cls/top1", "det/mAP", "mot/MOTA", "mot/IDF1", "mot/HOTA", "mot/IDSW"):
        assert key in metrics
    assert "| mot |" in r.stdout
    results = list((tmp / "test_work" / "mot_results").glob("*.txt"))
    assert results and all(load_mot_txt(p).shape[1] == 10 for p in results)
    assert np.isfinite(metrics["mot/IDF1"])


@pytest.mark.slow
def test_demo_job_end_to_end(tiny_model):
    """The make-demo job on tiny settings: train, evaluate, budgeted demo, report."""
    tmp, data_root, _, _, _, _ = tiny_model
    work = tmp / "job"
    job = ["--work-dir", work, "--budget-ms", "500", "--frames", "20", "--video-size", "96"]
    r = run_tool("demo_job.py", *job, "--cfg-options", *tiny_options(data_root), timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for name in (
        "model.pth",
        "demo.mp4",
        "report.md",
        "latency.png",
        "metrics.json",
        "budget_log.json",
        "heldout.mp4",
    ):
        assert (work / name).is_file(), name
    report = (work / "report.md").read_text()
    assert "| cls |" in report and "| det |" in report and "| mot |" in report
    # a second run reuses the checkpoint instead of training again
    r2 = run_tool("demo_job.py", *job, "--cfg-options", *tiny_options(data_root), timeout=900)
    assert r2.returncode == 0 and "reusing" in r2.stdout
