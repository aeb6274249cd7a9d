"""ModelEMAHook: the average's arithmetic, evaluation with the average, and
checkpoints that deploy the average yet resume the trained weights."""

from types import SimpleNamespace

import pytest
import torch
from _helpers import CONFIG, run_tool, tiny_options
from mmengine.config import DictAction
from torch import nn

from mtmnv3.engine import ModelEMAHook, allow_mmengine_checkpoint_globals, build_runner, load_config
from mtmnv3.engine.ema import RAW_STATE_KEY, ema_decay
from mtmnv3.models.weighting import FAMO


def test_ema_decay_warms_up_then_caps():
    assert ema_decay(0.002, 1, warmup=True) == pytest.approx(2 / 11)
    assert ema_decay(0.002, 100, warmup=True) == pytest.approx(101 / 110)
    assert ema_decay(0.002, 10**6, warmup=True) == pytest.approx(0.998)
    assert ema_decay(0.002, 1, warmup=False) == pytest.approx(0.998)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(momentum=0.0), "momentum"), (dict(momentum=1.0), "momentum"), (dict(begin_iter=-1), "begin_iter")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelEMAHook(**kwargs)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)
        self.loss_weighting = FAMO(["a", "b"])  # training state with extra (non-tensor) state


def _runner(model, it=0):
    """The two attributes of mmengine's Runner the hook reads."""
    return SimpleNamespace(model=model, iter=it)


def test_average_follows_the_formula_and_skips_training_state():
    torch.manual_seed(0)
    net = _Net()
    hook = ModelEMAHook(momentum=0.1, warmup=False)
    runner = _runner(net)
    values = []
    for step in range(5):
        with torch.no_grad():
            net.fc.weight.fill_(float(step))
            net.bn.running_mean.fill_(10.0 * step)
            net.loss_weighting.logits.fill_(float(step))
        runner.iter = step
        hook.after_train_iter(runner, step)
        values.append(float(step))
    expected = values[0]  # the average starts as a copy
    for v in values[1:]:
        expected = 0.9 * expected + 0.1 * v
    assert torch.allclose(hook.ema["fc.weight"], torch.full((2, 3), expected))
    assert torch.allclose(hook.ema["bn.running_mean"], torch.full((2,), 10 * expected))
    assert "bn.num_batches_tracked" not in hook.ema  # integer buffers stay the model's
    assert not any(k.startswith("loss_weighting.") for k in hook.ema)
    assert hook.updates == 5


def test_begin_iter_delays_the_average():
    net = _Net()
    hook = ModelEMAHook(begin_iter=3)
    for step in range(3):
        hook.after_train_iter(_runner(net, step), step)
    assert hook.ema is None and hook.updates == 0
    hook.after_train_iter(_runner(net, 3), 3)
    assert hook.updates == 1


def test_evaluation_swaps_the_average_in_and_back_out():
    net = _Net()
    hook = ModelEMAHook(momentum=0.5, warmup=False)
    runner = _runner(net)
    hook.before_val_epoch(runner)  # no average yet: nothing to swap
    assert not hook._swapped
    hook.after_train_iter(runner, 0)
    with torch.no_grad():
        net.fc.weight.add_(1.0)
    trained = net.fc.weight.detach().clone()
    average = hook.ema["fc.weight"].clone()
    for before, after in (
        (hook.before_val_epoch, hook.after_val_epoch),
        (hook.before_test_epoch, hook.after_test_epoch),
    ):
        before(runner)
        assert torch.equal(net.fc.weight, average)
        after(runner, {})
        assert torch.equal(net.fc.weight, trained) and torch.equal(hook.ema["fc.weight"], average)


def test_checkpoint_holds_the_average_and_the_trained_weights():
    net = _Net()
    hook = ModelEMAHook(momentum=0.5, warmup=False)
    runner = _runner(net)
    hook.after_train_iter(runner, 0)
    with torch.no_grad():
        net.fc.weight.add_(2.0)
    hook.after_train_iter(runner, 1)
    ckpt = {"state_dict": dict(net.state_dict()), "meta": {}}
    hook.before_save_checkpoint(runner, ckpt)
    assert torch.equal(ckpt["state_dict"]["fc.weight"], hook.ema["fc.weight"])
    assert torch.equal(ckpt[RAW_STATE_KEY]["fc.weight"], net.fc.weight)
    assert ckpt["meta"]["ema"] == {"momentum": 0.5, "updates": 2}
    # resuming restores both; loading for evaluation or fine-tuning keeps the average
    fresh_hook, loaded = (
        ModelEMAHook(momentum=0.5, warmup=False),
        {k: dict(v) if isinstance(v, dict) else v for k, v in ckpt.items()},
    )
    fresh_hook.after_load_checkpoint(SimpleNamespace(_resume=False), loaded)
    assert fresh_hook.ema is None and torch.equal(loaded["state_dict"]["fc.weight"], hook.ema["fc.weight"])
    fresh_hook.after_load_checkpoint(SimpleNamespace(_resume=True), loaded)
    assert torch.equal(loaded["state_dict"]["fc.weight"], net.fc.weight)
    assert torch.equal(fresh_hook.ema["fc.weight"], hook.ema["fc.weight"]) and fresh_hook.updates == 2


def _cfg_options(strings):
    return {k: DictAction._parse_iterable(v) for k, v in (s.split("=", 1) for s in strings)}


def test_real_runner_saves_the_average_and_resumes_the_trained_weights(tmp_path):
    """The default config (FAMO) plus the hook trains through mmengine's Runner;
    a resume puts the trained weights into the model and the average into the hook."""
    data_root, work = tmp_path / "data", tmp_path / "work"
    config = tmp_path / "ema.py"
    config.write_text(
        f"_base_ = [{str(CONFIG)!r}]\n"
        "custom_hooks = [dict(type='EvalProgressHook'), dict(type='ModelEMAHook', momentum=0.002)]\n"
    )
    opts = tiny_options(data_root, max_iters=4, ckpt_interval=2, batch=2)
    r = run_tool("train.py", config, "--work-dir", work, "--cfg-options", *opts)
    assert r.returncode == 0, r.stderr[-3000:]
    allow_mmengine_checkpoint_globals()
    ckpt = torch.load(work / "iter_2.pth", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["ema"]["updates"] == 2
    raw, avg = ckpt[RAW_STATE_KEY], ckpt["state_dict"]
    assert set(raw) <= set(avg) and any(not torch.equal(raw[k], avg[k]) for k in raw)
    assert not any(k.startswith("loss_weighting.") for k in raw)

    cfg = load_config(config, _cfg_options(opts))
    cfg.work_dir, cfg.resume, cfg.load_from = str(tmp_path / "resumed"), True, str(work / "iter_2.pth")
    runner = build_runner(cfg)
    runner.load_or_resume()
    hook = next(h for h in runner.hooks if isinstance(h, ModelEMAHook))
    state = runner.model.state_dict()
    for k in raw:
        assert torch.equal(state[k], raw[k]), k
        assert torch.equal(hook.ema[k], avg[k]), k
    assert hook.updates == 2 and runner.iter == 2
