"""The ``mtmnv3`` command line: entry points, every subcommand's help, dispatch errors, ``--source`` parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from _helpers import CONFIG, ROOT

from mtmnv3.cli import COMMANDS, main
from mtmnv3.runtime.video import (
    AtomicVideoWriter,
    ImageFolderReader,
    VideoFileReader,
    VideoSourceError,
    open_source,
)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def _run(*cmd, timeout=120):
    return subprocess.run(
        list(map(str, cmd)), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=ENV
    )


def _code(argv):
    """``main(argv)``'s exit status, argparse's own exits included."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


# ---- entry points ---------------------------------------------------------------------------------
def test_console_script_module_and_wrapper_scripts_show_help():
    script = Path(sys.executable).parent / "mtmnv3"
    assert script.is_file(), "pip install -e . installs the mtmnv3 console script"
    r = _run(script, "--help")
    assert r.returncode == 0, r.stderr
    assert all(name in r.stdout for name in COMMANDS)
    r = _run(sys.executable, "-m", "mtmnv3", "--help")
    assert r.returncode == 0 and "calibrate-tracker" in r.stdout, r.stderr
    r = _run(sys.executable, "tools/train.py", "--help")
    assert r.returncode == 0 and "usage: mtmnv3 train" in r.stdout and "example:" in r.stdout, r.stderr


def test_unknown_subcommand_lists_the_known_ones():
    r = _run(sys.executable, "-m", "mtmnv3", "trian", "configs/x.py")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown subcommand 'trian'" in r.stderr
    assert all(name in r.stderr for name in COMMANDS)


def test_no_subcommand_prints_usage_and_fails(capsys):
    assert _code([]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_help_has_an_example(name, capsys):
    assert _code([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: mtmnv3 {name}" in out
    example = out.split("example:", 1)[1]
    assert f"mtmnv3 {name}" in example or (name == "train" and "tools/train.py" in example)


def test_each_subcommand_module_runs_standalone(capsys):
    """``mtmnv3.cli.<module>.main(argv)`` is the same subcommand (tests and scripts call it directly)."""
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(f"mtmnv3.cli.{module}")
        assert callable(mod.run) and callable(mod.add_parser)
        with pytest.raises(SystemExit) as e:
            mod.main(["--help"])
        assert e.value.code == 0 and f"usage: mtmnv3 {name}" in capsys.readouterr().out


def test_the_demo_job_runs_in_process():
    source = (ROOT / "mtmnv3" / "cli" / "demo_job.py").read_text()
    assert "subprocess" not in source and "tools/" not in source


#: Documentation generators: maintenance scripts beside the wrappers, checked by tests/test_docs.py.
DOC_GENERATORS = ["gen_cli_docs.py", "gen_config_docs.py"]


def test_tools_keeps_only_the_thin_wrappers():
    assert sorted(p.name for p in (ROOT / "tools").iterdir() if p.suffix == ".py") == sorted(
        ["demo.py", "test.py", "train.py", *DOC_GENERATORS]
    )
    for script in (ROOT / "tools").glob("*.py"):
        if script.name not in DOC_GENERATORS:
            assert len(script.read_text().splitlines()) < 12, script


# ---- --source -------------------------------------------------------------------------------------
COLORS = {"b_frame.png": (255, 0, 0), "a_frame.png": (0, 255, 0), "c_frame.bmp": (0, 0, 255)}


def _image_folder(folder: Path) -> Path:
    folder.mkdir()
    for name, rgb in COLORS.items():
        img = np.zeros((24, 32, 3), np.uint8)
        img[:] = rgb
        img[0, 0] = (7, 7, 7)
        assert cv2.imwrite(str(folder / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_source_folder_reads_its_images_in_sorted_order(tmp_path):
    folder = _image_folder(tmp_path / "frames")
    reader = open_source(str(folder))
    assert isinstance(reader, ImageFolderReader) and reader.size == (32, 24)
    frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2]
    expected = [COLORS[name] for name in sorted(COLORS)]  # a_, b_, c_; notes.txt left out
    assert [tuple(int(v) for v in f.image[5, 5]) for f in frames] == expected
    assert all(f.image.shape == (24, 32, 3) and f.image.dtype == np.uint8 for f in frames)
    assert len(list(open_source(folder, max_frames=2))) == 2


def test_source_glob_reads_the_matching_images_in_sorted_order(tmp_path):
    folder = _image_folder(tmp_path / "frames")
    reader = open_source(str(folder / "*_frame.png"))
    assert isinstance(reader, ImageFolderReader)
    assert [tuple(int(v) for v in f.image[5, 5]) for f in reader] == [
        COLORS["a_frame.png"],
        COLORS["b_frame.png"],
    ]
    assert len(list(open_source(str(folder / "*")))) == 3  # notes.txt is not an image
    with pytest.raises(VideoSourceError, match=r"no image matches the pattern '.*\*\.jpg'"):
        open_source(str(folder / "*.jpg"))


def test_source_file_is_a_video_and_an_integer_is_a_camera(tmp_path):
    video = tmp_path / "clip.avi"
    with AtomicVideoWriter(video, fps=10) as writer:
        for k in range(3):
            writer.write(np.full((32, 32, 3), 40 * k, np.uint8))
    reader = open_source(str(video))
    assert isinstance(reader, VideoFileReader) and len(list(reader)) == 3
    with pytest.raises(VideoSourceError, match="cannot open camera 97"):
        open_source("97")
    with pytest.raises(VideoSourceError, match="cannot open camera 97"):
        open_source(97)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda t: t / "missing.mp4", r"source not found: '.*missing\.mp4'"),
        (lambda t: (t / "empty").mkdir() or t / "empty", r"folder '.*empty' holds no images"),
        (lambda t: "ftp://host/x.mp4", "unsupported URL scheme"),
    ],
)
def test_source_that_cannot_be_opened_names_it(tmp_path, make, match):
    with pytest.raises(VideoSourceError, match=match):
        open_source(str(make(tmp_path)))


def test_open_source_needs_exactly_one():
    with pytest.raises(VideoSourceError, match="exactly one source"):
        open_source()
    with pytest.raises(VideoSourceError, match="exactly one source"):
        open_source("0", camera_id=0)


# ---- mtmnv3 demo: which mode, and its input errors -----------------------------------------------
@pytest.mark.parametrize(
    "argv, match",
    [
        (["{ckpt}", "--source", "{tmp}/missing.mp4"], r"error: source not found: '.*missing\.mp4'"),
        (["{ckpt}", "--source", "{tmp}/frames_none"], "error: source not found"),
        (["{ckpt}"], "the live demo needs a source"),
        (["--source", "0"], "needs CONFIG and CHECKPOINT"),
        (["{ckpt}", "--source", "0", "--frames", "5"], "--frames only apply to the default job"),
        (["--out", "{tmp}/x.mp4"], "--out only apply to the live demo"),
        (["--iou-only", "--policy", "greedy"], "--policy, --iou-only only apply to the live demo"),
    ],
)
def test_demo_bad_arguments_are_clear_errors(tmp_path, capsys, argv, match):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"")  # only its existence is checked before the source
    argv = [a.format(ckpt=ckpt, tmp=tmp_path) for a in argv]
    argv = [str(CONFIG), *argv] if argv and argv[0] == str(ckpt) else argv
    assert main(["demo", *argv]) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "x.mp4").exists()


def test_demo_config_given_twice_must_agree(tmp_path, capsys):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"")
    assert main(["demo", str(CONFIG), str(ckpt), "--config", "other.py", "--source", "0"]) == 2
    assert "CONFIG given twice" in capsys.readouterr().err


# ---- mtmnv3 summary --update-metafile ---------------------------------------------------------------
TINY = """_base_ = [{base!r}]
model = dict(trunk=dict(width_mult=0.25), neck=dict(out_channels=16), heads=dict(
    cls=dict(hidden_channels=32), det=dict(feat_channels=16), emb=dict(feat_channels=16)))
"""


def test_summary_writes_the_metafile_with_metadata_and_results(tmp_path, capsys):
    import yaml

    configs, work = tmp_path / "configs", tmp_path / "work_dirs"
    configs.mkdir()
    for name in ("a_tiny.py", "b_tiny.py"):
        (configs / name).write_text(TINY.format(base=str(CONFIG)))
    (configs / "_base_").mkdir()
    (configs / "_base_" / "skip.py").write_text("x = 1\n")
    run = work / "eval_a"
    run.mkdir(parents=True)
    command = f"mtmnv3 test {configs / 'a_tiny.py'} ckpt.pth --track --work-dir {run}"
    record = dict(
        format="mtmnv3.EvalResult",
        config=str(configs / "a_tiny.py"),
        checkpoint="ckpt.pth",
        command=command,
        metrics={"cls/top1": 0.75, "det/mAP": 0.5, "mot/MOTA": 0.6},
    )
    (run / "eval_result.json").write_text(json.dumps(record))
    out = tmp_path / "metafile.yml"
    argv = ["summary", "--update-metafile", "--configs-dir", configs, "--work-dirs", work, "--metafile", out]
    assert main(list(map(str, argv))) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = yaml.safe_load(out.read_text())
    models = {m["Name"]: m for m in data["Models"]}
    assert set(models) == {"a_tiny", "b_tiny"}
    a, b = models["a_tiny"], models["b_tiny"]
    assert a["Config"].endswith("configs/a_tiny.py")
    assert (
        a["Metadata"]["Parameters"] > 0 and a["Metadata"]["MACs"] > 0 and a["Metadata"]["Input Size"] == 160
    )
    assert a["Metadata"]["Parameters"] == b["Metadata"]["Parameters"]
    tasks = {r["Task"]: r for r in a["Results"]}
    assert tasks["Image Classification"]["Metrics"] == {"top1": 0.75}
    assert tasks["Multiple Object Tracking"]["Metrics"] == {"MOTA": 0.6}
    assert all(r["Command"] == command for r in a["Results"])
    assert b["Results"] == [] and "no evaluation output found" in b["Results Note"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_summary_bad_input(tmp_path, capsys):
    assert main(["summary", "--update-metafile", "--configs-dir", str(tmp_path / "none")]) == 2
    assert "configs folder not found" in capsys.readouterr().err
    assert main(["summary", "--variants", "nope"]) == 2
    assert "unknown variants" in capsys.readouterr().err
