"""Task-loss balancing methods: toy problems with known answers, and the model's train_step."""

import io
import json
import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.structures import InstanceData
from torch import nn

from mtmnv3.core.registry import LOSS_WEIGHTINGS
from mtmnv3.core.structures import MultiTaskDataSample
from mtmnv3.models import MultiTaskPerceptor
from mtmnv3.models.weighting import (
    DWA,
    FAMO,
    EqualWeighting,
    GradNorm,
    PCGrad,
    StaticWeighting,
    UncertaintyWeighting,
    build_loss_weighting,
    cagrad_coefficients,
    floor_weights,
    project_conflicting,
    rank_mean_losses,
)
from mtmnv3.models.weighting.plot import plot_weights

METHODS = [
    "EqualWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "DWA",
    "GradNorm",
    "PCGrad",
    "FAMO",
    "CAGrad",
]
TASKS = ("a", "b")
FLOOR = 1e-3


def sgd(params, lr=0.0, **kwargs):
    return OptimWrapper(torch.optim.SGD(params, lr=lr), **kwargs)


class ToyTwoTask(nn.Module):
    """A shared linear layer and one linear head per task."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})
        self.x = torch.randn(32, 4, generator=g)
        self.y = {t: torch.randn(32, 1, generator=g) for t in TASKS}

    def losses(self, scales):
        h = torch.tanh(self.shared(self.x))
        return {t: s * ((self.heads[t](h) - self.y[t]) ** 2).mean() for t, s in zip(TASKS, scales)}


# ---- builder and arguments -----------------------------------------------------------------


def test_registered_methods_and_unknown_name():
    assert set(METHODS) <= set(LOSS_WEIGHTINGS.module_dict)
    with pytest.raises(KeyError, match=r"unknown loss weighting 'Nope'; registered: \[.*'FAMO'.*\]"):
        build_loss_weighting(dict(type="Nope"), TASKS)
    with pytest.raises(TypeError, match="config dict with a 'type'"):
        build_loss_weighting(dict(alpha=1.0), TASKS)
    assert isinstance(build_loss_weighting(None, TASKS), EqualWeighting)


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match=r"weights name \['c'\] that are not tasks"):
        StaticWeighting(TASKS, weights=dict(c=1.0))
    with pytest.raises(ValueError, match=r"finite and >= 0, got \{'a': -1.0\}"):
        StaticWeighting(TASKS, weights=dict(a=-1.0))
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        DWA(TASKS, temperature=0)
    with pytest.raises(ValueError, match="distinct strings"):
        EqualWeighting(("a", "a"))
    with pytest.raises(ValueError, match=r"losses are for tasks \['a'\], expected \['a', 'b'\]"):
        EqualWeighting(TASKS)({"a": torch.tensor(1.0)})
    with pytest.raises(ValueError, match="needs the shared parameters"):
        PCGrad(TASKS).update(
            {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}, sgd([nn.Parameter(torch.ones(1))])
        )


def test_static_weights_and_floor():
    w = StaticWeighting(TASKS, weights=dict(b=3.0))
    assert w({"a": torch.tensor(2.0), "b": torch.tensor(1.0)}).item() == 5.0
    assert w.weights == {"a": 1.0, "b": 3.0}
    floored = floor_weights(torch.tensor([1e-9, 1.0, 3.0]), 0.1)
    torch.testing.assert_close(floored.sum(), torch.tensor(3.0))
    assert floored.min() >= 0.1 - 1e-6
    torch.testing.assert_close(floored[2] / floored[1], torch.tensor(3.0))  # ratios above the floor kept


# ---- known answers on toy problems -------------------------------------------------------------


def test_uncertainty_converges_to_inverse_variance_weights():
    torch.manual_seed(0)
    x = torch.randn(4000, 1)
    sigmas = (0.5, 2.0)
    y = [2.0 * x + sigmas[0] * torch.randn_like(x), -1.0 * x + sigmas[1] * torch.randn_like(x)]
    slopes = nn.Parameter(torch.zeros(2))
    weighting = UncertaintyWeighting(("r1", "r2"))
    opt = torch.optim.Adam([slopes, *weighting.parameters()], lr=0.03)
    for _ in range(600):
        losses = {f"r{i + 1}": ((slopes[i] * x - y[i]) ** 2).mean() for i in range(2)}
        opt.zero_grad()
        weighting(losses).backward()
        opt.step()
    # exp(-s_i) -> 1 / L_i, and L_i -> the residual variance sigma_i^2
    for i, name in enumerate(("r1", "r2")):
        residual_var = ((2.0, -1.0)[i] * x - y[i]).pow(2).mean().item()
        assert weighting.weights[name] == pytest.approx(1.0 / residual_var, rel=0.1)
        assert weighting.weights[name] == pytest.approx(1.0 / sigmas[i] ** 2, rel=0.15)


def test_pcgrad_removes_the_conflicting_component():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # dot = -1: conflict
    out = project_conflicting(grads)
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.5]))
    assert abs(out[0] @ grads[1]) < 1e-6 and abs(out[1] @ grads[0]) < 1e-6
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(project_conflicting(agreeing), agreeing)
    # through update(): the shared parameter gets the sum of the projected gradients
    theta = nn.Parameter(torch.zeros(2))
    losses = {"a": theta @ grads[0], "b": theta @ grads[1]}
    PCGrad(TASKS).update(losses, sgd([theta], lr=1.0), shared_params=[theta])
    torch.testing.assert_close(theta.detach(), -(out.sum(0)))


def test_gradient_methods_honour_accumulation():
    theta = nn.Parameter(torch.zeros(2))
    wrapper = sgd([theta], lr=1.0, accumulative_counts=2)
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    method = PCGrad(TASKS)
    method.update({"a": theta @ grads[0], "b": theta @ grads[1]}, wrapper, shared_params=[theta])
    assert theta.detach().abs().sum() == 0  # no step before the second micro-batch
    method.update({"a": theta @ grads[0], "b": theta @ grads[1]}, wrapper, shared_params=[theta])
    torch.testing.assert_close(theta.detach(), -(project_conflicting(grads).sum(0)))


def test_dwa_weights_follow_the_loss_rate_ratio():
    dwa = DWA(TASKS, temperature=2.0, interval=2)
    seq = [(1.0, 1.0), (1.0, 1.0), (0.5, 0.9), (0.5, 0.9), (0.4, 0.9)]
    seen = []
    for step, (a, b) in enumerate(seq):
        total = dwa({"a": torch.tensor(a), "b": torch.tensor(b)}, step=step)
        seen.append(dwa.weights)
    assert all(w == {"a": 1.0, "b": 1.0} for w in seen[:4])  # two intervals needed
    # r = (0.5 / 1, 0.9 / 1); w_i = 2 exp(r_i / 2) / sum_j exp(r_j / 2)
    ea, eb = math.exp(0.25), math.exp(0.45)
    expected = (2 * ea / (ea + eb), 2 * eb / (ea + eb))
    assert seen[4]["a"] == pytest.approx(expected[0], rel=1e-6)
    assert seen[4]["b"] == pytest.approx(expected[1], rel=1e-6)
    assert total.item() == pytest.approx(expected[0] * 0.4 + expected[1] * 0.9, rel=1e-6)


def test_gradnorm_equalises_gradient_norms():
    # L_a = |theta - t_a|^2 / 2 and L_b = 5 |theta - t_b|^2 / 2 at theta = 0: norms 1 and 5
    theta = nn.Parameter(torch.zeros(3))
    targets = torch.eye(3)[:2]
    method = GradNorm(TASKS, alpha=0.0, lr=0.01)
    wrapper = sgd([theta], lr=0.0)
    ratios = []
    for _ in range(300):
        losses = {"a": 0.5 * (theta - targets[0]).pow(2).sum(), "b": 2.5 * (theta - targets[1]).pow(2).sum()}
        method.update(losses, wrapper, shared_params=[theta])
        w = method.loss_weights.detach()
        ratios.append((w[0] * 1.0 / (w[1] * 5.0)).item())
    assert sum(ratios[-50:]) / 50 == pytest.approx(1.0, rel=0.1)
    assert method.loss_weights.sum().item() == pytest.approx(2.0, rel=1e-5)


def test_famo_moves_weight_to_the_slower_improving_task():
    famo = FAMO(TASKS)
    for t in range(40):  # task a improves 10 % per step, task b 1 %
        famo({"a": torch.tensor(0.9**t), "b": torch.tensor(0.99**t)})
    assert famo.weights["b"] > 1.2 > 0.8 > famo.weights["a"]
    assert sum(famo.weights.values()) == pytest.approx(2.0, rel=1e-5)
    assert famo.logits.requires_grad is False and famo.logits.abs().sum() > 0


def test_famo_gradient_is_a_normalised_log_loss_gradient():
    famo = FAMO(TASKS)
    la, lb = torch.tensor(2.0, requires_grad=True), torch.tensor(1e6, requires_grad=True)
    famo({"a": la, "b": lb}).backward()
    # weights z_i / L_i, normalised to sum to the number of tasks: scale-free
    coeff = torch.tensor([1 / 2.0, 1 / 1e6])
    torch.testing.assert_close(torch.stack([la.grad, lb.grad]), 2 * coeff / coeff.sum())


def test_cagrad_improves_the_worst_task():
    grads = torch.tensor([[1.0, 0.0], [-2.0, 0.2]])  # their sum makes task a worse
    torch.testing.assert_close(cagrad_coefficients(grads, c=0.0), torch.ones(2))
    coeffs = cagrad_coefficients(grads, c=0.5)
    d, plain = coeffs @ grads, grads.sum(0)
    worst = (grads @ d / d.norm()).min()
    assert worst > (grads @ plain / plain.norm()).min()


@pytest.mark.parametrize("name", METHODS)
def test_losses_a_million_apart_stay_finite_and_balanced(name):
    torch.manual_seed(0)
    model = ToyTwoTask()
    method = build_loss_weighting(dict(type=name), TASKS)
    params = list(model.parameters()) + list(method.parameters())
    wrapper = OptimWrapper(torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3))
    for step in range(12):
        losses = model.losses(scales=(1.0, 1e6))
        total = method.update(
            losses,
            wrapper,
            shared_params=list(model.shared.parameters()),
            task_params=list(model.heads.parameters()),
            step=step,
        )
        assert torch.isfinite(total)
        weights = torch.tensor(list(method.weights.values()))
        assert torch.isfinite(weights).all() and weights.min() >= FLOOR, (step, method.weights)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", METHODS)
def test_absent_task_losses_do_not_derail_the_weights(name):
    """A task without labels in a batch has loss exactly 0 (the heads' convention)."""
    torch.manual_seed(0)
    model = ToyTwoTask()
    method = build_loss_weighting(dict(type=name, **({"interval": 2} if name == "DWA" else {})), TASKS)
    params = list(model.parameters()) + list(method.parameters())
    wrapper = OptimWrapper(torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-2))
    for step in range(12):
        losses = model.losses(scales=(1.0, float(step % 3 != 0)))
        total = method.update(
            losses,
            wrapper,
            shared_params=list(model.shared.parameters()),
            task_params=list(model.heads.parameters()),
            step=step,
        )
        weights = torch.tensor(list(method.weights.values()))
        assert torch.isfinite(total) and torch.isfinite(weights).all(), (step, method.weights)
        assert weights.min() >= FLOOR and weights.max() < 10, (step, method.weights)


# ---- the model ----------------------------------------------------------------------------------

SIZE = 64


def tiny_perceptor(**overrides):
    cfg = dict(
        trunk=dict(type="MobileNetV3Trunk", arch="small", width_mult=0.5),
        heads=dict(
            cls=dict(type="ClsHead", num_classes=5, hidden_channels=16),
            det=dict(type="CenterDetHead", num_classes=4, feat_channels=16),
            emb=dict(type="EmbeddingHead", num_ids=8, embed_dim=8, feat_channels=16),
        ),
        neck=dict(type="FPNLite", out_channels=16),
    )
    cfg.update(overrides)
    return MultiTaskPerceptor(**cfg)


def tiny_batch():
    samples = []
    for label in (1, 3):
        s = MultiTaskDataSample(
            metainfo=dict(
                tasks=("cls", "det", "track"),
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                scale_factor=(1.0, 1.0),
            )
        )
        gi = InstanceData()
        gi.bboxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [32.0, 20.0, 60.0, 58.0]])
        gi.labels = torch.tensor([1, 2])
        gi.instance_ids = torch.tensor([3, 5])
        gi.ignore = torch.tensor([False, False])
        gi.visibility = torch.ones(2)
        s.gt_instances = gi
        s.gt_label = label
        samples.append(s)
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randint(0, 255, (3, SIZE, SIZE), dtype=torch.uint8, generator=g) for _ in samples]
    return dict(inputs=inputs, data_samples=samples)


def test_default_is_equal_weighting_with_task_weights():
    model = tiny_perceptor(task_weights=dict(det=2.0))
    assert isinstance(model.loss_weighting, EqualWeighting)
    assert not any(k.startswith("loss_weighting") for k in model.state_dict())  # old checkpoints load
    losses = {
        "cls": {"loss_cls": torch.tensor(1.0)},
        "det": {"loss_det_wh": torch.tensor(3.0)},
        "emb": {"loss_emb": torch.tensor(0.5)},
    }
    total, log_vars = model.combine_losses(losses)
    assert total.item() == 7.5 and log_vars["loss"].item() == 7.5
    with pytest.raises(KeyError, match="unknown loss weighting 'Nope'"):
        tiny_perceptor(loss_weighting=dict(type="Nope"))


def test_learnable_weights_are_in_mmengines_optimiser():
    model = tiny_perceptor(loss_weighting=dict(type="UncertaintyWeighting"))
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-3)))
    in_optimizer = {id(p) for group in wrapper.optimizer.param_groups for p in group["params"]}
    assert id(model.loss_weighting.log_vars) in in_optimizer


@pytest.mark.parametrize("name", METHODS)
def test_train_step_per_method(name):
    torch.manual_seed(0)
    model = tiny_perceptor(loss_weighting=dict(type=name))
    wrapper = build_optim_wrapper(
        model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2), clip_grad=dict(max_norm=10.0))
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for _ in range(2):
        log_vars = model.train_step(tiny_batch(), wrapper)
    assert torch.isfinite(log_vars["loss"])
    assert {"weight_cls", "weight_det", "weight_emb"} <= set(log_vars)
    assert all(torch.isfinite(log_vars[f"weight_{t}"]) for t in ("cls", "det", "emb"))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("trunk.") for n in changed) and any(n.startswith("heads.det") for n in changed)
    # methods with their own optimiser (GradNorm, FAMO) or trained by the model's (uncertainty) learn
    for learned in ("loss_weighting.log_vars", "loss_weighting.loss_weights", "loss_weighting.logits"):
        if learned in before:
            assert learned in changed, f"{learned} did not change"


def test_internal_optimiser_state_round_trips():
    for cls in (FAMO, GradNorm):
        method = cls(TASKS)
        theta = nn.Parameter(torch.tensor([0.3, -0.2]))
        for t in range(3):
            losses = {"a": (theta - 1).pow(2).sum() * 0.9**t, "b": (theta + 1).pow(2).sum()}
            method.update(losses, sgd([theta], lr=0.1), shared_params=[theta])
        buffer = io.BytesIO()
        torch.save(method.state_dict(), buffer)
        buffer.seek(0)
        fresh = cls(TASKS)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        torch.testing.assert_close(fresh.state_dict(), method.state_dict())
        assert fresh.state_dict().keys() == method.state_dict().keys()
        if cls is FAMO:
            assert (
                float(fresh.adam_steps) == float(method.adam_steps) == 2
            )  # the first call has no loss change yet
        else:
            assert (
                fresh._optimizer.state_dict()["state"][0]["step"]
                == method._optimizer.state_dict()["state"][0]["step"]
            )


def test_famo_logits_follow_torch_adam_and_keep_tensor_state_only():
    """FAMO steps its logits with torch.optim.Adam's arithmetic, but keeps the state
    in buffers (mmengine broadcasts every state-dict entry as a tensor under DDP)."""
    famo = FAMO(TASKS, lr=0.05, gamma=0.01)
    ref = nn.Parameter(torch.zeros(2))
    adam = torch.optim.Adam([ref], lr=0.05, weight_decay=0.01)
    torch.manual_seed(0)
    for _ in range(25):
        grad = torch.randn(2)
        famo._adam_step(grad)
        ref.grad = grad.clone()
        adam.step()
        torch.testing.assert_close(famo.logits.detach(), ref.detach())
    assert all(torch.is_tensor(v) for v in famo.state_dict().values())


def test_famo_checkpoints_with_the_older_adam_extra_state_load():
    """Older checkpoints kept a torch.optim.Adam state dict as ``_extra_state``."""
    from mtmnv3.engine import load_model_checkpoint

    model = tiny_perceptor(loss_weighting=dict(type="FAMO"))
    famo = model.loss_weighting
    for t in range(6):
        famo({name: torch.tensor(0.9 ** (t * (i + 1))) for i, name in enumerate(famo.task_names)})
    state = famo.state_dict()
    legacy = {k: v for k, v in state.items() if k not in ("adam_steps", "exp_avg", "exp_avg_sq")}
    legacy["_extra_state"] = {
        "optimizer": {
            "state": {
                0: {
                    "step": state["adam_steps"].float(),
                    "exp_avg": state["exp_avg"],
                    "exp_avg_sq": state["exp_avg_sq"],
                }
            },
            "param_groups": [
                {"lr": 0.025, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-3, "params": [0]}
            ],
        }
    }
    fresh = FAMO(famo.task_names)
    fresh.load_state_dict(dict(legacy))
    torch.testing.assert_close(fresh.state_dict(), state)
    # the strict checkpoint loader of the tools compares key sets after the same conversion
    full = {k: v for k, v in model.state_dict().items() if not k.startswith("loss_weighting.")}
    full.update({f"loss_weighting.{k}": v for k, v in legacy.items()})
    path = Path(tempfile.mkdtemp()) / "legacy.pth"
    torch.save({"state_dict": full}, path)
    model = tiny_perceptor(loss_weighting=dict(type="FAMO"))
    load_model_checkpoint(model, path)
    torch.testing.assert_close(model.loss_weighting.state_dict(), state)


def test_non_finite_loss_in_train_step_names_the_task(monkeypatch):
    model = tiny_perceptor(loss_weighting=dict(type="PCGrad"))
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1)))
    nan = {
        "cls": {"loss_cls": torch.tensor(1.0)},
        "det": {"loss_det_heatmap": torch.tensor(float("inf"))},
        "emb": {"loss_emb": torch.tensor(1.0)},
    }
    monkeypatch.setattr(model, "task_losses", lambda inputs, samples: nan)
    with pytest.raises(FloatingPointError, match=r"loss_det_heatmap=inf in task 'det' at iteration"):
        model.train_step(tiny_batch(), wrapper)


def test_plot_weights(tmp_path):
    run = tmp_path / "20260101_000000" / "vis_data"
    run.mkdir(parents=True)
    lines = [
        dict(
            lr=1e-3,
            loss=3.0 - i * 0.1,
            loss_cls=1.0 - i * 0.05,
            loss_det_wh=2.0,
            weight_cls=1.0 + 0.01 * i,
            weight_det=1.0 - 0.01 * i,
            iter=25 * (i + 1),
            step=25 * (i + 1),
        )
        for i in range(5)
    ]
    (run / "scalars.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    out = plot_weights(tmp_path, tmp_path / "weights.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (run / "scalars.json").write_text(json.dumps(dict(loss=1.0, iter=1)) + "\n")
    with pytest.raises(ValueError, match="no 'weight_<task>' scalars"):
        plot_weights(run / "scalars.json", tmp_path / "none.png")


def test_distributed_path_applies_weighting():
    """mmengine's DDP wrapper calls forward(mode='loss') then parse_losses, never train_step."""
    model = tiny_perceptor(task_weights=dict(det=2.0), loss_weighting=dict(type="UncertaintyWeighting"))
    data = model.data_preprocessor(tiny_batch(), True)
    flat = model(**data, mode="loss")
    total, log_vars = model.parse_losses(flat)
    groups = {t: {k: flat[k] for k in keys} for t, keys in model._loss_keys.items()}
    expected, _ = model.combine_losses(groups)
    assert torch.allclose(total, expected)
    assert {"weight_cls", "weight_det", "weight_emb"} <= set(log_vars)
    plain_sum = sum(flat.values())
    assert not torch.allclose(total, plain_sum)  # not mmengine's default sum of loss* keys
    with pytest.raises(ValueError, match="do not come from this model"):
        model.parse_losses({"loss_other": torch.tensor(1.0)})
    grad_model = tiny_perceptor(loss_weighting=dict(type="PCGrad"))
    data = grad_model.data_preprocessor(tiny_batch(), True)
    with pytest.raises(RuntimeError, match="single-process training only"):
        grad_model.parse_losses(grad_model(**data, mode="loss"))


def test_checkpoint_with_method_state_loads_through_the_tools(tmp_path):
    """FAMO/GradNorm keep optimiser state as extra (non-tensor) state; tools/test.py's loader must accept it."""
    from mtmnv3.core.fileio import atomic_torch_save
    from mtmnv3.engine import load_model_checkpoint

    model = tiny_perceptor(loss_weighting=dict(type="FAMO"))
    wrapper = build_optim_wrapper(model, dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-2)))
    model.train_step(tiny_batch(), wrapper)
    atomic_torch_save({"state_dict": model.state_dict()}, tmp_path / "famo.pth")
    fresh = tiny_perceptor(loss_weighting=dict(type="FAMO"))
    load_model_checkpoint(fresh, tmp_path / "famo.pth")
    assert torch.equal(fresh.loss_weighting.logits, model.loss_weighting.logits)


def _two_ranks(rank: int, store: str, out: str) -> None:
    """One rank of a 2-process gloo group: different local losses, a task absent on one rank."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        local = torch.tensor([1.0, 0.0, 3.0]) if rank == 0 else torch.tensor([3.0, 0.0, 0.0])
        means = rank_mean_losses(local)
        weightings = {"FAMO": FAMO(["a", "b", "c"]), "DWA": DWA(["a", "b", "c"], interval=1)}
        for step in range(6):
            scale = torch.tensor([0.9, 1.0, 0.7]) ** (
                step * (1 + rank)
            )  # tasks and ranks improve at different rates
            for w in weightings.values():
                w(dict(zip("abc", (2.0 + rank) * scale)), step)
        torch.save(
            {"means": means, **{n: w.current_weights.clone() for n, w in weightings.items()}},
            f"{out}{rank}.pt",
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_rank_mean_losses_keep_every_ranks_weights_equal(tmp_path):
    """Stateful methods update from losses averaged over the ranks that have each task,
    so ranks with different batches keep identical task weights."""
    x = torch.tensor([1.0, 2.0])
    assert rank_mean_losses(x) is x  # one process: unchanged
    torch.multiprocessing.spawn(_two_ranks, args=(str(tmp_path / "store"), str(tmp_path / "rank")), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["means"], torch.tensor([2.0, 0.0, 3.0])) and torch.equal(r1["means"], r0["means"])
    for name in ("FAMO", "DWA"):
        assert torch.equal(r0[name], r1[name]), name
        assert not torch.allclose(r0[name], torch.ones(3)), name  # the weights did move
