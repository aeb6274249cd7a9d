"""Small statistics helpers shared by the budget modules (pure Python)."""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["quantile", "check_positive"]


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q``-quantile of ``values`` by linear interpolation between order statistics.

    This is NumPy's default (``method='linear'``): with the sorted values
    ``v[0..n-1]`` the quantile sits at position ``q * (n - 1)``.

    Args:
        values: at least one number.
        q: quantile in ``[0, 1]``.

    Returns:
        The interpolated quantile.
    """
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("quantile of an empty sequence is undefined")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must lie in [0, 1], got {q!r}")
    pos = q * (len(data) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def check_positive(name: str, value: object, what: str = "a positive number") -> float:
    """``float(value)`` if it is a finite number > 0, else a ``ValueError`` naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)
