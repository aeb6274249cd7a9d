"""Run-time compute budget: cost estimates, frame plans, policies, scheduler, log."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest

from mtmnv3.core.registry import BUDGET_POLICIES
from mtmnv3.runtime.budget import (
    AdaptiveDeadlinePolicy,
    BudgetLog,
    BudgetScheduler,
    CostEstimator,
    FixedIntervalPolicy,
    FramePlan,
    FrameRecord,
    GreedyUtilityPolicy,
    ModelLayout,
    SchedulerState,
    SyntheticCostModel,
    simulate,
)

LAYOUT = ModelLayout(5, {"cls": 5, "det": 4, "emb": 4})
RESOLUTIONS = (320, 256, 192)
BUDGET_MS = 25.0
POLICIES = (FixedIntervalPolicy, GreedyUtilityPolicy, AdaptiveDeadlinePolicy)


def cost_model(jitter: float = 0.05, seed: int = 1) -> SyntheticCostModel:
    """Full keyframe with classification at 320: about 20 ms; at 192: about 8 ms."""
    return SyntheticCostModel.scaled(
        LAYOUT,
        RESOLUTIONS,
        [2.0, 3.0, 3.0, 3.0, 2.0],
        {"cls": 0.5, "det": 3.0, "emb": 2.0},
        320,
        jitter=jitter,
        seed=seed,
    )


def step_load(frame: int) -> float:
    """Background load doubles every cost halfway through a 600-frame run."""
    return 1.0 if frame < 300 else 2.0


# ---- cost estimator --------------------------------------------------------------------------------
def test_estimator_converges_and_tracks_a_step_change():
    rng = random.Random(0)
    true = {"stage0@320": 4.0, "det@320": 2.0, "track": 1.0}
    est = CostEstimator({u: 2 * ms for u, ms in true.items()})  # a prior that is 2x off
    plan_units = list(true)

    def feed(n: int, scale: float) -> None:
        for _ in range(n):
            for u in plan_units:
                est.observe(u, true[u] * scale * math.exp(rng.gauss(0, 0.05)))

    feed(100, 1.0)
    for u, ms in true.items():
        assert est.mean_ms(u) == pytest.approx(ms, rel=0.06)
        assert est.high_ms(u) > est.mean_ms(u)
    feed(30, 1.5)
    for u, ms in true.items():
        assert est.mean_ms(u) == pytest.approx(1.5 * ms, rel=0.06)


def test_estimator_load_carries_to_units_that_did_not_run():
    prior = {
        "stage0@320": 4.0,
        "det@320": 2.0,
        "stage0@192": 1.5,
        "det@192": 0.75,
        "track": 1.0,
        "overhead": 0.5,
    }
    est = CostEstimator(prior)
    layout = ModelLayout(1, {"det": 1})
    small = FramePlan.for_heads(["det"], 192, layout)
    large = FramePlan.for_heads(["det"], 320, layout)
    for _ in range(60):  # only the small plan runs, twice as slow as its prior
        est.observe_frame(small, 2 * sum(prior[u] for u in small.units()))
    assert est.load == pytest.approx(2.0, rel=0.02)
    assert est.predict(large) == pytest.approx(2 * sum(prior[u] for u in large.units()), rel=0.02)


def test_estimator_frame_quantile_covers_jitter():
    cm = cost_model(jitter=0.1, seed=3)
    log = simulate(
        FixedIntervalPolicy(BUDGET_MS, resolutions=RESOLUTIONS, det_interval=1), cm, 400, layout=LAYOUT
    )
    recs = list(log.records)[50:]
    above_high = sum(r.measured_ms > r.predicted_high_ms for r in recs) / len(recs)
    above_mean = sum(r.measured_ms > r.predicted_ms for r in recs) / len(recs)
    assert above_high < 0.2  # a p90 estimate: about 10% above it
    assert 0.3 < above_mean < 0.7
    assert all(r.predicted_high_ms >= r.predicted_ms for r in recs)


def test_estimator_cold_start_rules():
    est = CostEstimator({"stage0@320": 4.0, "det": 2.0}, ref_resolution=320, cold_start_margin=1.5)
    assert est.mean_ms("stage0@160") == pytest.approx(1.0)  # nearest size, scaled by pixel count
    assert est.mean_ms("det@640") == pytest.approx(8.0)  # bare prior key = the unit at ref_resolution
    assert est.high_ms("stage0@320") == pytest.approx(6.0)  # cold margin until min_samples
    assert est.is_known("stage0@160") and not est.is_known("emb@320")
    with pytest.raises(KeyError, match="no cost estimate for unit 'emb@320'"):
        est.mean_ms("emb@320")
    assert CostEstimator(unknown_ms=3.0).mean_ms("emb@320") == 3.0
    # Without a prior the first measurement is the estimate; the prior counts as one sample.
    est.observe("track", 2.5)
    assert est.mean_ms("track") == 2.5
    est.observe("stage0@320", 6.0)
    assert est.mean_ms("stage0@320") == pytest.approx(5.0)


def test_observe_frame_attributes_unreported_time():
    est = CostEstimator({"stage0@320": 4.0, "det@320": 2.0, "track": 1.0, "overhead": 1.0})
    plan = FramePlan.for_heads(["det"], 320, ModelLayout(1, {"det": 1}))
    assert plan.units() == ("stage0@320", "det@320", "track", "overhead")
    est.observe_frame(plan, 10.0, {"stage0@320": 4.0, "det@320": 2.0})
    # 4 ms unreported go to track and overhead in proportion to their estimates (1:1), so
    # track measured 2 ms. The shared load moved by the frame's ratio 10/8 (weight 0.2),
    # then the first measurement averages with the load-scaled prior (weight 1/2).
    load = 1.25**0.2
    assert est.load == pytest.approx(load)
    assert est.mean_ms("track") == pytest.approx(load + 0.5 * (2.0 - load))
    with pytest.raises(ValueError, match=r"unit_timings names units \['emb@320'\]"):
        est.observe_frame(plan, 10.0, {"emb@320": 1.0})
    with pytest.raises(ValueError, match="measured_ms must be a finite number"):
        est.observe_frame(plan, float("nan"))


# ---- plans and layout ------------------------------------------------------------------------------------
def test_frame_plan_units_modes_and_depth_checks():
    plan = FramePlan.for_heads(["emb", "cls", "det"], 256, LAYOUT)
    assert plan.mode == "full" and plan.heads == ("cls", "det", "emb") and plan.depth == 5
    assert plan.units()[:5] == tuple(f"stage{i}@256" for i in range(5))
    assert plan.units()[5:] == ("cls@256", "det@256", "emb@256", "track", "overhead")
    assert FramePlan.for_heads(["det"], 256, LAYOUT).mode == "det"
    assert FramePlan.for_heads([], 256, LAYOUT).units() == ("motion", "overhead")
    assert FramePlan.skip(256).units() == ("overhead",)
    with pytest.raises(ValueError, match="head 'cls' needs 5 trunk stages but the plan runs only 4"):
        LAYOUT.check(FramePlan("full", ("cls", "det", "emb"), 4, 320))
    with pytest.raises(ValueError, match="mode 'det' does not match heads"):
        FramePlan("det", ("det", "emb"), 4, 320)
    with pytest.raises(ValueError, match=r"heads names unknown head\(s\) \['seg'\]"):
        FramePlan("motion", ("seg",), 4, 320)


def _duck_model(names=("cls", "det", "emb"), tasks=("classification", "detection", "embedding")):
    class Trunk:
        num_stages = 6

    taps = dict(zip(names, ([5], [2, 3, 4], [2, 3, 4]), strict=True))

    class Model:
        trunk = Trunk()
        heads = {n: SimpleNamespace(task=t) for n, t in zip(names, tasks, strict=True)}

        @staticmethod
        def required_taps(heads):
            return taps[heads[0]]

    return Model()


def test_layout_from_model_duck_typed():
    layout = ModelLayout.from_model(_duck_model())
    assert layout == ModelLayout(6, {"cls": 6, "det": 5, "emb": 5})
    assert layout.model_heads(["det", "emb"]) == ("det", "emb")
    with pytest.raises(ValueError, match="'emb' without 'det'"):
        ModelLayout(3, {"emb": 2})


def test_layout_finds_heads_by_task_not_name():
    # Heads named freely, listed out of role order: the layout maps roles to names by task.
    layout = ModelLayout.from_model(
        _duck_model(("b", "a", "c"), ("detection", "classification", "embedding"))
    )
    assert layout.heads == ("cls", "det", "emb")
    assert layout.head_depth == {"cls": 5, "det": 6, "emb": 5}
    assert layout.model_heads(["cls", "det", "emb"]) == ("a", "b", "c")
    plan = FramePlan.for_heads(["det", "emb"], 320, layout)
    assert layout.model_heads(plan.heads) == ("b", "c")
    with pytest.raises(ValueError, match=r"roles \['emb'\] have no head"):
        ModelLayout(1, {"det": 1}, {"det": "x"}).model_heads(["emb"])
    with pytest.raises(ValueError, match="distinct model head name"):
        ModelLayout(1, {"cls": 1, "det": 1}, {"cls": "x", "det": "x"})
    with pytest.raises(ValueError, match="declare the same task"):
        ModelLayout.from_model(_duck_model(("a", "b", "c"), ("detection", "detection", "embedding")))


# ---- policies ------------------------------------------------------------------------------------------------
def test_fixed_interval_pattern():
    policy = FixedIntervalPolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=5, det_interval=3)
    log = simulate(policy, cost_model(), 15, layout=LAYOUT)
    recs = list(log.records)
    assert [r.plan.mode for r in recs] == ["full", "motion", "motion"] * 5
    assert [i for i, r in enumerate(recs) if r.plan.runs("cls")] == [0, 5, 10]
    assert all(r.plan.resolution == 320 for r in recs)
    assert recs[5].plan.depth == 5 and recs[3].plan.depth == 4 and recs[1].plan.depth == 0


def test_staleness_counters():
    policy = FixedIntervalPolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=5, det_interval=3)
    sched = BudgetScheduler(policy, CostEstimator(cost_model().unit_ms), LAYOUT)
    seen = []
    for i in range(10, 22):  # the first frame index need not be 0
        sched.begin_frame(i)
        seen.append(sched.staleness(i))  # at decision time
        sched.end_frame(10.0)
    recs = list(sched.log.records)
    # det/emb ran at 12, 15, 18, 21; cls at 10, 15, 20.
    assert [r.staleness["det"] for r in recs] == [1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert [r.staleness["cls"] for r in recs] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert [s["det"] for s in seen[:4]] == [1, 2, 3, 1]  # never ran: counts from just before frame 10
    with pytest.raises(ValueError, match="frame_index must increase; got 21 after 21"):
        sched.begin_frame(21)


def test_greedy_never_plans_beyond_budget():
    policy = GreedyUtilityPolicy(12.0, resolutions=RESOLUTIONS, cls_period=4, safety_margin=0.1)
    log = simulate(policy, cost_model(), 300, step_load, layout=LAYOUT)
    recs = list(log.records)
    assert all(r.predicted_high_ms <= 12.0 * 0.9 + 1e-9 for r in recs if r.plan.mode != "skip")
    modes = log.summary()["mode_share"]
    assert modes["full"] > 0 and modes["skip"] < 0.05


def test_greedy_prefers_stalest_high_priority_task():
    layout = ModelLayout(1, {"cls": 1, "det": 1})
    prior = {"stage0@320": 2.0, "cls@320": 3.0, "det@320": 3.0, "track": 0.0, "motion": 0.0, "overhead": 0.0}
    est = CostEstimator(prior, cold_start_margin=1.0)
    # Room for the trunk and one head only.
    policy = GreedyUtilityPolicy(6.0, {"cls": 1.0, "det": 1.0}, (320,), cls_period=1, safety_margin=0.0)
    state = SchedulerState(10, {"cls": 5, "det": 1}, layout)
    assert policy.decide(10, est, state).heads == ("cls",)
    state = SchedulerState(10, {"cls": 1, "det": 5}, layout)
    assert policy.decide(10, est, state).heads == ("det",)
    # Equal staleness: the higher priority wins.
    policy = GreedyUtilityPolicy(6.0, {"cls": 0.5, "det": 1.0}, (320,), cls_period=1, safety_margin=0.0)
    assert policy.decide(10, est, SchedulerState(10, {"cls": 3, "det": 3}, layout)).heads == ("det",)
    # A budget below the cheapest frame skips it.
    tight = GreedyUtilityPolicy(0.5, resolutions=(320,), cls_period=1)
    est.seed("motion", 1.0)
    assert tight.decide(10, est, SchedulerState(10, {"cls": 3, "det": 3}, layout)).mode == "skip"


def test_adaptive_holds_deadline_under_load_step_fixed_keeps_missing():
    adaptive = AdaptiveDeadlinePolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=10)
    fixed = FixedIntervalPolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=10, det_interval=1)
    log_a = simulate(adaptive, cost_model(), 600, step_load, layout=LAYOUT)
    log_f = simulate(fixed, cost_model(), 600, step_load, layout=LAYOUT)
    transient = 20
    assert log_a.summary(0, 300)["miss_rate"] < 0.01
    assert log_a.summary(300, 300 + transient)["miss_rate"] <= 0.1
    after = log_a.summary(300 + transient)
    assert after["miss_rate"] < 0.01
    assert after["mode_share"]["full"] > 0.9  # it lowered the resolution, it did not give up tracking
    assert log_f.summary(300 + transient)["miss_rate"] > 0.9
    # Before the step the adaptive policy ran at full quality.
    assert all(r.plan.resolution == 320 for r in list(log_a.records)[:300])


def test_adaptive_raises_back_without_oscillating():
    adaptive = AdaptiveDeadlinePolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=10)
    log = simulate(adaptive, cost_model(), 900, lambda i: 2.0 if 300 <= i < 600 else 1.0, layout=LAYOUT)
    recs = list(log.records)
    assert all(r.plan.resolution == 320 for r in recs[700:])
    switches = sum(a.plan.resolution != b.plan.resolution for a, b in zip(recs[320:600], recs[321:600]))
    assert switches <= 4
    assert log.summary(320)["miss_rate"] < 0.01


def test_adaptive_cold_start_climbs_from_guesses():
    adaptive = AdaptiveDeadlinePolicy(BUDGET_MS, resolutions=RESOLUTIONS, cls_period=10)
    log = simulate(adaptive, cost_model(), 300, layout=LAYOUT, estimator=CostEstimator(unknown_ms=5.0))
    recs = list(log.records)
    assert recs[0].plan.mode == "motion"  # 8 unknown units x 5 ms do not fit
    assert all(r.plan.mode == "full" and r.plan.resolution == 320 for r in recs[200:])
    assert log.summary()["miss_rate"] < 0.02


# ---- log ------------------------------------------------------------------------------------------------------------
def _record(i: int, measured: float, mode: str, stale: dict[str, int]) -> FrameRecord:
    heads = {"full": ("det", "emb"), "det": ("det",), "motion": ()}[mode]
    plan = FramePlan(mode, heads, 4 if heads else 0, 320)
    return FrameRecord(i, plan, 35.0, measured - 1.0, measured, measured, measured <= 35.0, stale)


def test_budget_log_summary_and_json(tmp_path):
    log = BudgetLog()
    for i, (ms, mode, det) in enumerate(
        [(10, "full", 0), (20, "motion", 1), (30, "det", 0), (40, "motion", 1), (50, "full", 0)]
    ):
        log.append(_record(i, ms, mode, {"det": det, "cls": i + 1}))
    s = log.summary()
    assert s["frames"] == 5 and s["misses"] == 2 and s["miss_rate"] == pytest.approx(0.4)
    assert s["latency_ms"] == pytest.approx(dict(mean=30.0, p50=30.0, p95=48.0, max=50.0))  # 40 + 0.8 * 10
    assert s["mean_abs_error_ms"] == pytest.approx(1.0)
    assert s["staleness_mean"] == pytest.approx({"cls": 3.0, "det": 0.4})
    assert s["mode_share"] == pytest.approx({"full": 0.4, "det": 0.2, "motion": 0.4, "skip": 0.0})
    assert log.summary(3)["frames"] == 2 and log.summary(10)["miss_rate"] is None
    path = tmp_path / "out" / "budget.json"
    log.to_json(path)
    data = json.loads(path.read_text())
    assert data["summary"]["misses"] == 2 and len(data["records"]) == 5
    assert data["records"][2]["plan"] == dict(mode="det", heads=["det"], depth=4, resolution=320)
    bounded = BudgetLog(max_records=2)
    for r in log.records:
        bounded.append(r)
    assert [r.frame_index for r in bounded.records] == [3, 4]


# ---- validation and config ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy_cls", POLICIES)
def test_bad_arguments_name_what_was_expected(policy_cls):
    with pytest.raises(ValueError, match=r"budget_ms must be a positive number of milliseconds, got 0"):
        policy_cls(0)
    with pytest.raises(ValueError, match=r"budget_ms must be a positive number of milliseconds, got -5"):
        policy_cls(-5)
    with pytest.raises(
        ValueError, match=r"priorities names unknown head\(s\) \['seg'\]; expected names from"
    ):
        policy_cls(30, priorities={"seg": 1.0})
    with pytest.raises(
        ValueError, match=r"resolutions must be a non-empty list of positive ints \(pixels\), got \[\]"
    ):
        policy_cls(30, resolutions=[])
    with pytest.raises(ValueError, match=r"cls_period must be an int >= 1"):
        policy_cls(30, cls_period=0)


def test_scheduler_misuse_is_reported():
    sched = BudgetScheduler(FixedIntervalPolicy(30), CostEstimator(unknown_ms=1.0))
    with pytest.raises(RuntimeError, match="without begin_frame"):
        sched.end_frame(1.0)
    sched.begin_frame()
    with pytest.raises(RuntimeError, match="was begun but not ended"):
        sched.begin_frame()
    with pytest.raises(ValueError, match="measured_ms must be a finite number of ms >= 0, got -1"):
        sched.end_frame(-1.0)
    assert sched.end_frame(1.0).met
    with pytest.raises(ValueError, match="alpha must be a number in"):
        CostEstimator(alpha=0)
    with pytest.raises(TypeError, match="policy must be a BudgetPolicy"):
        BudgetScheduler(object(), CostEstimator())


@pytest.mark.parametrize("policy_cls", POLICIES)
def test_build_from_config(policy_cls):
    cfg = dict(
        type=policy_cls.__name__,
        budget_ms=20.0,
        priorities=dict(cls=0.1),
        resolutions=[192, 320],
        cls_period=4,
    )
    policy = BUDGET_POLICIES.build(cfg)
    assert type(policy) is policy_cls
    assert policy.budget_ms == 20.0 and policy.resolutions == (320, 192) and policy.cls_period == 4
    assert policy.priorities["cls"] == 0.1 and policy.priorities["det"] == 1.0
    log = simulate(policy, cost_model(), 40, layout=LAYOUT)
    assert len(log) == 40
