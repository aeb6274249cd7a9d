"""mtmnv3 demo (live and the default job) and mtmnv3 test --track on a tiny trained model and real video files."""

from __future__ import annotations

import json
import os
import re

import cv2
import numpy as np
import pytest
from _helpers import CONFIG, run_tool, tiny_options

from mtmnv3.data.mot_io import load_mot_txt
from mtmnv3.runtime.sessions import installed_backends
from mtmnv3.runtime.stream_server import FFmpegStream, ffmpeg_path, free_port
from mtmnv3.runtime.video import AtomicVideoWriter, VideoFileReader, write_sequence_video

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


def demo(tmp, ckpt, video, *extra, env=None, options=()):
    out = tmp / "out"
    args = [
        "--config", CONFIG, "--checkpoint", ckpt, "--video", video, "--size", "96", "--resolutions", "96,64",
        "--out", out / "demo.mp4", "--mot-out", out / "mot.txt", "--summary-json", out / "summary.json",
        "--budget-log", out / "budget.json", *extra, "--cfg-options", *MODEL_OPTIONS, *options,
    ]  # fmt: skip
    return run_tool("demo.py", *args, env=env), out


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino", "executorch"])
def test_demo_on_a_video_writes_everything(tiny_model, backend):
    if backend not in installed_backends():
        pytest.skip(f"{backend} is not installed")
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


@pytest.mark.parametrize("backend", ["torch", pytest.param("executorch", marks=pytest.mark.slow)])
def test_demo_on_a_wide_video_keeps_its_aspect(tiny_model, backend):
    """A 2:1 video runs at 96x64 (not 96x96) on every runtime, a fixed-shape export included; boxes in its pixels."""
    if backend not in installed_backends():
        pytest.skip(f"{backend} is not installed")
    tmp, _, ckpt, video, n, _ = tiny_model
    wide = tmp / f"wide_{backend}.avi"
    with AtomicVideoWriter(wide, fps=10.0) as writer:
        for frame in VideoFileReader(video):
            writer.write(np.concatenate([frame.image, frame.image[:, ::-1]], axis=1))
    w, h = VideoFileReader(wide).size
    assert w == 2 * h
    r, out = demo(tmp / f"wide_{backend}", ckpt, wide, "--backend", backend)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == n and summary["input_size"] == "96x64"
    assert VideoFileReader(out / "demo.mp4").size == (w, h)
    rows = load_mot_txt(out / "mot.txt")
    if rows.size:  # MOT rows: frame, id, left, top, width, height, ...: source pixels, not network pixels
        assert rows[:, 2].max() < w and rows[:, 3].max() < h


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
    record = json.loads((tmp / "test_work" / "eval_result.json").read_text())  # read by mtmnv3 summary
    assert record["format"] == "mtmnv3.EvalResult" and record["metrics"] == metrics
    assert record["command"].startswith(f"mtmnv3 test {CONFIG} {ckpt} --track")
    results = list((tmp / "test_work" / "mot_results").glob("*.txt"))
    assert results and all(load_mot_txt(p).shape[1] == 10 for p in results)
    assert np.isfinite(metrics["mot/IDF1"])


def _tiny_runner(ckpt):
    from mtmnv3.apis import init_model
    from mtmnv3.runtime.frame_runner import TorchFrameRunner

    options = dict(o.split("=", 1) for o in MODEL_OPTIONS)
    options = {k: float(v) if "." in v else int(v) for k, v in options.items()}
    return TorchFrameRunner(init_model(CONFIG, ckpt, options), 96)


def _same_metrics(a, b):
    return a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def test_cached_detections_track_as_the_streaming_path(tiny_model, tmp_path):
    from mtmnv3.apis.inference import detect_mot_sequences, track_detections, track_mot_sequences

    _, data_root, ckpt, _, n, seq = tiny_model
    runner = _tiny_runner(ckpt)
    cfg = dict(high_thr=0.05, low_thr=0.01, new_track_thr=0.05)  # an untrained detector's scores are low
    streamed = track_mot_sequences(runner, seq.parent, tmp_path / "streamed", cfg, progress=False)
    dets = detect_mot_sequences(runner, seq.parent, progress=False)
    assert set(dets) == {p.name for p in seq.parent.iterdir()} and dets[seq.name].num_frames == n
    assert all(p.embeddings is not None for p in dets[seq.name].predictions)
    overall, per_seq = track_detections(dets, tmp_path / "cached", cfg, per_sequence=True)
    assert _same_metrics(overall, streamed) and set(per_seq) == set(dets)
    assert _same_metrics(
        track_detections(dets, tmp_path / "again", cfg), overall
    )  # the cache is not consumed
    rows = load_mot_txt(tmp_path / "cached" / f"{seq.name}.txt")
    assert np.array_equal(rows, load_mot_txt(tmp_path / "streamed" / f"{seq.name}.txt"))
    iou = track_detections(dets, tmp_path / "iou", {**cfg, "use_embeddings": False}, hota=False)
    assert "HOTA" not in iou and np.isfinite(iou["MOTA"])
    short = detect_mot_sequences(runner, seq.parent, embeddings=False, max_frames=3, progress=False)
    assert short[seq.name].num_frames == 3 and short[seq.name].predictions[0].embeddings is None
    no_emb = {**cfg, "use_embeddings": False}
    assert _same_metrics(
        track_detections(short, tmp_path / "short", no_emb),
        track_mot_sequences(
            runner, seq.parent, tmp_path / "short_streamed", no_emb, max_frames=3, progress=False
        ),
    )
    assert np.all(load_mot_txt(tmp_path / "short" / f"{seq.name}.txt")[:, 0] <= 3)


def _ground_truth_detections(seq, n, false_score=None):
    """A sequence's ground-truth boxes as detections (score 0.9, one embedding direction per
    identity), plus, with ``false_score``, two false boxes per frame at that score."""
    from mtmnv3.apis.inference import SequenceDetections
    from mtmnv3.runtime.deployed import FramePrediction

    gt = load_mot_txt(seq / "gt" / "gt.txt")
    gt = gt[gt[:, 6] != 0]
    rng = np.random.default_rng(0)
    preds = []
    for frame in range(1, n + 1):
        rows = gt[gt[:, 0] == frame]
        boxes = np.concatenate(
            [rows[:, 2:4] - 1, rows[:, 2:4] - 1 + rows[:, 4:6]], axis=1
        )  # 1-based -> 0-based
        emb = np.eye(64)[rows[:, 1].astype(int) % 64]
        scores = np.full(len(rows), 0.9)
        if false_score is not None:
            corner = rng.uniform(0, 60, (2, 2))
            boxes = np.concatenate([boxes, np.concatenate([corner, corner + 20], axis=1)])
            emb = np.concatenate([emb, np.eye(64)[rng.integers(40, 64, 2)]])
            scores = np.concatenate([scores, [false_score] * 2])
        preds.append(FramePrediction(boxes, scores, np.zeros(len(boxes), np.int64), emb, None))
    return gt, {seq.name: SequenceDetections(seq, 30.0, n, n, preds)}


def test_tracking_ground_truth_detections_is_perfect(tiny_model, tmp_path):
    """Detections built from a sequence's ground truth track with MOTA = IDF1 = 1, per sequence too."""
    from mtmnv3.apis.inference import track_detections

    _, _, _, _, n, seq = tiny_model
    gt, dets = _ground_truth_detections(seq, n)
    assert len(np.unique(gt[:, 1])) > 1
    overall, per_seq = track_detections(
        dets, tmp_path, dict(high_thr=0.5, new_track_thr=0.6), per_sequence=True
    )
    assert overall["MOTA"] == pytest.approx(1.0) and overall["IDF1"] == pytest.approx(1.0)
    assert overall["IDSW"] == overall["FP"] == overall["FN"] == 0
    assert _same_metrics(per_seq[seq.name], overall)
    worse = track_detections(dets, tmp_path / "high", dict(high_thr=0.95, low_thr=0.95, new_track_thr=0.95))
    assert worse["FN"] == len(gt) and worse["MOTA"] == pytest.approx(
        0.0
    )  # every detection below the thresholds


def test_calibration_finds_the_thresholds_that_keep_false_boxes_out(tiny_model, tmp_path):
    from mtmnv3.studies.tracker_calibration import calibrate_thresholds

    _, _, _, _, n, seq = tiny_model
    _, dets = _ground_truth_detections(seq, n, false_score=0.42)
    config_row, grid, skipped = calibrate_thresholds(
        dets, tmp_path, dict(type="EmbeddingTracker", high_thr=0.3, low_thr=0.1, new_track_thr=0.4),
        high_thrs=(0.05, 0.3, 0.4, 0.5), margins=(0.0, 0.1),
    )  # fmt: skip
    assert skipped == [0.05] and len(grid) == 6
    assert config_row["high_thr"] == 0.3 and config_row["FP"] > 0  # the false boxes start tracks
    best = grid[0]
    assert best["new_track_thr"] > 0.42 and best["MOTA"] == pytest.approx(1.0) and best["FP"] == 0
    assert all(g["FP"] > 0 for g in grid if g["new_track_thr"] < 0.42)  # those let the false boxes in
    assert [g["MOTA"] for g in grid] == sorted((g["MOTA"] for g in grid), reverse=True)
    assert grid[-1]["MOTA"] < config_row["MOTA"] or grid[-1]["FP"] > 0
    with pytest.raises(ValueError, match="objective must be one of"):
        calibrate_thresholds(dets, tmp_path, objective="AUC")
    with pytest.raises(ValueError, match=r"no high_thr value is >= the tracker's low_thr \(0.1\)"):
        calibrate_thresholds(dets, tmp_path, high_thrs=(0.05,))


def test_calibrate_tracker_tool(tiny_model):
    tmp, data_root, ckpt, _, _, seq = tiny_model
    out = tmp / "calib" / "calib.json"
    args = ["--high-thr", "0.05,0.1,0.2", "--new-track-margin", "0,0.1", "--no-progress", "--out-json", out]
    r = run_tool("calibrate_tracker.py", CONFIG, ckpt, "--mot-dir", seq.parent, seq.parent, *args,
                 "--cfg-options", *tiny_options(data_root))  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(2 sequences, 16 frames)" in r.stdout  # two folders pool their sequences (names prefixed)
    res = json.loads(out.read_text())
    assert res["mot_dirs"] == [str(seq.parent)] * 2
    grid = res["grid"]
    assert len(grid) == 4 and res["best"] == grid[0] and res["objective"] == "MOTA"
    assert [g["MOTA"] for g in grid] == sorted((g["MOTA"] for g in grid), reverse=True)
    assert {(g["high_thr"], g["new_track_thr"]) for g in grid} == {
        (0.1, 0.1),
        (0.1, 0.2),
        (0.2, 0.2),
        (0.2, 0.3),
    }
    assert "skipped: [0.05]" in r.stderr  # below the config's low_thr (0.1)
    assert res["config_setting"]["high_thr"] == 0.4  # the config's own tracker, for comparison
    best = res["best"]
    assert (
        res["cfg_options"]
        == f"tracker.high_thr={best['high_thr']:g} tracker.new_track_thr={best['new_track_thr']:g}"
    )
    assert f"apply with: --cfg-options {res['cfg_options']}" in r.stdout
    # --split-seed regenerates the test split with other seeds (here 1 sequence x 8 frames each)
    r = run_tool("calibrate_tracker.py", CONFIG, ckpt, "--split-seed", "5", "6", "--high-thr", "0.1",
                 "--new-track-margin", "0", "--objective", "IDF1", "--no-progress",
                 "--cfg-options", *tiny_options(data_root))  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "IDF1 (objective)" in r.stdout and "(2 sequences, 16 frames)" in r.stdout


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--high-thr", "0.2,1.5"], r"--high-thr must be distinct numbers in \[0, 1\]"),
        (["--new-track-margin", "a"], "--new-track-margin must be comma-separated numbers"),
        (["--split-seed", "0"], "is the test split's own seed"),
        (["--split-seed", "3", "3"], r"--split-seed seeds must be distinct, got \[3, 3\]"),
        (["--mot-dir", "no/such/dir"], "MOTChallenge folder not found"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_calibrate_tracker_bad_input(tiny_model, extra, match):
    tmp, data_root, ckpt, _, _, _ = tiny_model
    out = tmp / "bad_calib.json"
    r = run_tool("calibrate_tracker.py", CONFIG, ckpt, *extra, "--out-json", out, "--no-progress",
                 "--cfg-options", *tiny_options(data_root))  # fmt: skip
    assert r.returncode == 2 and re.search(match, r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not out.exists()
    r = run_tool("calibrate_tracker.py", CONFIG, tmp / "missing.pth")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr


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
    assert json.loads((work / "test" / "eval_result.json").read_text())["command"].startswith("mtmnv3 test")
    # a second run reuses the checkpoint instead of training again
    r2 = run_tool("demo_job.py", *job, "--cfg-options", *tiny_options(data_root), timeout=900)
    assert r2.returncode == 0 and "reusing" in r2.stdout


def test_demo_source_folder_of_frames_with_positional_config_and_checkpoint(tiny_model):
    """``mtmnv3 demo CONFIG CHECKPOINT --source FOLDER`` reads a sequence's frames in order."""
    tmp, _, ckpt, _, n, seq = tiny_model
    out = tmp / "folder_source"
    r = run_tool(
        "demo", CONFIG, ckpt, "--source", seq / "img1", "--backend", "torch", "--size", "96",
        "--summary-json", out / "summary.json", "--mot-out", out / "mot.txt", "--cfg-options", *MODEL_OPTIONS,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == n and summary["source"] == str(seq / "img1")
    rows = load_mot_txt(out / "mot.txt")
    assert rows.size == 0 or rows[:, 0].max() <= n


def test_demo_counts_lines_and_zones_and_keeps_named_classes(tiny_model):
    """--classes, --line, --zone and --counts-csv through the command line: the CSV has a row per frame and
    counter, the summary the final counts (exact counts on known scenes: tests/runtime/test_loop_counting.py)."""
    from mtmnv3.cli.live_demo import checkpoint_meta

    tmp, _, ckpt, video, n, _ = tiny_model
    w, h = VideoFileReader(video).size
    names = checkpoint_meta(ckpt)["dataset_meta"]["classes"]
    line, zone = f"0,{h // 2},{w},{h // 2}", f"0,0,{w // 2},0,{w // 2},{h},0,{h}"
    extra = ["--backend", "torch", "--classes", names[1], names[-1], "--line", line, "--zone", zone]
    csv_path = tmp / "count" / "out" / "counts.csv"
    r, out = demo(tmp / "count", ckpt, video, *extra, "--counts-csv", csv_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"] == [names[1], names[-1]] and set(summary["counts"]) == {"line1", "zone1"}
    assert set(summary["counts"]["line1"]) == {"in", "out"}
    assert set(summary["counts"]["zone1"]) == {"inside", "entered"}
    csv_rows = (out / "counts.csv").read_text().splitlines()
    assert csv_rows[0] == "frame,counter,in,out,inside,entered" and len(csv_rows) == 1 + 2 * n
    last_zone = [r for r in csv_rows if ",zone1," in r][-1].split(",")
    assert [int(v) for v in last_zone[4:]] == [
        summary["counts"]["zone1"]["inside"],
        summary["counts"]["zone1"]["entered"],
    ]


@pytest.mark.parametrize(
    "extra, match",
    [
        (
            ["--classes", "dinosaur"],
            r"unknown class name\(s\) \['dinosaur'\]; the model's classes are \['",
        ),
        (["--line", "0,10,5000,10"], r"\(5000, 10\) is outside the \d+x\d+ frame"),
        (["--line", "1,2,3"], "expected 4 numbers"),
        (["--zone", "0,0,10,10"], "at least 3 points"),
    ],
)
def test_demo_bad_classes_and_geometry_are_refused_before_the_first_frame(tiny_model, extra, match):
    tmp, _, ckpt, video, _, _ = tiny_model
    base = tmp / f"badcount{abs(hash(tuple(extra)))}"
    r, out = demo(base, ckpt, video, "--backend", "torch", *extra)
    assert r.returncode == 2 and re.search(match, r.stderr), r.stderr[-2000:]
    assert _no_outputs(out)


# ---- several sources in one process -------------------------------------------------------------
def _multi(tmp, ckpt, *sources, extra=()):
    out = tmp / "out"
    args = [
        "--config", CONFIG, "--checkpoint", ckpt, "--size", "96", "--resolutions", "96,64",
        "--out", out / "demo.mp4", "--mot-out", out / "mot.txt", "--summary-json", out / "summary.json",
        "--budget-log", out / "budget.json", *extra, "--cfg-options", *MODEL_OPTIONS,
    ]  # fmt: skip
    for s in sources:
        args += ["--source", s]
    return run_tool("demo.py", *args), out


@pytest.mark.skipif(ffmpeg_path() is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
def test_demo_runs_a_file_and_a_live_stream_in_one_process_with_one_budget(tiny_model):
    """One process: a video file and the same video served live by ffmpeg; one budget split in two."""
    tmp, _, ckpt, video, n, _ = tiny_model
    base = tmp / "multi"
    frames = min(n, 12)
    with FFmpegStream(video) as server:
        r, out = _multi(
            base, ckpt, video, server.url, extra=("--budget-ms", "80", "--max-frames", str(frames))
        )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["stream"] for s in summary["streams"]] == ["1", "2"]
    file_s, live_s = summary["streams"]
    assert file_s["source"] == str(video) and live_s["source"] == server.url
    assert file_s["status"] == live_s["status"] == "ended" and summary["failed"] == []
    assert file_s["frames"] == live_s["frames"] == frames and summary["frames"] == 2 * frames
    assert file_s["dropped_frames"] == 0 and file_s["reconnects"] == live_s["reconnects"] == 0
    assert live_s["budget_share_ms"] == 40.0
    for k, s in ((1, file_s), (2, live_s)):
        assert len(list(VideoFileReader(out / f"demo_{k}.mp4"))) == s["frames"]
        assert (out / f"mot_{k}.txt").is_file()
        log = json.loads((out / f"budget_{k}.json").read_text())
        assert len(log["records"]) == s["frames"]
        # each stream plans to its share while both run; the one left gets the whole budget
        assert {rec["budget_ms"] for rec in log["records"]} <= {40.0, 80.0}
        assert log["records"][0]["budget_ms"] == 40.0
    assert not (out / "demo.mp4").exists()
    assert "[1]" in r.stdout and "[2]" in r.stdout and "late" in r.stdout


def test_one_failing_source_does_not_stop_the_others(tiny_model):
    """A folder with a corrupt image mid-way fails at that image; the video still runs to its end (exit 1)."""
    tmp, _, ckpt, video, n, _ = tiny_model
    base = tmp / "multi_fail"
    folder = base / "frames"
    folder.mkdir(parents=True)
    for frame in list(VideoFileReader(video, max_frames=3)):
        cv2.imwrite(str(folder / f"{frame.index:03d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    (folder / "003.png").write_bytes(b"truncated")
    r, out = _multi(base, ckpt, video, folder)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert re.search(r"error: source '.*frames' failed: cannot read image '.*003\.png'", r.stderr), r.stderr
    summary = json.loads((out / "summary.json").read_text())
    good, bad = summary["streams"]
    assert good["status"] == "ended" and good["frames"] == n
    assert bad["status"] == "failed" and bad["frames"] == 3 and "003.png" in bad["error"]
    assert summary["failed"] == ["2"]
    assert len(list(VideoFileReader(out / "demo_1.mp4"))) == n
    assert len(list(VideoFileReader(out / "demo_2.mp4"))) == 3


def test_a_source_that_cannot_be_opened_stops_before_anything_is_written(tiny_model):
    tmp, _, ckpt, video, _, _ = tiny_model
    base = tmp / "multi_bad"
    port = free_port()
    r, out = _multi(base, ckpt, video, f"http://127.0.0.1:{port}/live.ts")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"cannot open stream 'http://127.0.0.1:{port}/live.ts': connection refused" in r.stderr
    assert _no_outputs(out)
    r, out = _multi(base, ckpt, video, extra=("--reconnect", "-1"))
    assert r.returncode == 2 and "--reconnect must be >= 0" in r.stderr
