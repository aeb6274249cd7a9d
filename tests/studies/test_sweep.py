"""``mtmnv3 sweep``: trunks x seeds as ``mtmnv3 train`` trials on a real local Ray cluster (2 CPUs)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from _helpers import CONFIG, tiny_options, train_data_options

from mtmnv3.cli import main
from mtmnv3.studies.sweep import SUMMARY_NAME, TRIAL_RECORD, plan_trials, run_sweep

pytest.importorskip("ray")

#: Frames the tiny sweeps train and validate on.
SIZE = 64
ITERS = 4


def sweep_options(data_root) -> list[str]:
    """The default 3-task config shrunk to a few iterations on 64 px frames (every trial trains it)."""
    small = [
        f"{key}.{field}={SIZE}"
        for key in ("val_dataloader.dataset", "test_dataloader.dataset")
        for field in ("image_size", "pipeline.0.size")
    ]
    opts = tiny_options(data_root, max_iters=ITERS, ckpt_interval=2, batch=4) + small
    opts += train_data_options(CONFIG, data_root, num_sequences=2, num_frames=4, image_size=SIZE)
    return [*opts, "val_dataloader.dataset.num_frames=4", "test_dataloader.dataset.num_frames=4"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("synth")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _sweep(work_dir, data_root, *configs, seeds=("0",), extra=()):
    argv = ["sweep", *map(str, configs), "--seeds", *seeds, "--work-dir", str(work_dir), "--num-cpus", "2"]
    return main([*argv, *extra, "--cfg-options", *sweep_options(data_root)])


def test_two_trials_train_in_their_own_work_dirs_and_a_rerun_reuses_them(tmp_path, data_root, capsys):
    work = tmp_path / "sweep"
    assert _sweep(work, data_root, CONFIG, seeds=("0", "1")) == 0
    out = capsys.readouterr().out
    ckpts = [work / CONFIG.stem / f"seed{k}" / f"iter_{ITERS}.pth" for k in (0, 1)]
    for k, ckpt in enumerate(ckpts):
        assert ckpt.is_file(), out
        record = json.loads((ckpt.parent / TRIAL_RECORD).read_text())
        assert record["state"] == "done" and record["seed"] == k
        assert f"randomness.seed={k}" in record["cfg_options"]
        assert "mtmnv3 train" in (ckpt.parent / "train.log").read_text()
    summary = json.loads((work / SUMMARY_NAME).read_text())
    assert [t["status"] for t in summary["trials"]] == ["trained", "trained"]
    mtimes = [c.stat().st_mtime_ns for c in ckpts]

    t0 = time.perf_counter()
    assert _sweep(work, data_root, CONFIG, seeds=("0", "1")) == 0
    assert time.perf_counter() - t0 < 20  # no Ray, no training: the trials are reused
    assert [c.stat().st_mtime_ns for c in ckpts] == mtimes
    assert capsys.readouterr().out.count("reused") == 2
    summary = json.loads((work / SUMMARY_NAME).read_text())
    assert [t["status"] for t in summary["trials"]] == ["reused", "reused"]


def test_a_failing_trial_keeps_the_others_and_reports_its_log(tmp_path, data_root, capsys):
    bad = tmp_path / "bad_trunk_3task.py"
    bad.write_text(f'_base_ = ["{CONFIG}"]\nmodel = dict(trunk=dict(_delete_=True, type="NoSuchTrunk"))\n')
    work = tmp_path / "sweep"
    assert _sweep(work, data_root, CONFIG, bad) == 1
    captured = capsys.readouterr()
    assert (work / CONFIG.stem / "seed0" / f"iter_{ITERS}.pth").is_file(), captured.out + captured.err
    log = work / "bad_trunk_3task" / "seed0" / "train.log"
    assert f"log: {log}" in captured.err
    assert "NoSuchTrunk" in log.read_text() and "NoSuchTrunk" in captured.err
    trials = {t["name"]: t for t in json.loads((work / SUMMARY_NAME).read_text())["trials"]}
    assert trials[f"{CONFIG.stem}/seed0"]["status"] == "trained"
    assert trials["bad_trunk_3task/seed0"]["status"] == "failed"


def test_an_interrupted_trial_resumes_from_its_last_checkpoint(tmp_path, data_root):
    work = tmp_path / "sweep"
    opts = sweep_options(data_root)
    run_sweep([CONFIG], [0], work, opts, num_cpus=2)
    trial_dir = work / CONFIG.stem / "seed0"
    # Interrupted after iteration 2: the final checkpoint never written, the record still 'running'.
    (trial_dir / f"iter_{ITERS}.pth").unlink()
    (trial_dir / "last_checkpoint").write_text(str(trial_dir / "iter_2.pth"))
    record = json.loads((trial_dir / TRIAL_RECORD).read_text())
    (trial_dir / TRIAL_RECORD).write_text(json.dumps({**record, "state": "running"}))
    [result] = run_sweep([CONFIG], [0], work, opts, num_cpus=2)
    assert result.status == "resumed", result
    assert (trial_dir / f"iter_{ITERS}.pth").is_file()
    assert "Load checkpoint from" in (trial_dir / "train.log").read_text().split("$ ")[-1]


def test_a_work_dir_of_other_options_is_a_failure_not_an_overwrite(tmp_path, data_root):
    work = tmp_path / "sweep"
    trial = plan_trials([CONFIG], [0], work, sweep_options(data_root))[0]
    os.makedirs(trial.work_dir)
    Path(trial.work_dir, TRIAL_RECORD).write_text(json.dumps({"fingerprint": "another", "state": "done"}))
    [result] = run_sweep([CONFIG], [0], work, sweep_options(data_root), num_cpus=2)
    assert result.status == "failed" and "another config or other options" in result.error
    assert json.loads(Path(trial.work_dir, TRIAL_RECORD).read_text())["fingerprint"] == "another"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seeds", "0", "0"], "seeds must be distinct"),
        (["--seeds", "-1"], "seeds must be distinct integers >= 0"),
        (["--cpus-per-trial", "0"], "cpus_per_trial must be an int >= 1"),
        (["--num-cpus", "1", "--cpus-per-trial", "2"], "num_cpus must be an int >= cpus_per_trial"),
        (["--cfg-options", "randomness.seed=3"], "randomness.seed is the sweep's --seeds"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, argv, message, capsys):
    assert main(["sweep", str(CONFIG), "--work-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / SUMMARY_NAME).exists()


def test_a_missing_config_is_named(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.py"), "--work-dir", str(tmp_path)]) == 2
    assert f"config not found: {tmp_path / 'nope.py'}" in capsys.readouterr().err


def test_without_ray_the_error_names_the_package_and_the_install(tmp_path, data_root, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when not installed
    assert _sweep(tmp_path / "sweep", data_root, CONFIG) == 2
    err = capsys.readouterr().err
    assert "'ray' is not installed" in err and "'.[sweep]'" in err
