"""The robustness study's specification and arithmetic: parsed arguments, headline metrics, mCE.

Summary numbers per headline metric ``m`` (error ``E = 1 - m``; see
:data:`TASK_METRICS`):

* corruption error ``CE_c = sum_s E_{s,c} / sum_s E^ref_{s,c}`` and
  ``mCE = mean_c CE_c`` against a reference model's results (ImageNet-C's
  AlexNet normalisation, Hendrycks & Dietterich, ICLR 2019); without a
  reference, the unnormalised mean error ``CE_c = mean_s E_{s,c}``;
* relative CE ``sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``
  (with a reference);
* relative robustness: clean metric minus corrupted metric, per condition and
  averaged.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from mtmnv3.data.corruptions import CORRUPTIONS, NUM_SEVERITIES

__all__ = [
    "ATTACK_METHODS",
    "DEFAULT_PGD_STEPS",
    "RESULTS_VERSION",
    "TASK_METRICS",
    "TRACKING_METRIC_TYPES",
    "TRACK_MODES",
    "headline_metrics",
    "load_reference",
    "mean_corruption_error",
    "parse_corruptions",
    "parse_eps",
    "parse_severities",
    "relative_corruption_error",
    "summarise",
]

#: Version of the results JSON layout.
RESULTS_VERSION = 1
#: Headline metrics per task (higher is better, error = 1 - metric) that mCE is computed for.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cls": ("cls/top1",),
    "det": ("det/mAP", "det/mAP_50"),
    "mot": ("mot/MOTA", "mot/IDF1"),
}
#: Metric types that need a tracker over each video (see ``sequence_hook_factory``).
TRACKING_METRIC_TYPES = frozenset({"MOTMetric"})
#: ``build_study(track=...)``: off, the config's tracker with embeddings, or IoU-only association.
TRACK_MODES = (False, True, "embeddings", "iou")
#: Attack methods of attack mode.
ATTACK_METHODS = ("fgsm", "pgd")
#: Default PGD steps (Madry et al. use 7-40; 10 is the common evaluation setting).
DEFAULT_PGD_STEPS = 10


# ---- argument parsing ------------------------------------------------------------------------
def parse_corruptions(spec: str | Sequence[str]) -> list[str]:
    """``'all'`` or comma-separated family names -> the list of families (suite order).

    Raises:
        ValueError: an unknown or repeated name, or an empty list.
    """
    if isinstance(spec, str):
        if spec.strip() == "all":
            return list(CORRUPTIONS)
        names = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        names = list(spec)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; known: all, {', '.join(CORRUPTIONS)}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"corruptions must be a non-empty list of distinct names, got {spec!r}")
    return names


def parse_severities(spec: str | Sequence[int]) -> list[int]:
    """``'1,2,3'`` -> ``[1, 2, 3]`` (sorted).

    Raises:
        ValueError: a value that is not an integer in 1..5, a repeat, or an empty list.
    """
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            value = int(item)
        except (TypeError, ValueError):
            value = None
        if (
            value is None
            or isinstance(item, bool)
            or str(value) != str(item).strip()
            or not 1 <= value <= NUM_SEVERITIES
        ):
            raise ValueError(f"severities must be integers in 1..{NUM_SEVERITIES}, got {item!r} in {spec!r}")
        out.append(value)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"severities must be a non-empty list of distinct values, got {spec!r}")
    return sorted(out)


def parse_eps(spec: str | Sequence[float]) -> list[tuple[str, float]]:
    """``'2/255,4/255'`` (or decimals) -> ``[('2/255', 0.00784...), ...]``.

    Raises:
        ValueError: a value that is not a number or fraction in (0, 1].
    """
    items = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    out = []
    for item in items:
        try:
            value = float(Fraction(str(item)))
        except (ValueError, ZeroDivisionError):
            value = math.nan
        if not 0 < value <= 1:
            raise ValueError(
                f"eps must be numbers in (0, 1] in [0, 1] pixel units (e.g. 4/255), got {item!r}"
            )
        out.append((str(item), value))
    if not out or len({v for _, v in out}) != len(out):
        raise ValueError(f"eps must be a non-empty list of distinct values, got {spec!r}")
    return out


# ---- mCE arithmetic --------------------------------------------------------------------------------
def mean_corruption_error(
    errors: Mapping[str, Mapping[int, float]],
    reference: Mapping[str, Mapping[int, float]] | None = None,
) -> tuple[dict[str, float | None], float | None]:
    """Corruption errors and their mean (Hendrycks & Dietterich 2019, Sec. 3).

    Args:
        errors: ``{corruption: {severity: error}}`` of the model.
        reference: the same for the reference model (must hold every
            corruption and severity of ``errors``); None for unnormalised errors.

    Returns:
        ``({corruption: CE_c}, mCE)``. With a reference ``CE_c = sum_s E_{s,c} /
        sum_s E^ref_{s,c}`` (None when the reference's sum is 0); without one
        ``CE_c = mean_s E_{s,c}``. ``mCE`` is the mean of the defined ``CE_c``.
    """
    ce: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        total = sum(per_sev.values())
        if reference is None:
            ce[name] = total / len(per_sev)
            continue
        ref_total = sum(reference[name][s] for s in per_sev)
        ce[name] = total / ref_total if ref_total > 0 else None
    defined = [v for v in ce.values() if v is not None]
    return ce, (sum(defined) / len(defined) if defined else None)


def relative_corruption_error(
    errors: Mapping[str, Mapping[int, float]],
    clean_error: float,
    reference: Mapping[str, Mapping[int, float]],
    reference_clean_error: float,
) -> tuple[dict[str, float | None], float | None]:
    """Relative corruption errors (Hendrycks & Dietterich 2019, Sec. 3).

    ``rCE_c = sum_s (E_{s,c} - E_clean) / sum_s (E^ref_{s,c} - E^ref_clean)``
    (None when the reference's degradation is not positive); returns
    ``({corruption: rCE_c}, mean of the defined rCE_c)``.
    """
    rce: dict[str, float | None] = {}
    for name, per_sev in errors.items():
        num = sum(e - clean_error for e in per_sev.values())
        den = sum(reference[name][s] - reference_clean_error for s in per_sev)
        rce[name] = num / den if den > 0 else None
    defined = [v for v in rce.values() if v is not None]
    return rce, (sum(defined) / len(defined) if defined else None)


def _errors(results: Mapping[str, Any], metric: str) -> dict[str, dict[int, float]]:
    return {
        name: {int(s): 1.0 - float(m[metric]) for s, m in per_sev.items()}
        for name, per_sev in results["corruptions"].items()
    }


def load_reference(
    path: str | os.PathLike,
    corruptions: Iterable[str],
    severities: Iterable[int],
    metrics: Iterable[str] = (),
) -> dict[str, Any]:
    """Read a reference model's results JSON (written by this study) and check that it
    holds every (corruption, severity) condition and every headline metric asked for.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a results JSON, or conditions/metrics missing (named).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"reference JSON not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            ref = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"reference {path} is not valid JSON: {e}") from e
    if not isinstance(ref, dict) or not isinstance(ref.get("corruptions"), dict) or "clean" not in ref:
        raise ValueError(
            f"reference {path} is not a robustness results JSON (needs 'clean' and 'corruptions')"
        )
    metrics = list(metrics)
    missing = [f"clean:{m}" for m in metrics if m not in ref["clean"]]
    for name in corruptions:
        for s in severities:
            cond = ref["corruptions"].get(name, {}).get(str(s))
            if cond is None:
                missing.append(f"{name}@{s}")
            else:
                missing += [f"{name}@{s}:{m}" for m in metrics if m not in cond]
    if missing:
        raise ValueError(
            f"reference {path} lacks {len(missing)} of the evaluated conditions/metrics, e.g. {missing[:5]}; "
            "run the reference with the same --corruptions and --severities"
        )
    return ref


def summarise(
    results: Mapping[str, Any],
    reference: Mapping[str, Any] | None = None,
    unseen: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per headline metric: clean value, mean corrupted value, relative robustness, CE and mCE.

    Args:
        results: ``{'metrics': [...], 'clean': {...}, 'corruptions': {name: {'1': {...}}}}``.
        reference: a reference model's results (same layout) for normalised
            (r)CE; None for unnormalised mean errors.
        unseen: corruption families not used in training (e.g. held out of
            AugMix); adds ``mCE_unseen`` / ``mCE_seen`` over those subsets.

    Returns:
        ``{metric: {'clean', 'mean_corrupted', 'relative_robustness', 'CE',
        'mCE', 'normalised', ['relative_CE', 'relative_mCE'], ['mCE_unseen',
        'mCE_seen']}}``.
    """
    unseen = None if unseen is None else set(unseen)
    out: dict[str, dict[str, Any]] = {}
    for metric in results["metrics"]:
        clean = float(results["clean"][metric])
        values = [float(m[metric]) for per_sev in results["corruptions"].values() for m in per_sev.values()]
        errors = _errors(results, metric)
        ref_errors = None if reference is None else _errors(reference, metric)
        ce, mce = mean_corruption_error(errors, ref_errors)
        entry: dict[str, Any] = {
            "clean": clean,
            "mean_corrupted": sum(values) / len(values) if values else None,
            "relative_robustness": clean - sum(values) / len(values) if values else None,
            "CE": ce,
            "mCE": mce,
            "normalised": reference is not None,
        }
        if reference is not None:
            rce, rmce = relative_corruption_error(
                errors, 1.0 - clean, ref_errors, 1.0 - float(reference["clean"][metric])
            )
            entry["relative_CE"], entry["relative_mCE"] = rce, rmce
        if unseen is not None:
            for key, keep in (("mCE_unseen", True), ("mCE_seen", False)):
                subset = [v for n, v in ce.items() if (n in unseen) == keep and v is not None]
                entry[key] = sum(subset) / len(subset) if subset else None
        out[metric] = entry
    return out


def headline_metrics(clean: Mapping[str, float]) -> list[str]:
    """The headline metrics (:data:`TASK_METRICS`) among ``clean``'s keys, in task order."""
    return [m for metrics in TASK_METRICS.values() for m in metrics if m in clean]
