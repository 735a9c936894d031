"""Scoring published alerts against the truth, on small hand-made rasters: every figure of
``monitor.domain.alert_scoring`` checked against a count done by hand."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.domain.alert_scoring import AlertScore, ScoredAlert, score_alerts
from monitor.domain.scoring import ChangeTruth
from monitor.errors import ScoringError

H, W = 20, 20
START, END = 1000, 1000 + 365   # one monitored year (epoch days)


def truth() -> ChangeTruth:
    """Two sites of 4x4 px changing on days 1100 and 1200, one 2x2 site (below the mapping
    unit) on day 1150, and a 4x4 site that changed before the period (a don't-care)."""
    date = np.zeros((H, W), np.int32)
    labels = np.zeros((H, W), np.int32)
    date[0:4, 0:4], labels[0:4, 0:4] = 1100, 1
    date[10:14, 10:14], labels[10:14, 10:14] = 1200, 2
    date[0:2, 18:20], labels[0:2, 18:20] = 1150, 3
    date[16:20, 0:4], labels[16:20, 0:4] = 900, 4
    return ChangeTruth(change_date=date, site_labels=labels)


def alert(name: str, status: str, rows: slice, cols: slice, *, change: int | None = None,
          confirmed: int | None = None, warning: int | None = None,
          provisional: bool = False) -> ScoredAlert:
    mask = np.zeros((H, W), bool)
    mask[rows, cols] = True
    return ScoredAlert(alert_id=name, status=status, mask=mask, change_day=change,
                       confirmed_day=confirmed, first_day=change, ever_provisional=provisional,
                       warning_day=warning)


def score(alerts: list[ScoredAlert], **kw: object) -> AlertScore:
    return score_alerts(truth(), alerts, scored=np.ones((H, W), bool), pixel_area_m2=100.0,
                        period=(START, END), **kw)  # type: ignore[arg-type]


def test_objects_pixels_dates_and_the_warning_delay_by_hand() -> None:
    alerts = [
        # site 1 found: 12 of its 16 px, change 4 d late, confirmed 30 d after, warned at 10 d
        alert("a", "confirmed", slice(0, 3), slice(0, 4), change=1104, confirmed=1130,
              warning=1110, provisional=True),
        # a false confirmed alert, 6 px on unchanged land
        alert("b", "confirmed", slice(6, 8), slice(6, 9), change=1150, confirmed=1170,
              warning=1160, provisional=True),
        # a provisional warning that ended retracted
        alert("c", "retracted", slice(15, 16), slice(10, 12), provisional=True),
        # a first detection that never warned (not in the retracted share)
        alert("d", "retracted", slice(18, 19), slice(10, 12)),
        # a confirmed alert entirely on the site that changed before the period: not counted
        alert("e", "confirmed", slice(16, 18), slice(0, 2), change=950, confirmed=1010),
    ]
    s = score(alerts)
    assert (s.n_sites, s.sites_found) == (2, 1)            # site 3 is below 10 px
    assert (s.n_confirmed, s.confirmed_right, s.false_alerts) == (2, 1, 1)
    assert s.object_precision == 0.5 and s.object_recall == 0.5 and s.object_f1 == 0.5
    assert (s.pixel_tp, s.pixel_fp) == (12, 6)
    assert s.pixel_fn == 16 - 12 + 16 + 4                  # site 1's rest, site 2, site 3
    assert s.time_errors == [4.0] and s.delays == [30.0] and s.warning_delays == [10.0]
    assert s.figures()["warning_delay_median_days"] == 10.0
    # every alert that warned or confirmed (a, b, c, e) is a warning; one of them retracted
    assert (s.provisional_ever, s.provisional_ever_retracted) == (4, 1)
    assert s.retracted_share == pytest.approx(1 / 4)
    assert s.retracted_final == 2 and s.alerts_ever == 5
    # one false alert over the scored area less the don't-care site, for a year
    km2 = (H * W - 16) * 100.0 / 1e6
    assert s.false_alerts_per_km2_year == pytest.approx(1 / (km2 * 365 / 365.25))


def test_alerts_without_a_warning_day_leave_the_warning_delay_unknown() -> None:
    s = score([alert("a", "confirmed", slice(0, 4), slice(0, 4), change=1100, confirmed=1120,
                     provisional=True)])
    assert s.delays == [20.0] and s.warning_delays == []
    assert np.isnan(s.warning_delay_median_days)


def test_confirmed_before_the_first_change_and_in_the_baseline_are_counted() -> None:
    early = alert("a", "confirmed", slice(10, 14), slice(10, 14), change=1010, confirmed=1020)
    s = score([early], baseline_end=1030)
    assert s.sites_found == 1 and s.delays == [1020.0 - 1200]
    assert s.confirmed_before_change == 1 and s.confirmed_in_baseline == 1
    assert score([early], baseline_end=1015).confirmed_in_baseline == 0


def test_pooling_adds_counts_and_repools_the_medians() -> None:
    one = score([alert("a", "confirmed", slice(0, 4), slice(0, 4), change=1100,
                       confirmed=1140, warning=1120, provisional=True)])
    two = score([alert("b", "confirmed", slice(10, 14), slice(10, 14), change=1202,
                       confirmed=1220, warning=1204, provisional=True)])
    total = AlertScore()
    total.add(one)
    total.add(two)
    assert total.sites_found == 2 and total.n_sites == 4
    assert total.delays == [40.0, 20.0] and total.delay_median_days == 30.0
    assert total.warning_delay_median_days == 12.0
    assert total.years == pytest.approx(one.years)


def test_masks_of_another_shape_or_an_empty_period_raise_clear_errors() -> None:
    bad = ScoredAlert("x", "confirmed", np.zeros((3, 3), bool), None, None, None)
    with pytest.raises(ScoringError, match="shape"):
        score([bad])
    with pytest.raises(ScoringError, match="empty"):
        score_alerts(truth(), [], scored=np.ones((H, W), bool), pixel_area_m2=100.0,
                     period=(END, START))
