"""``mtmnv3 scorecard`` on two trunks at a tiny budget: every column filled or saying why, and a rerun reuses it all."""

from __future__ import annotations

import json
import time

import pytest
from _helpers import CONFIG, ROOT
from test_sweep import sweep_options

from mtmnv3.cli import main
from mtmnv3.studies.scorecard import is_na, node_share_kind, pareto_front

pytest.importorskip("ray")

SUCCESSOR = ROOT / "configs" / "successors" / "mtmnv3_mobilevit_xxs_3task_synth.py"
#: Keys the scorecard sets itself (the budget) or that only the MobileNetV3 trunk takes.
NOT_PASSED = ("train_cfg.max_iters", "train_cfg.val_interval", "param_scheduler.", "model.trunk.")


def scorecard_options(data_root) -> list[str]:
    return [o for o in sweep_options(data_root) if not o.startswith(NOT_PASSED)]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _scorecard(work, data_root, *extra):
    argv = ["scorecard", str(CONFIG), str(SUCCESSOR), "--budget-iters", "2", "--work-dir", str(work)]
    argv += ["--eval-splits", "1", "--eval-sequences", "1", "--corruptions", "darkness", "--severities", "3"]
    argv += [
        "--runtimes",
        "onnxruntime",
        "openvino",
        "--calib-images",
        "2",
        "--rounds",
        "2",
        "--num-cpus",
        "2",
    ]
    return main([*argv, *extra, "--cfg-options", *scorecard_options(data_root)])


def test_two_trunks_fill_every_column_and_a_rerun_reuses_everything(tmp_path, capsys):
    work = tmp_path / "scorecard"
    assert _scorecard(work, tmp_path / "synth") == 0, capsys.readouterr().err
    data = json.loads((work / "scorecard.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert list(rows) == ["mobilenetv3_small", "mobilevit_xxs"]
    ref, vit = rows["mobilenetv3_small"], rows["mobilevit_xxs"]
    for row in rows.values():
        assert row["params"] > 0 and row["macs"] > 0
        for key in ("onnxruntime/fp32", "onnxruntime/int8"):
            assert isinstance(row["ms"][key], float) and row["ms"][key] > 0, (key, row["ms"][key])
        for key in ("openvino/fp32", "openvino/int8"):  # a file failing its parity check says so
            ms = row["ms"][key]
            assert (isinstance(ms, float) and ms > 0) or (is_na(ms) and "parity check failed" in ms), ms
        assert row["ms"]["executorch/fp32"] == "n/a: executorch not in --runtimes"
        for metric in ("cls/top1", "det/mAP_50", "mot/IDF1", "mot/HOTA"):
            assert 0.0 <= row["clean"][metric]["mean"] <= 1.0
        for task in ("cls", "det", "mot"):
            assert isinstance(row["mce"][task], float)
            assert isinstance(row["int8_drop"]["onnxruntime"][task], float)
            assert isinstance(row["int8_drop"]["openvino"], str) or isinstance(
                row["int8_drop"]["openvino"][task], float
            )
        for head in ("cls", "det", "emb"):
            assert isinstance(row["adv_drop"][head], float)
        assert is_na(row["shares"]["openvino"]) and is_na(row["int8_speedup"]["executorch"])
    assert ref["ratio"]["onnxruntime/fp32"] == 1.0 and ref["mce"]["det"] == pytest.approx(1.0)
    # MobileNetV3 has SE and hard-swish, no attention; MobileViT has attention and no SE.
    assert ref["shares"]["onnxruntime"]["se"] > 0 and ref["shares"]["onnxruntime"]["hard_swish"] > 0
    assert ref["shares"]["onnxruntime"]["attention"] == 0
    assert vit["shares"]["onnxruntime"]["attention"] > 0 and vit["shares"]["onnxruntime"]["se"] == 0
    page = (work / "scorecard.md").read_text()
    assert "| mobilevit_xxs |" in page and "iterations per trial" in page and "darkness" in page
    assert "CPU cores" in page and "wall time" in page
    for plot in ("pareto_accuracy.png", "pareto_robustness.png"):
        assert (work / plot).stat().st_size > 1000 and f"]({plot})" in page
    ckpt = work / "trials" / CONFIG.stem / "seed0" / "iter_2.pth"
    mtime = ckpt.stat().st_mtime_ns
    capsys.readouterr()

    t0 = time.perf_counter()
    assert _scorecard(work, tmp_path / "synth") == 0
    assert time.perf_counter() - t0 < 30  # every trial and stage reused
    assert ckpt.stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert out.count("reused") == 2 and " ..." not in out  # no stage ran again
    assert json.loads((work / "scorecard.json").read_text())["rows"] == data["rows"]


def test_a_trunk_whose_training_fails_gets_a_row_that_says_why(tmp_path, capsys):
    bad = tmp_path / "bad_trunk_3task.py"
    bad.write_text(f'_base_ = ["{CONFIG}"]\nmodel = dict(trunk=dict(_delete_=True, type="NoSuchTrunk"))\n')
    work = tmp_path / "scorecard"
    argv = ["scorecard", str(bad), "--budget-iters", "2", "--work-dir", str(work), "--num-cpus", "2"]
    assert main([*argv, "--cfg-options", *scorecard_options(tmp_path / "synth")]) == 1
    assert "train.log" in capsys.readouterr().err
    [row] = json.loads((work / "scorecard.json").read_text())["rows"]
    assert (
        row["ms"]["onnxruntime/fp32"].startswith("n/a: training failed") and "train.log" in row["mce"]["det"]
    )
    [line] = [line for line in (work / "scorecard.md").read_text().splitlines() if line.startswith("| bad")]
    cells = line.split(" | ")
    assert len(cells) == 18 and all(cell.strip(" |") for cell in cells), cells


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget-iters", "0"], "--budget-iters must be >= 1"),
        (["--budget-iters", "5", "--corruptions", "fog"], "unknown corruption(s) ['fog']"),
        (["--budget-iters", "5", "--eval-splits", "1", "1"], "--eval-splits must be distinct"),
        (
            ["--budget-iters", "5", "--cfg-options", "train_cfg.max_iters=3"],
            "the training length is --budget-iters",
        ),
    ],
)
def test_bad_input_is_refused_before_training(tmp_path, argv, message, capsys):
    assert main(["scorecard", str(CONFIG), "--work-dir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_node_kinds_and_the_pareto_front():
    assert (
        node_share_kind("/stages.2.1/transformer/transformer.0/attn/Softmax", "Softmax", "other")
        == "attention"
    )
    assert node_share_kind("/blocks.3.0/se/ReduceMean", "ReduceMean", "other") == "se"
    assert node_share_kind("/blocks.1/block/block.1/Mul", "Mul", "se_multiply") == "se"
    assert node_share_kind("/blocks.2/act/HardSwish", "HardSwish", "hard_swish") == "hard_swish"
    assert node_share_kind("/blocks.2/conv/Conv", "Conv", "conv") is None
    # (ms, accuracy): the slower, less accurate point is dominated.
    assert pareto_front([(1.0, 0.5), (2.0, 0.7), (3.0, 0.6), (0.5, 0.4)]) == [3, 0, 1]
    assert pareto_front([(1.0, 0.9), (2.0, 0.8)], higher_is_better=False) == [0, 1]
