"""Alerts from site reports: ids, revisions only on material change, a final confirmation."""

from __future__ import annotations

from datetime import date

import pytest
from shapely.geometry import box, mapping

from monitor.domain.alerts import Alert, AlertRules, alert_id_for, fold_site
from monitor.domain.events import ChangeSite
from monitor.errors import AlertError

RULES = AlertRules(min_mapping_unit_m2=1000, confidence_step=0.05)
CITY = "lagos"
# ~ 4 ha at the equator-ish latitude of Lagos (0.002 deg ~ 220 m)
SQUARE = box(3.30, 6.50, 3.302, 6.502)


def site(site_id: str = "1", status: str = "first", *, geom=SQUARE, pixels: int = 400,
         first: date = date(2024, 3, 1), confirmed: date | None = None,
         change: date | None = date(2024, 2, 20), confidence: float = 0.3,
         closed: date | None = None) -> ChangeSite:
    return ChangeSite(site_id=site_id, status=status,  # type: ignore[arg-type]
                      geometry=dict(mapping(geom)) if geom is not None else None,
                      bbox=list(geom.bounds) if geom is not None else None, n_pixels=pixels,
                      area_m2=pixels * 100.0, first_detected=first, confirmed=confirmed,
                      closed=closed, change_date=change, confidence=confidence)


def fold(existing: Alert | None, report: ChangeSite, scene: str = "S2_1") -> Alert | None:
    return fold_site(existing, report, city_id=CITY, model_version="m@1", scene_ids=[scene],
                     rules=RULES)


def test_a_new_site_becomes_an_alert_whose_id_is_the_sites() -> None:
    alert = fold(None, site("7"))
    assert alert is not None
    assert alert.alert_id == alert_id_for(CITY, "7") != alert_id_for(CITY, "8")
    assert alert_id_for(CITY, "7") != alert_id_for("other-city", "7")
    assert (alert.status, alert.revision, alert.site_id) == ("first", 1, "7")
    assert alert.first_detected == date(2024, 3, 1) and alert.change_date == date(2024, 2, 20)
    assert alert.scene_ids == ("S2_1",)


def test_sites_below_the_mapping_unit_or_already_closed_are_not_announced() -> None:
    assert fold(None, site(pixels=5)) is None
    assert fold(None, site(status="retracted", geom=None, pixels=0)) is None


def test_the_same_report_twice_makes_no_revision() -> None:
    alert = fold(None, site())
    assert fold(alert, site(), scene="S2_2") is None


def test_the_lifecycle_moves_forward_one_revision_per_material_change() -> None:
    alert = fold(None, site())
    alert = fold(alert, site(status="provisional", confidence=0.6))
    assert alert is not None and (alert.status, alert.revision, alert.confidence) == (
        "provisional", 2, 0.6)
    alert = fold(alert, site(status="confirmed", confirmed=date(2024, 3, 20), confidence=0.8,
                             geom=box(3.30, 6.50, 3.3025, 6.502)), scene="S2_3")
    assert alert is not None
    assert (alert.status, alert.revision, alert.confirmed) == ("confirmed", 3, date(2024, 3, 20))
    assert alert.scene_ids == ("S2_1", "S2_3")
    assert alert.area_m2 == 40000.0


def test_confirmed_is_final_and_withdrawn_is_its_own_status() -> None:
    alert = fold(None, site(status="confirmed", confirmed=date(2024, 3, 20)))
    assert alert is not None
    # a later report that would take it back (a stale or wrong producer) is refused
    assert fold(alert, site(status="provisional")) is None
    again = fold(alert, site(status="retracted", geom=None, pixels=0, closed=date(2024, 6, 1)))
    assert again is None
    withdrawn = fold(alert, site(status="withdrawn", geom=None, pixels=0,
                                 closed=date(2025, 4, 1)))
    assert withdrawn is not None
    assert (withdrawn.status, withdrawn.retracted, withdrawn.confirmed) == (
        "withdrawn", date(2025, 4, 1), date(2024, 3, 20))
    assert withdrawn.geometry.equals(alert.geometry)  # where it was stays known
    later = fold(withdrawn, site(status="confirmed", confirmed=date(2025, 5, 1)))
    assert later is None or later.status == "withdrawn"  # terminal


def test_a_retracted_site_that_comes_back_reopens_its_alert() -> None:
    alert = fold(None, site())
    gone = fold(alert, site(status="retracted", geom=None, pixels=0, closed=date(2024, 5, 1)))
    assert gone is not None and (gone.status, gone.retracted) == ("retracted", date(2024, 5, 1))
    back = fold(gone, site(first=date(2024, 9, 1), change=date(2024, 8, 25)))
    assert back is not None
    assert (back.alert_id, back.status, back.retracted, back.revision) == (
        alert.alert_id, "first", None, 3)


def test_small_confidence_moves_make_no_revision() -> None:
    alert = fold(None, site(confidence=0.30))
    assert fold(alert, site(confidence=0.33)) is None
    moved = fold(alert, site(confidence=0.36))
    assert moved is not None and moved.confidence == 0.36


def test_ids_cannot_collide_under_a_forced_anchor_collision() -> None:
    # Two different sites on exactly the same pixels and first-detection day (the old
    # anchor-hash scheme gave them one id): they are two alerts, and folding the second
    # never touches the first.
    first = fold(None, site("1", status="confirmed", confirmed=date(2024, 3, 10)))
    second = fold(None, site("2"))
    assert first is not None and second is not None
    assert first.alert_id != second.alert_id
    assert (first.revision, second.revision) == (1, 1)


def test_invalid_geometry_is_a_clear_error() -> None:
    bad = site().model_copy(update={"geometry": {"type": "Point", "coordinates": [3.3, 6.5]}})
    with pytest.raises(AlertError, match="site 1"):
        fold(None, bad)
