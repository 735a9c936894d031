"""Scorer on small hand-made arrays whose answers can be counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.domain.scoring import ChangePrediction, ChangeTruth, score_change
from monitor.errors import ScoringError

PERIOD = (1000, 1000 + 365)  # one year


def _empty(shape=(10, 10)):
    return np.zeros(shape, np.int32)


def _case():
    """Two sites (A: 2x3 at day 1100, B: 2x2 at day 1200), one pre-period site C (day 900)."""
    cd, labels = _empty(), _empty()
    cd[1:3, 1:4], labels[1:3, 1:4] = 1100, 1   # site 1: 6 px
    cd[6:8, 6:8], labels[6:8, 6:8] = 1200, 2   # site 2: 4 px
    cd[0, 8:10], labels[0, 8:10] = 900, 3      # site 3: before the period (don't care)
    truth = ChangeTruth(change_date=cd, site_labels=labels)
    conf = np.zeros((10, 10), bool)
    conf[1:3, 1:3] = True        # 4 of site 1's 6 pixels
    conf[9, 0] = True            # a lone false alert
    conf[0, 8] = True            # on the don't-care site: not counted
    est, cdate = _empty(), _empty()
    est[1:3, 1:3] = [[1090, 1100], [1110, 1100]]       # errors 10, 0, 10, 0
    cdate[1:3, 1:3] = [[1120, 1130], [1140, 1150]]     # delays 20, 30, 40, 50
    est[9, 0], cdate[9, 0] = 1300, 1310
    return truth, ChangePrediction(confirmed=conf, change_date=est, confirmation_date=cdate)


def test_pixel_metrics_count_tp_fp_fn_and_ignore_pre_period_changes() -> None:
    truth, pred = _case()
    s = score_change(truth, pred, pixel_area_m2=100.0, period=PERIOD)
    assert (s.pixel_tp, s.pixel_fp, s.pixel_fn) == (4, 1, 6)
    assert s.pixel_precision == pytest.approx(4 / 5)
    assert s.pixel_recall == pytest.approx(4 / 10)
    assert s.pixel_f1 == pytest.approx(2 * 0.8 * 0.4 / 1.2)


def test_object_metrics_match_components_to_sites() -> None:
    truth, pred = _case()
    s = score_change(truth, pred, pixel_area_m2=100.0, period=PERIOD)
    assert s.n_sites == 2
    assert s.n_objects == 2            # site-1 blob + lone pixel; the don't-care blob is dropped
    assert s.object_tp_sites == 1 and s.object_tp_objects == 1
    assert s.object_recall == pytest.approx(0.5)
    assert s.object_precision == pytest.approx(0.5)
    assert s.object_f1 == pytest.approx(0.5)
    assert s.false_alerts == 1


def test_timing_errors_and_delays() -> None:
    truth, pred = _case()
    s = score_change(truth, pred, pixel_area_m2=100.0, period=PERIOD)
    assert s.time_error_mean_days == pytest.approx(5.0)
    assert s.time_error_median_days == pytest.approx(5.0)
    assert s.delay_mean_days == pytest.approx(35.0)
    assert s.delay_median_days == pytest.approx(35.0)


def test_false_alert_rate_per_km2_and_year() -> None:
    truth, pred = _case()
    s = score_change(truth, pred, pixel_area_m2=100.0, period=PERIOD)
    scored_km2 = (100 - 2) * 100.0 / 1e6  # the 2 don't-care pixels are not scored
    years = 365 / 365.25
    assert s.false_alerts_per_km2_year == pytest.approx(1 / (scored_km2 * years))


def test_min_overlap_decides_whether_a_touching_component_matches() -> None:
    cd, labels = _empty(), _empty()
    cd[0:4, 0:4], labels[0:4, 0:4] = 1100, 1          # 16 px site
    conf = np.zeros((10, 10), bool)
    conf[3, 3:10] = True                              # 7 px component, 1 px on the site
    pred = ChangePrediction(conf, _empty(), _empty())
    truth = ChangeTruth(cd, labels)
    loose = score_change(truth, pred, 100.0, PERIOD, min_overlap=0.1)
    strict = score_change(truth, pred, 100.0, PERIOD, min_overlap=0.2)
    assert loose.object_tp_sites == 1 and loose.false_alerts == 0
    assert strict.object_tp_sites == 0 and strict.false_alerts == 1


def test_perfect_prediction_and_empty_prediction() -> None:
    truth, _ = _case()
    positive = (truth.change_date >= PERIOD[0]) & (truth.change_date <= PERIOD[1])
    perfect = ChangePrediction(positive, truth.change_date * positive,
                               (truth.change_date + 12) * positive)
    s = score_change(truth, perfect, 100.0, PERIOD)
    assert s.pixel_f1 == 1.0 and s.object_f1 == 1.0 and s.false_alerts == 0
    assert s.time_error_mean_days == 0.0 and s.delay_median_days == 12.0
    nothing = ChangePrediction(np.zeros((10, 10), bool), _empty(), _empty())
    s = score_change(truth, nothing, 100.0, PERIOD)
    assert s.pixel_tp == 0 and s.pixel_recall == 0.0 and s.pixel_f1 == 0.0
    assert math.isnan(s.pixel_precision) and math.isnan(s.delay_mean_days)
    assert s.n_objects == 0 and s.false_alerts_per_km2_year == 0.0


def test_changes_after_the_period_are_negatives() -> None:
    cd, labels = _empty(), _empty()
    cd[0:2, 0:2], labels[0:2, 0:2] = 2000, 1   # after the period end
    conf = np.zeros((10, 10), bool)
    conf[0:2, 0:2] = True
    s = score_change(ChangeTruth(cd, labels), ChangePrediction(conf, _empty(), _empty()),
                     100.0, PERIOD)
    assert s.n_sites == 0 and s.pixel_fp == 4 and s.false_alerts == 1


def test_bad_inputs_raise_clear_errors() -> None:
    truth, pred = _case()
    with pytest.raises(ScoringError, match="shape"):
        score_change(truth, ChangePrediction(pred.confirmed[:5], pred.change_date,
                                             pred.confirmation_date), 100.0, PERIOD)
    with pytest.raises(ScoringError, match="period"):
        score_change(truth, pred, 100.0, (10, 5))
    with pytest.raises(ScoringError, match="pixel area"):
        score_change(truth, pred, 0.0, PERIOD)
