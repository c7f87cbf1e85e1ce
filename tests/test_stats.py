"""The one percentile every printed p50/p95 uses (stream/stats.py)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from stream.stats import percentile


def test_small_cases() -> None:
    assert percentile([], 50) is None
    assert percentile([5], 95) == 5
    assert percentile([1, 2, 3, 4], 50) == 2.5  # even count: the mean of the middle two
    assert percentile([3, 1, 2], 50) == 2  # order of the input does not matter
    assert percentile([10, 20], 95) == pytest.approx(19.5)
    assert percentile([4, 8, 15, 16, 23, 42], 0) == 4
    assert percentile([4, 8, 15, 16, 23, 42], 100) == 42


def test_agrees_with_numpy_linear() -> None:
    # The documented definition is numpy's default method; check it on awkward sizes.
    rng = random.Random(7)
    for n in (1, 2, 3, 7, 20, 101, 999):
        values = [rng.uniform(0, 1000) for _ in range(n)]
        for q in (0, 1, 5, 25, 50, 90, 95, 99, 100):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q), abs=1e-9)


def test_accepts_any_iterable() -> None:
    assert percentile((x for x in [2.0, 4.0]), 50) == 3.0


@pytest.mark.parametrize("q", [-1, 100.5, float("nan"), 0.95 * 1000])
def test_refuses_a_q_outside_0_100(q: float) -> None:
    with pytest.raises(ValueError, match="0–100"):
        percentile([1.0, 2.0], q)
