"""Threshold curves and the nested leave-cities-out threshold choice (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from models.evaluation import nested_thresholds
from models.metrics import (
    THRESHOLD_GRID,
    best_on_curve,
    best_threshold,
    count_change,
    counts_at_thresholds,
    sum_curves,
)

ROW = "S2 Siamese U-Net"


def _city(rng: np.random.Generator, change_p: float, other_p: float = 0.1, n: int = 4000) -> tuple:
    """A city whose change pixels get p ~ change_p and the rest p ~ other_p (plus noise)."""
    label = rng.random(n) < 0.1
    prob = np.where(label, change_p, other_p) + rng.normal(0.0, 0.05, n)
    return np.clip(prob, 0, 1).astype(np.float32), label


def test_curve_equals_direct_counts_at_every_threshold() -> None:
    prob, label = _city(np.random.default_rng(0), 0.6)
    prob[:10] = 0.25  # exactly on a grid value: ">=" must count it
    curve = counts_at_thresholds(prob, label)
    assert len(curve) == len(THRESHOLD_GRID)
    for t, c in zip(THRESHOLD_GRID, curve, strict=True):
        assert c == count_change(prob >= np.float32(t), label)
    t, f1 = best_threshold(prob, label)
    assert THRESHOLD_GRID[best_on_curve(curve)] == t
    assert curve[best_on_curve(curve)].f1 == pytest.approx(f1)


def test_nested_threshold_ignores_the_folds_own_cities() -> None:
    rng = np.random.default_rng(1)
    # folds 0 and 1: change near p = 0.3, the rest near 0.1; fold 2: 0.9 and 0.55
    cities = {0: [_city(rng, 0.3)], 1: [_city(rng, 0.3)], 2: [_city(rng, 0.9, 0.55)]}
    curves = {k: {ROW: [counts_at_thresholds(p, y) for p, y in cs]} for k, cs in cities.items()}
    per_fold, overall = nested_thresholds(curves)
    # fold 2's threshold comes from folds 0 and 1 only, so it is low although its own
    # cities would prefer a high one; folds 0 and 1 see fold 2's cities and each other
    own_best = THRESHOLD_GRID[best_on_curve(curves[2][ROW][0])]
    assert own_best >= 0.65 and per_fold[2][ROW] <= 0.3
    only_01 = sum_curves(curves[0][ROW] + curves[1][ROW])
    assert per_fold[2][ROW] == THRESHOLD_GRID[best_on_curve(only_01)]
    every = sum_curves([c for k in curves for c in curves[k][ROW]])
    assert overall[ROW] == THRESHOLD_GRID[best_on_curve(every)]


def test_empty_curve_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty curve"):
        best_on_curve([])
