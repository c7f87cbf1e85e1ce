"""Small statistics every role and benchmark shares (pure functions, no imports of ours).

One definition of a percentile for every figure intervue prints — the gateway's stats,
the dashboard's pipeline health, `intervue bench vision` / `bench speech` / `bench load` —
so a p95 in one table means what it means in another.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q`-th percentile (0–100) of `values`, or None when there are none.

    Linear interpolation between the two closest ranks: rank ``(n − 1)·q/100`` of the
    sorted values (numpy's default method, Hyndman & Fan type 7). p0 is the smallest value,
    p100 the largest, p50 the median (the mean of the middle two for an even count)."""
    if not 0.0 <= q <= 100.0:  # also refuses NaN
        raise ValueError(f"a percentile lies in 0–100, not {q!r}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)
