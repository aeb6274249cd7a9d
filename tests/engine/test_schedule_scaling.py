"""--cfg-options train_cfg.max_iters=N gives a whole schedule of N iterations (warm-up and decay scaled)."""

import pytest
from _helpers import CONFIG

from mtmnv3.engine import load_config, scale_schedule


def test_max_iters_alone_scales_warmup_decay_and_validation():
    base = load_config(CONFIG)
    n_file = base.train_cfg.max_iters
    cfg = load_config(CONFIG, {"train_cfg.max_iters": n_file // 4})
    warm, cosine = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == cfg.train_cfg.val_interval == n_file // 4
    assert cosine.end == n_file // 4  # the decay ends with the run, not 3/4 of the way past it
    assert warm.end == round(base.param_scheduler[0].end / 4)
    assert cosine.begin == warm.end


def test_explicit_scheduler_options_win():
    cfg = load_config(
        CONFIG, {"train_cfg.max_iters": 20, "param_scheduler.0.end": 2, "param_scheduler.1.begin": 2}
    )
    assert (cfg.param_scheduler[0].end, cfg.param_scheduler[1].begin, cfg.param_scheduler[1].end) == (
        2,
        2,
        20,
    )


def test_same_length_changes_nothing_and_bad_length_is_refused():
    base = load_config(CONFIG)
    same = load_config(CONFIG, {"train_cfg.max_iters": base.train_cfg.max_iters})
    assert same.param_scheduler == base.param_scheduler
    with pytest.raises(ValueError, match="max_iters must be >= 1"):
        scale_schedule(load_config(CONFIG), 0)


def test_a_short_run_still_warms_up_to_the_base_rate():
    """Scaled to 30 iterations the warm-up keeps two steps and the decay starts after it: a one-step
    LinearLR never reaches its end factor, so the run would stay at 1 % of the rate."""
    import torch
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = load_config(CONFIG, {"train_cfg.max_iters": 30})
    warm, cosine = cfg.param_scheduler
    assert warm.end >= 2 and cosine.begin == warm.end and cosine.end == 30
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.optim_wrapper.optimizer.lr)
    schedulers = [PARAM_SCHEDULERS.build({**s, "optimizer": opt}) for s in cfg.param_scheduler]
    rates = []
    for _ in range(30):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        for s in schedulers:
            s.step()
    assert max(rates) == pytest.approx(cfg.optim_wrapper.optimizer.lr, rel=0.01)
    for n in (1, 2, 3):  # runs shorter than the warm-up still give valid schedulers
        short = load_config(CONFIG, {"train_cfg.max_iters": n})
        assert all(0 <= s.begin < s.end <= n for s in short.param_scheduler)
