"""City stats without an external built-up baseline: the series starts with the city's own
record (the day before its earliest alert), not at the state's internal day epoch; the
freshness shares of the view (issue 20)."""

from __future__ import annotations

from datetime import date

import numpy as np

from monitor.domain.records import StoredAlert
from monitor.domain.vocabulary import date_to_day
from monitor.pipeline.city_stats import CityInfo, city_stats, clear_view_stats

SQUARE = {"type": "Polygon", "coordinates": [[[3, 6], [3.01, 6], [3.01, 6.01], [3, 6.01], [3, 6]]]}


def _alert(i: int, status: str, first: date, change: date | None) -> StoredAlert:
    return StoredAlert(id=f"a{i}", city_id="c", status=status, geometry=SQUARE, area_m2=1000.0,
                       first_detected=first, confidence=0.8, model_version="m",
                       confirmed=first if status == "confirmed" else None, change_date=change)


def test_without_a_baseline_the_series_starts_with_the_city_record() -> None:
    city = CityInfo(id="c", name="C", aoi=SQUARE)
    alerts = [_alert(1, "confirmed", date(2021, 5, 1), date(2021, 4, 20)),
              _alert(2, "first", date(2021, 3, 1), date(2021, 2, 25)),
              _alert(3, "confirmed", date(2022, 1, 1), None)]
    series = city_stats(city, alerts, None, None)["built_up_series"]
    assert series[0]["date"] == "2021-02-24"  # the day before the earliest alert's change
    assert all(s["date"] >= "2021-02-24" for s in series)
    assert city_stats(city, [], None, None)["built_up_series"] == []


def test_clear_view_shares() -> None:
    last = np.zeros((10, 10), np.uint16)
    last[:2] = date_to_day(date(2024, 6, 25))   # 20 % seen 5 days ago
    last[2:5] = date_to_day(date(2024, 5, 1))   # 30 % seen 60 days ago
    out = clear_view_stats(last, date(2024, 6, 30))
    assert out["seen_clear_30d_share"] == 0.2
    assert out["seen_clear_90d_share"] == 0.5
    assert out["never_seen_clear_share"] == 0.5
    assert out["last_clear_date"] == "2024-06-25"
