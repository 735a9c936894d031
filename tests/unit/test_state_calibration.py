"""Calibration of the state's evidence (LLR fit, truth sampling) and the classical
evidence baselines."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.domain.calibration import class_separation, fit_llr, logit, sample_labels
from monitor.domain.evidence import s1_change_probability, s2_change_probability


def test_fit_llr_recovers_the_likelihood_ratio_whatever_the_class_balance() -> None:
    # logit(p) ~ N(+1, 1) under change, N(-1, 1) under no change: LLR(x) = 2x exactly.
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(1, 1, 5_000), rng.normal(-1, 1, 45_000)])
    label = np.concatenate([np.ones(5_000, bool), np.zeros(45_000, bool)])
    p = 1 / (1 + np.exp(-x))
    slope, offset = fit_llr(p, label)
    assert slope == pytest.approx(2.0, abs=0.1)
    assert offset == pytest.approx(0.0, abs=0.1)
    sep = class_separation(p, label, slope, offset)
    assert sep["mean_llr_change"] > 1.5 and sep["mean_llr_no_change"] < -1.5


def test_fit_llr_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        fit_llr(np.array([0.2, 0.9]), np.array([False, False]))


def test_logit_is_clipped() -> None:
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()


def test_sample_labels_uses_only_recent_changes_and_unchanged_pixels() -> None:
    truth = np.array([[0, 100, 50], [0, 300, 0]])  # change days; 0 = none
    p = np.full((2, 3), 0.5, np.float32)
    usable = np.ones((2, 3), bool)
    usable[1, 2] = False
    rng = np.random.default_rng(0)
    ps, labels = sample_labels(p, usable, truth, obs_day=120, horizon_days=30, n_per_class=10,
                               rng=rng)
    # positive: day 100 (within 30 days); day 50 is too old; day 300 is the future -> negative
    assert labels.sum() == 1
    assert (~labels).sum() == 3  # (0,0), (1,0) and (1,1) (not yet changed); (1,2) unusable
    assert ps.dtype == np.float32


def test_s2_baseline_sees_change_and_ignores_a_global_affine_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.02, 0.3, (6, 32, 32)).astype(np.float32)
    obs = (ref * 1.2 + 0.01).astype(np.float32)  # another atmosphere, same ground
    obs[:, :8, :8] = 0.45  # a bright new roof
    p = s2_change_probability(ref, obs, np.ones((32, 32), bool))
    assert np.median(p[:8, :8]) > 0.85
    assert np.median(p[8:, 8:]) < 0.1
    p_masked = s2_change_probability(ref, obs, np.zeros((32, 32), bool) | (np.arange(32) < 16))
    assert np.isnan(p_masked[:, 16:]).all()


def test_s1_baseline_is_one_sided() -> None:
    ref = np.full((1, 4, 4), 0.4, np.float32)
    cur = ref.copy()
    cur[0, 0, 0] += 5 / 30  # +5 dB: double bounce of a new building
    cur[0, 1, 1] -= 5 / 30  # -5 dB: not construction
    p = s1_change_probability(ref, cur)
    assert p[0, 0] > 0.95 and p[1, 1] < 0.05 and p[2, 2] < 0.05


def test_the_stream_calibration_grid_varies_joined_parameters_together() -> None:
    from monitor.streams.calibrate import grid_combinations

    combos = grid_combinations({"h_confirm": [7.0, 9.0],
                                "h_provisional,n_provisional": [[4.0, 2], [7.0, 3]]})
    assert combos == [
        {"h_confirm": 7.0, "h_provisional": 4.0, "n_provisional": 2},
        {"h_confirm": 7.0, "h_provisional": 7.0, "n_provisional": 3},
        {"h_confirm": 9.0, "h_provisional": 4.0, "n_provisional": 2},
        {"h_confirm": 9.0, "h_provisional": 7.0, "n_provisional": 3},
    ]
    with pytest.raises(ValueError):
        grid_combinations({"h_provisional,n_provisional": [[4.0]]})  # a value per name
