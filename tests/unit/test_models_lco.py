"""Leave-cities-out reporting: Platt calibration and nested thresholds fitted on other folds only."""

from __future__ import annotations

import numpy as np
import pytest

from models.lco import HeldOut, apply_platt, calibration_error, fit_platt, lco_report


def _heldout(
    rng: np.random.Generator, city: str, fold: int, shift: float, n: int = 20000
) -> HeldOut:
    label = rng.random(n) < 0.05
    z = np.where(label, 1.5, -2.5) + rng.normal(0, 1.0, n) + shift
    return HeldOut(city, fold, (1 / (1 + np.exp(-z))).astype(np.float32), label)


def test_platt_recovers_a_known_map() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 200_000)
    y = rng.random(z.size) < 1 / (1 + np.exp(-(0.5 * z - 1.0)))
    p = 1 / (1 + np.exp(-z))
    a, b = fit_platt(p, y)
    assert a == pytest.approx(0.5, abs=0.03) and b == pytest.approx(-1.0, abs=0.05)
    q = apply_platt(p, (a, b))
    assert calibration_error(q, y)[1] < calibration_error(p, y)[1]
    assert np.all(np.diff(apply_platt(np.sort(p), (a, b))) >= 0)  # monotone: ranking kept


def test_nested_calibration_and_threshold_never_see_the_folds_own_cities() -> None:
    rng = np.random.default_rng(1)
    base = [_heldout(rng, f"c{k}", k, 0.0) for k in range(3)]
    # fold 3's city is shifted far up: its own cities would want another calibration
    shifted = _heldout(rng, "c3", 3, 3.0)
    result = lco_report("m", [*base, shifted])
    alone = lco_report("m", base)
    # fold 3's map is fitted on folds 0-2 only, which equals the 3-fold overall fit
    assert result.calibrations[3] == pytest.approx(alone.shipped_calibration, abs=1e-9)
    assert result.thresholds[3] == alone.shipped_threshold
    assert set(result.per_city) == {"c0", "c1", "c2", "c3"}
    assert result.pooled.tp + result.pooled.fn == sum(int(h.label.sum()) for h in [*base, shifted])
