"""Online cost estimates of the units a frame spends, from measured timings.

Model. A unit's cost is ``base(unit) x load``: ``load`` is one shared factor
for whatever slows every unit alike (background processes, thermal
throttling, a busy memory bus). Each unit keeps an exponentially weighted
moving average (EWMA) of its measured cost plus the load at its last update,
so a unit that has not run for a while is predicted at
``mean x load_now / load_then``: when the controller falls back to a small
input size under load, the estimate of the large size it wants to return to
rises with the load although it has not been measured. ``load`` is anchored:
it is the smoothed ratio of measured cost to each unit's *reference* (its
prior, or its first few measurements divided by the load then), so it does
not drift like a random walk.

Robustness. Deadlines need more than the mean: :meth:`CostEstimator.predict_high`
scales the expected frame cost by a running high quantile (default p90) of the
ratio measured / predicted over the last ``window`` frames, so jitter, and the
estimate's own lag after a change, are priced in. Per unit,
:meth:`CostEstimator.high_ms` does the same with the unit's own ratios.

Cold start.
    * A unit seeded by the ``prior`` (a latency table) starts at the prior; the
      first measurements replace it quickly (the prior counts as one sample,
      so the first measurement has weight 1/2, the second 1/3, ... down to
      ``alpha``).
    * A unit without a prior takes its first measurement as its estimate.
    * A unit never seen at a resolution is derived from the same unit at the
      nearest known resolution, scaled by ``(res / known) ** resolution_exponent``
      (compute grows with the pixel count; a resolution is the long side of an
      input of the frames' aspect, so the pixel count grows with its square
      whether the input is a square or a rectangle); a prior key without ``@res``
      (a role such as ``'det'``) means the unit at ``ref_resolution`` (or at every resolution
      when ``ref_resolution`` is None).
    * Otherwise ``unknown_ms`` is used, or ``KeyError`` when it is None.
    * Until ``min_samples`` measurements exist, high estimates are the mean
      times ``cold_start_margin``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mtmnv3.runtime.budget._stats import check_positive, quantile
from mtmnv3.runtime.budget.plan import FramePlan, head_unit, split_unit, stage_unit

__all__ = ["CostEstimator"]


@dataclass
class _UnitStats:
    """Running statistics of one unit (internal)."""

    mean: float  # EWMA of measured cost (ms) at load ``load_at_update``
    load_at_update: float
    ref: float | None  # cost at load 1 (prior, or mean of first measurements / load)
    has_prior: bool
    count: int = 0  # real measurements seen
    ref_count: int = 0  # measurements averaged into ``ref`` (units without prior)
    ratios: deque[float] = field(default_factory=deque)  # measured / predicted, recent


class CostEstimator:
    """Running per-unit cost estimates (ms) that predict the cost of frame plans.

    Args:
        prior: unit name -> ms seed (a latency table); see the module docstring
            for names and the meaning of keys without ``@res``.
        alpha: EWMA weight of a new measurement once warmed up, in (0, 1].
        quantile: the high quantile used for deadlines, in (0.5, 1).
        window: how many recent ratios the high quantile looks at (>= 2).
        min_samples: measurements needed before the quantile replaces
            ``cold_start_margin`` (>= 1, <= window).
        cold_start_margin: high / mean factor while too few samples exist (>= 1).
        load_alpha: EWMA weight of a frame's load ratio, in (0, 1].
        ref_resolution: resolution that prior keys without ``@res`` refer to.
        resolution_exponent: cost ~ resolution ** exponent when deriving a unit
            at an unseen resolution (2: proportional to the pixel count).
        unknown_ms: estimate for a unit with nothing to derive it from; None
            raises ``KeyError`` instead.
    """

    def __init__(
        self,
        prior: Mapping[str, float] | None = None,
        *,
        alpha: float = 0.2,
        quantile: float = 0.9,
        window: int = 32,
        min_samples: int = 5,
        cold_start_margin: float = 1.25,
        load_alpha: float = 0.2,
        ref_resolution: int | None = None,
        resolution_exponent: float = 2.0,
        unknown_ms: float | None = None,
    ) -> None:
        if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
            raise ValueError(f"alpha must be a number in (0, 1], got {alpha!r}")
        if not (isinstance(quantile, (int, float)) and 0.5 < quantile < 1.0):
            raise ValueError(f"quantile must be a number in (0.5, 1), got {quantile!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window must be an int >= 2, got {window!r}")
        if (
            isinstance(min_samples, bool)
            or not isinstance(min_samples, int)
            or not 1 <= min_samples <= window
        ):
            raise ValueError(f"min_samples must be an int in 1..window ({window}), got {min_samples!r}")
        if not (isinstance(cold_start_margin, (int, float)) and cold_start_margin >= 1.0):
            raise ValueError(f"cold_start_margin must be a number >= 1, got {cold_start_margin!r}")
        if not (isinstance(load_alpha, (int, float)) and 0.0 < load_alpha <= 1.0):
            raise ValueError(f"load_alpha must be a number in (0, 1], got {load_alpha!r}")
        if ref_resolution is not None:
            check_positive("ref_resolution", ref_resolution, "None or a positive int (pixels)")
        check_positive("resolution_exponent", resolution_exponent)
        if unknown_ms is not None:
            check_positive("unknown_ms", unknown_ms, "None or a positive number of milliseconds")
        self.alpha = float(alpha)
        self.quantile = float(quantile)
        self.window = window
        self.min_samples = min_samples
        self.cold_start_margin = float(cold_start_margin)
        self.load_alpha = float(load_alpha)
        self.ref_resolution = ref_resolution
        self.resolution_exponent = float(resolution_exponent)
        self.unknown_ms = None if unknown_ms is None else float(unknown_ms)
        self.load = 1.0
        self.frames_observed = 0
        self._units: dict[str, _UnitStats] = {}
        self._frame_ratios: deque[float] = deque(maxlen=window)
        for unit, ms in (prior or {}).items():
            self.seed(unit, ms)

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_stage_table(
        cls,
        stage_ms: Sequence[float],
        resolution: int,
        head_ms: Mapping[str, float] | None = None,
        fixed_ms: Mapping[str, float] | None = None,
        **kwargs: object,
    ) -> CostEstimator:
        """Seed from per-stage latencies measured at one resolution.

        Args:
            stage_ms: ms per trunk stage at ``resolution`` (e.g. a StagePlan's
                ``measured_ms`` or medians from ``profiling.stage_latency``).
            resolution: the input size the table was measured at; other sizes
                are derived by the resolution scaling.
            head_ms: ms per head at ``resolution`` (``cls``/``det``/``emb``).
            fixed_ms: resolution-independent units (``track``, ``motion``, ``overhead``).
            **kwargs: further :class:`CostEstimator` arguments.
        """
        prior = {stage_unit(i, resolution): float(ms) for i, ms in enumerate(stage_ms)}
        prior.update({head_unit(h, resolution): float(ms) for h, ms in (head_ms or {}).items()})
        prior.update({u: float(ms) for u, ms in (fixed_ms or {}).items()})
        return cls(prior, **kwargs)  # type: ignore[arg-type]

    def seed(self, unit: str, ms: float) -> None:
        """Set a unit's prior estimate (replaces any statistics it had)."""
        split_unit(unit)
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            raise ValueError(f"prior cost of unit {unit!r} must be a number of ms >= 0, got {ms!r}")
        self._units[unit] = _UnitStats(
            mean=float(ms),
            load_at_update=1.0,
            ref=float(ms),
            has_prior=True,
            ratios=deque(maxlen=self.window),
        )

    # ---- queries ----------------------------------------------------------------------
    @property
    def units(self) -> tuple[str, ...]:
        """Units with their own statistics (seeded or measured)."""
        return tuple(self._units)

    def samples(self, unit: str) -> int:
        """How many measurements of ``unit`` were seen."""
        stats = self._units.get(unit)
        return stats.count if stats else 0

    def mean_ms(self, unit: str) -> float:
        """Expected cost of ``unit`` now (ms); see the module docstring for cold start."""
        stats = self._units.get(unit)
        if stats is not None:
            return self._current(stats)
        return self._derive(unit)

    def is_known(self, unit: str) -> bool:
        """Whether ``unit`` has an estimate of its own or one derived from a sibling
        (same unit at another resolution); False when only ``unknown_ms`` applies."""
        if unit in self._units:
            return True
        name, _ = split_unit(unit)
        return any(split_unit(other)[0] == name for other in self._units)

    def high_ms(self, unit: str) -> float:
        """High-quantile cost of ``unit`` now (ms), from its own recent ratios."""
        stats = self._units.get(unit)
        mean = self.mean_ms(unit)
        if stats is None or len(stats.ratios) < self.min_samples:
            return mean * self.cold_start_margin
        return mean * max(1.0, quantile(stats.ratios, self.quantile))

    def predict(self, plan: FramePlan) -> float:
        """Expected cost of ``plan`` in ms (the sum of its units' means)."""
        return sum(self.mean_ms(u) for u in plan.units())

    def predict_high(self, plan: FramePlan) -> float:
        """High-quantile cost of ``plan`` in ms: the expectation times the running
        ``quantile`` of recent frames' measured / predicted ratios (at least 1;
        ``cold_start_margin`` until ``min_samples`` frames were observed)."""
        return self.predict(plan) * self.frame_margin()

    def frame_margin(self) -> float:
        """Factor from expected to high-quantile frame cost (>= 1)."""
        if len(self._frame_ratios) < self.min_samples:
            return self.cold_start_margin
        return max(1.0, quantile(self._frame_ratios, self.quantile))

    # ---- updates ------------------------------------------------------------------------
    def observe(self, unit: str, ms: float) -> None:
        """Fold one measurement of one unit into its estimate (no frame bookkeeping)."""
        self._check_ms(f"measured time of unit {unit!r}", ms)
        split_unit(unit)
        predicted = self._prediction_or_none(unit)
        self._update_unit(unit, float(ms), predicted)

    def observe_frame(
        self, plan: FramePlan, measured_ms: float, unit_timings: Mapping[str, float] | None = None
    ) -> None:
        """Learn from one frame that ran ``plan``.

        Units in ``unit_timings`` are taken as measured. The rest of the frame
        time (``measured_ms`` minus the reported units, at least 0) is split
        over the plan's unreported units, ``overhead`` included, in proportion
        to their current estimates. With no timings, the whole frame is split
        that way: units then learn the frame's ratio but not their own shares.

        Args:
            plan: the plan that ran.
            measured_ms: the frame's measured wall time.
            unit_timings: measured ms of some of the plan's units.
        """
        self._check_ms("measured_ms", measured_ms)
        plan_units = plan.units()
        timings = dict(unit_timings or {})
        unknown = sorted(set(timings) - set(plan_units))
        if unknown:
            raise ValueError(
                f"unit_timings names units {unknown} that the plan does not run; it runs {plan_units}"
            )
        for u, ms in timings.items():
            self._check_ms(f"unit_timings[{u!r}]", ms)
        # Step 1: predictions before anything moves (for the residual ratios).
        predicted = {u: self._prediction_or_none(u) for u in plan_units}
        expected_total = sum(p for p in predicted.values() if p is not None)
        # Step 2: attribute the unreported time.
        observed = {u: float(ms) for u, ms in timings.items()}
        rest = [u for u in plan_units if u not in observed]
        residual = max(0.0, float(measured_ms) - sum(observed.values()))
        if rest:
            weights = [predicted[u] or 0.0 for u in rest]
            total_w = sum(weights)
            for u, w in zip(rest, weights):
                observed[u] = residual * (w / total_w if total_w > 0 else 1.0 / len(rest))
        # Step 3: shared load from units with a reference cost.
        ref_obs = [(observed[u], self._units[u].ref) for u in observed if u in self._units]
        ref_sum = sum(ref for _, ref in ref_obs if ref)
        if ref_sum > 0:
            frame_load = sum(ms for ms, ref in ref_obs if ref) / ref_sum
            if frame_load > 0:
                self.load = math.exp(
                    (1 - self.load_alpha) * math.log(self.load) + self.load_alpha * math.log(frame_load)
                )
        # Step 4: per-unit estimates, then the frame-level ratio window.
        for u in plan_units:
            self._update_unit(u, observed[u], predicted[u])
        if expected_total > 0 and all(p is not None for p in predicted.values()):
            self._frame_ratios.append(float(measured_ms) / expected_total)
        self.frames_observed += 1

    # ---- internals ------------------------------------------------------------------------
    @staticmethod
    def _check_ms(what: str, ms: object) -> None:
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms < 0:
            raise ValueError(f"{what} must be a finite number of ms >= 0, got {ms!r}")

    def _current(self, stats: _UnitStats) -> float:
        return stats.mean * self.load / stats.load_at_update

    def _prediction_or_none(self, unit: str) -> float | None:
        try:
            return self.mean_ms(unit)
        except KeyError:
            return None

    def _update_unit(self, unit: str, ms: float, predicted: float | None) -> None:
        stats = self._units.get(unit)
        if stats is None:
            stats = _UnitStats(
                mean=ms, load_at_update=self.load, ref=None, has_prior=False, ratios=deque(maxlen=self.window)
            )
            self._units[unit] = stats
        else:
            if stats.count >= 1 and predicted:
                stats.ratios.append(ms / predicted)
            current = self._current(stats)
            weight = max(self.alpha, 1.0 / (stats.count + 1 + stats.has_prior))
            stats.mean = current + weight * (ms - current)
            stats.load_at_update = self.load
        stats.count += 1
        if not stats.has_prior and stats.ref_count < self.min_samples:
            at_unit_load = ms / self.load
            stats.ref = (
                at_unit_load
                if stats.ref is None
                else stats.ref + (at_unit_load - stats.ref) / (stats.ref_count + 1)
            )
            stats.ref_count += 1

    def _derive(self, unit: str) -> float:
        name, res = split_unit(unit)
        candidates: list[tuple[float, float]] = []  # (|log size ratio|, derived ms)
        for other, stats in self._units.items():
            other_name, other_res = split_unit(other)
            if other_name != name:
                continue
            if other_res is None:
                other_res = self.ref_resolution
            if res is None or other_res is None:
                candidates.append((0.0, self._current(stats)))
            else:
                scale = (res / other_res) ** self.resolution_exponent
                candidates.append((abs(math.log(res / other_res)), self._current(stats) * scale))
        if candidates:
            return min(candidates)[1]
        if self.unknown_ms is not None:
            return self.unknown_ms * self.load
        raise KeyError(
            f"no cost estimate for unit {unit!r}: seed it in the prior (e.g. {unit!r} or {name!r}) "
            "or give the estimator unknown_ms"
        )

    def state_dict(self) -> dict[str, object]:
        """A JSON-serialisable snapshot of the estimates (for logs)."""
        return dict(
            load=self.load,
            frame_margin=self.frame_margin(),
            frames_observed=self.frames_observed,
            units={
                u: dict(mean_ms=self._current(s), samples=s.count, ref_ms=s.ref, high_ms=self.high_ms(u))
                for u, s in self._units.items()
            },
        )
