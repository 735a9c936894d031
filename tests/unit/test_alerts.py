"""Alert tracking: regions -> one alert per site, lifecycle, merging, idempotence."""

from __future__ import annotations

from datetime import date

import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping

from monitor.domain.alerts import Alert, AlertRules, track_alerts
from monitor.domain.events import ChangeRegion
from monitor.errors import AlertError

TO_LONLAT = Transformer.from_crs(32633, 4326, always_xy=True).transform
X0, Y0 = 500_000.0, 6_600_000.0
RULES = AlertRules(min_mapping_unit_m2=1000, match_distance_m=20, confidence_step=0.05)


def region(rid: str, x: float, y: float, w: float, h: float, *, status: str = "first",
           first: date = date(2024, 3, 1), confirmed: date | None = None,
           change: date | None = date(2024, 2, 1), confidence: float = 0.6) -> ChangeRegion:
    """A w x h metre rectangle whose lower-left corner is (x, y) metres from the origin."""
    utm = box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h)
    geom = shapely.transform(utm, TO_LONLAT, interleaved=False)
    n = int(round(w * h / 100))
    return ChangeRegion(region_id=rid, geometry=dict(mapping(geom)), status=status,
                        n_pixels=n, area_m2=w * h, first_detected=first, confirmed=confirmed,
                        change_date=change, confidence=confidence)


def apply(existing: list[Alert], regions: list[ChangeRegion], scene: str = "s1",
          observed: date = date(2024, 3, 1)) -> tuple[list[Alert], list[Alert]]:
    result = track_alerts(existing, regions, city_id="c", model_version="m1",
                          scene_ids=[scene], observed=observed, rules=RULES)
    by_id = {a.alert_id: a for a in existing}
    by_id.update({a.alert_id: a for a in result.changed})
    return result.changed, sorted(by_id.values(), key=lambda a: a.alert_id)


def test_new_alert_above_the_minimum_mapping_unit_only() -> None:
    changed, alerts = apply([], [region("big", 0, 0, 40, 30), region("tiny", 500, 500, 20, 20)])
    assert len(changed) == 1 and len(alerts) == 1
    (a,) = alerts
    assert (a.status, a.revision, a.first_detected, a.change_date) == ("first", 1,
                                                                        date(2024, 3, 1),
                                                                        date(2024, 2, 1))
    assert a.area_m2 == pytest.approx(1200, rel=1e-6)
    assert a.scene_ids == ("s1",) and a.model_version == "m1"
    # Deterministic id: a fresh run on the same input gives the same id.
    again, _ = apply([], [region("big", 0, 0, 40, 30)])
    assert again[0].alert_id == a.alert_id


def test_same_event_twice_makes_no_new_revision() -> None:
    regions = [region("r", 0, 0, 40, 30, confidence=0.61)]
    _, alerts = apply([], regions)
    changed, alerts2 = apply(alerts, regions)
    assert changed == [] and alerts2 == alerts
    # A new scene with a nearly equal confidence changes nothing either.
    changed, _ = apply(alerts, [region("r", 0, 0, 40, 30, confidence=0.63)], scene="s2")
    assert changed == []


def test_growing_site_updates_its_one_alert_through_the_lifecycle() -> None:
    _, alerts = apply([], [region("r", 0, 0, 40, 30)])
    (first,) = alerts
    # Grows and becomes provisional (the region id changed: the anchor moved).
    changed, alerts = apply(alerts, [region("r2", -10, 0, 60, 40, status="provisional",
                                            first=date(2024, 3, 5), confidence=0.8)], "s2")
    assert [a.alert_id for a in changed] == [first.alert_id]
    grown = changed[0]
    assert (grown.status, grown.revision) == ("provisional", 2)
    assert grown.area_m2 == pytest.approx(2400, rel=1e-6)
    assert grown.first_detected == date(2024, 3, 1)             # earliest kept
    assert grown.confidence == pytest.approx(0.8) and grown.scene_ids == ("s1", "s2")
    # Confirmed.
    changed, alerts = apply(alerts, [region("r2", -10, 0, 60, 40, status="confirmed",
                                            confirmed=date(2024, 4, 1), confidence=0.95)], "s3")
    assert (changed[0].status, changed[0].confirmed, changed[0].revision) == (
        "confirmed", date(2024, 4, 1), 3)
    # Confirmed is sticky: a later 'first' patch of the same site does not downgrade it.
    changed, alerts = apply(alerts, [region("r2", -10, 0, 60, 40, status="first",
                                            confidence=0.95)], "s4")
    assert changed == [] and alerts[0].status == "confirmed"
    # Every pixel retracted: the alert is retracted on the observation date; then reopens.
    changed, alerts = apply(alerts, [region("r2", -10, 0, 60, 40, status="retracted",
                                            confidence=0.95)], "s5", date(2024, 5, 1))
    assert (changed[0].status, changed[0].retracted) == ("retracted", date(2024, 5, 1))
    changed, alerts = apply(alerts, [region("r3", -10, 0, 60, 40, status="provisional",
                                            confidence=0.95)], "s6")
    assert (changed[0].alert_id, changed[0].status, changed[0].retracted) == (
        first.alert_id, "provisional", None)
    assert len(alerts) == 1


def test_nearby_regions_join_and_bridging_region_merges_alerts() -> None:
    _, alerts = apply([], [region("a", 0, 0, 40, 30, first=date(2024, 1, 1)),
                           region("b", 200, 0, 40, 30, first=date(2024, 2, 1))])
    assert len(alerts) == 2
    older = next(a for a in alerts if a.first_detected == date(2024, 1, 1))
    newer = next(a for a in alerts if a.first_detected == date(2024, 2, 1))
    # A region 15 m east of 'a' (within 20 m): same site, no new alert.
    changed, alerts = apply(alerts, [region("near", 55, 0, 20, 20)], "s2")
    assert [a.alert_id for a in changed] == [older.alert_id] and len(alerts) == 2
    # A region spanning both sites: 'b' is merged into the older 'a'.
    changed, alerts = apply(alerts, [region("bridge", 30, 0, 180, 20, status="provisional")],
                            "s3")
    by_id = {a.alert_id: a for a in changed}
    assert by_id[newer.alert_id].status == "retracted"
    assert by_id[newer.alert_id].merged_into == older.alert_id
    target = by_id[older.alert_id]
    assert target.status == "provisional"
    # the footprint is what this ChangeEvent shows now: the bridge patch
    assert target.area_m2 == pytest.approx(3600, rel=1e-4)
    # Replaying the bridge changes nothing.
    changed, _ = apply(alerts, [region("bridge", 30, 0, 180, 20, status="provisional")], "s3")
    assert changed == []


def test_bad_region_geometry_is_an_alert_error() -> None:
    bad = region("x", 0, 0, 40, 30).model_copy(update={"geometry": {"type": "Point",
                                                                      "coordinates": [15, 59]}})
    with pytest.raises(AlertError, match="region x"):
        apply([], [bad])


def test_confirmed_site_ignores_its_flickering_fringe() -> None:
    confirmed = region("c", 0, 0, 40, 30, status="confirmed", confirmed=date(2024, 4, 1),
                       confidence=0.9)
    _, alerts = apply([], [confirmed])
    (site,) = alerts
    assert site.status == "confirmed"
    # the next scene sees the same confirmed core plus a 'first' fringe next to it
    fringe = region("f", 40, 0, 10, 30, status="first", confidence=0.9)
    changed, after = apply(alerts, [confirmed, fringe], scene="s2")
    assert changed == []
    assert after[0].area_m2 == pytest.approx(site.area_m2)
    # the core growing with confirmed pixels still updates the one alert
    grown = region("c", 0, 0, 50, 30, status="confirmed", confirmed=date(2024, 4, 1),
                   confidence=0.9)
    changed, after = apply(alerts, [grown], scene="s3")
    assert len(changed) == 1 and changed[0].revision == 2
    assert changed[0].area_m2 == pytest.approx(1500, rel=1e-6)


def test_retracted_speckle_between_two_sites_does_not_merge_them() -> None:
    a = region("a", 0, 0, 40, 30, status="provisional")
    b = region("b", 100, 0, 40, 30, status="provisional")
    _, alerts = apply([], [a, b])
    assert len(alerts) == 2
    speckle = region("s", 35, 0, 70, 10, status="retracted", confidence=0.05)
    changed, after = apply(alerts, [a, b, speckle], scene="s2")
    assert len(after) == 2 and all(x.status == "provisional" for x in after)
    assert all(x.revision == 1 for x in after) and changed == []


def test_geometry_operations_survive_invalid_inputs() -> None:
    from shapely.geometry import Polygon

    from monitor.domain.alerts import robust, unary_union

    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10), (0, 0)])  # self-intersecting
    other = box(5, 5, 15, 15)
    assert robust(shapely.symmetric_difference, bowtie, other).area > 0
    assert unary_union([bowtie, other]).area > 0
