"""Coverage (monitor.domain.coverage): the expected schedule learned from served items,
and missing / late / unusable / pending acquisitions kept apart.

The real series is Earth Search's ``sentinel-2-c1-l2a`` answer over tile 13TDE (Denver,
2025-07-11..29: Sentinel-2A, 2B and 2C on two relative orbits, one acquisition listed
twice). Longer series are built on its real timing (units' phases, orbit times of day).
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from monitor.domain.coverage import (
    CoverageParams,
    ListedItem,
    assess_source,
    find_gaps,
    gap_changes,
    group_passes,
    listed_item_from_stac,
    relative_orbit_of,
    unit_of,
)
from monitor.domain.events import COVERAGE_GAP_TYPE, json_schemas, parse_event

STAC_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stac").resolve()
WINDOW = (datetime(2025, 7, 11, tzinfo=UTC), datetime(2025, 7, 29, 23, 59, tzinfo=UTC))
AS_OF = datetime(2025, 8, 5, tzinfo=UTC)


def real(name: str) -> list[dict[str, Any]]:
    path = STAC_DIR / f"{name}__items.json"
    if not path.exists():
        pytest.skip(f"real STAC responses are absent ({STAC_DIR})")
    return json.loads(path.read_text())["features"]


def denver_series() -> list[dict[str, Any]]:
    return [f for f in real("earth-search__sentinel-2-c1-l2a") if "_T13TDE_" in f["id"]]


def assess(items: list[ListedItem], *, start: datetime = WINDOW[0], end: datetime = WINDOW[1],
           as_of: datetime = AS_OF, modality: str = "s2", **params: Any) -> Any:
    return assess_source(items, source="src", collection="col", start=start, end=end,
                         as_of=as_of, modality=modality, params=CoverageParams(**params))


def listed(series: list[dict[str, Any]], withheld: set[str] = frozenset()) -> list[ListedItem]:  # type: ignore[assignment]
    out = [listed_item_from_stac(f) for f in series if f["id"] not in withheld]
    assert all(i is not None for i in out)
    return out  # type: ignore[return-value]


# -- the real series ---------------------------------------------------------------------

def test_the_real_series_has_a_schedule_and_nothing_missing() -> None:
    cov = assess(listed(denver_series()))
    # two orbits (time of day 17:53 and 18:03, the items carry no orbit), each every 5 days
    # by Sentinel-2B + 2C; Sentinel-2A seen in one cycle only: listed, not expected
    assert cov.revisit() == {
        "t17:53": {"units": ["sentinel-2b", "sentinel-2c"], "repeat_days": 10, "revisit_days": 5.0},
        "t18:03": {"units": ["sentinel-2b", "sentinel-2c"], "repeat_days": 10, "revisit_days": 5.0}}
    assert cov.counts()["missing"] == 0 and cov.counts()["expected"] == 7
    assert len(cov.listed) == 9  # ten items: one acquisition (2C, 07-29) listed twice
    assert [p.item_ids for p in cov.unscheduled] == [("S2A_T13TDE_20250711T175745_L2A",),
                                                     ("S2A_T13TDE_20250718T175132_L2A",)]
    twice = next(p for p in cov.listed if p.day == date(2025, 7, 29))
    assert len(twice.item_ids) == 2


def test_two_withheld_real_acquisitions_are_named_exactly() -> None:
    withheld = {"S2B_T13TDE_20250721T174755_L2A", "S2C_T13TDE_20250726T175050_L2A"}
    cov = assess(listed(denver_series(), withheld))
    assert [(e.day, e.unit, e.orbit) for e in cov.missing] == [
        (date(2025, 7, 21), "sentinel-2b", "t17:53"), (date(2025, 7, 26), "sentinel-2c", "t17:53")]
    # Sentinel-2B has no item left on orbit t17:53: its phase there comes from 2A and 2C
    track = next(t for t in cov.tracks if (t.unit, t.orbit) == ("sentinel-2b", "t17:53"))
    assert track.status == "inferred" and not track.passes
    assert cov.pending == [] and cov.late == [] and cov.unusable == []


def test_a_withheld_acquisition_is_pending_within_the_grace_then_missing() -> None:
    series = denver_series()
    withheld = {i["id"] for i in series if "20250729" in i["id"]}  # both items of 2C 07-29
    items = listed(series, withheld)
    soon = datetime(2025, 7, 30, 12, tzinfo=UTC)  # 18 h after the pass
    cov = assess(items, as_of=soon)
    assert [e.day for e in cov.pending] == [date(2025, 7, 29)] and cov.missing == []
    later = assess(items, as_of=datetime(2025, 7, 31, 19, tzinfo=UTC))
    assert [e.day for e in later.missing] == [date(2025, 7, 29)] and later.pending == []


def test_units_and_orbits_from_real_items() -> None:
    es_s1 = real("earth-search__sentinel-1-grd")[0]
    pc_s1 = real("planetarycomputer__sentinel-1-grd")[0]
    pc_s2 = real("planetarycomputer__sentinel-2-l2a")[0]
    for item in (es_s1, pc_s1):
        unit = unit_of(item["properties"]["platform"], item["id"])
        assert unit == "sentinel-1a"
        # the absolute orbit in the id gives the same relative orbit as sat:relative_orbit
        without = {k: v for k, v in item["properties"].items() if k != "sat:relative_orbit"}
        assert relative_orbit_of(without, item["id"], unit) == item["properties"]["sat:relative_orbit"]
    assert listed_item_from_stac(pc_s2).orbit == 116  # type: ignore[union-attr]
    es_s2 = real("earth-search__sentinel-2-l2a")[1]
    got = listed_item_from_stac(es_s2)
    assert got is not None and got.unit == "sentinel-2b" and got.listed_by == "created"
    assert got.listed_at == datetime(2025, 7, 31, 14, 22, 36, 115000, tzinfo=UTC)


def test_tiles_of_one_pass_are_one_acquisition() -> None:
    pc = [listed_item_from_stac(i) for i in real("planetarycomputer__sentinel-2-l2a")]
    passes = group_passes([i for i in pc if i is not None])
    assert len(pc) == 33 and len(passes) == 1 and passes[0].orbit == "R116"


def test_all_cloud_and_all_nodata_items_are_unusable_not_missing() -> None:
    series = denver_series()
    target = "S2B_T13TDE_20250724T180145_L2A"
    cloudy = [dict(f, properties={**f["properties"], "eo:cloud_cover": 100.0})
              if f["id"] == target else f for f in series]
    cov = assess(listed(cloudy))
    assert [p.item_ids for p in cov.unusable] == [(target,)]
    assert "all cloud" in (cov.unusable[0].unusable or "")
    assert cov.missing == []
    nodata = [dict(f, properties={**f["properties"], "s2:nodata_pixel_percentage": 100})
              if f["id"] == target else f for f in series]
    assert "all no-data" in (assess(listed(nodata)).unusable[0].unusable or "")


# -- lateness ----------------------------------------------------------------------------

def _with(item: dict[str, Any], **props: Any) -> dict[str, Any]:
    return dict(item, properties={**item["properties"], **props})


def test_late_is_judged_by_the_items_own_listing_time() -> None:
    series = denver_series()
    late_id = "S2C_T13TDE_20250719T180004_L2A"
    timed = [_with(f, created="2025-07-23T09:00:00Z") if f["id"] == late_id
             else _with(f, created=f["properties"]["datetime"]) for f in series]
    cov = assess(listed(timed))
    assert [p.item_ids for p in cov.late] == [(late_id,)]
    assert cov.missing == []


def test_before_a_late_item_is_listed_it_is_missing() -> None:
    items = synthetic({"sentinel-2b": (date(2025, 3, 6), date(2025, 9, 30)),
                       "sentinel-2c": (date(2025, 3, 1), date(2025, 9, 30))},
                      date(2025, 3, 1), date(2025, 9, 30))
    target = next(i for i in items if i.acquired.date() == date(2025, 7, 19))
    late = ListedItem(**{**target.__dict__, "listed_at": target.acquired + timedelta(days=4)})
    items = [late if i is target else i for i in items]
    start = datetime(2025, 7, 1, tzinfo=UTC)
    before = assess(items, start=start, end=datetime(2025, 7, 22, 12, tzinfo=UTC),
                    as_of=datetime(2025, 7, 22, 12, tzinfo=UTC))
    assert [e.day for e in before.missing] == [date(2025, 7, 19)] and before.late == []
    after = assess(items, start=start, end=datetime(2025, 7, 30, tzinfo=UTC),
                   as_of=datetime(2025, 7, 30, tzinfo=UTC))
    assert after.missing == [] and [p.day for p in after.late] == [date(2025, 7, 19)]


def test_a_backfill_discovery_time_does_not_make_items_late() -> None:
    series = denver_series()
    found = datetime(2025, 10, 1, tzinfo=UTC)  # a backfill, months after
    items = [listed_item_from_stac(f, discovered_at=found) for f in series]
    cov = assess([i for i in items if i is not None])
    assert cov.late == [] and all(p.listed_by == "discovered" for p in cov.listed)
    soon = [listed_item_from_stac(f, discovered_at=datetime.fromisoformat(
        f["properties"]["datetime"].replace("Z", "+00:00")) + timedelta(days=3)) for f in series]
    assert len(assess([i for i in soon if i is not None]).late) == 9  # live polling: 3 d late


# -- longer series on the real timing -------------------------------------------------------

ORBITS = {"t18:03": (18, 3), "t17:53": (17, 53)}


def synthetic(units: dict[str, tuple[date, date]], start: date, end: date, *,
              repeat: int = 10, offset_days: int = 7, prefix: str = "S2") -> list[ListedItem]:
    """Passes of each unit on two orbits (orbit t17:53 ``offset_days`` after t18:03), from
    its first day (on orbit t18:03) every ``repeat`` days, while the unit is active."""
    out = []
    for unit, (first, last) in units.items():
        for orbit, (h, m) in ORBITS.items():
            day = first + timedelta(days=offset_days if orbit == "t17:53" else 0)
            while day <= min(last, end):
                if day >= start:
                    at = datetime(day.year, day.month, day.day, h, m, 10, tzinfo=UTC)
                    code = unit[-1].upper()
                    out.append(ListedItem(f"{prefix}{code}_{day:%Y%m%d}_{orbit}", at,
                                          unit=unit, listed_at=at + timedelta(hours=2),
                                          listed_by="created"))
                day += timedelta(days=repeat)
    return sorted(out, key=lambda i: i.acquired)


def test_withheld_acquisitions_of_a_long_series_are_found_exactly() -> None:
    # 2B and 2C on the real phases of the Denver series (2B 07-14, 2C 07-19 on t18:03)
    items = synthetic({"sentinel-2b": (date(2025, 3, 6), date(2025, 12, 31)),
                       "sentinel-2c": (date(2025, 3, 1), date(2025, 12, 31))},
                      date(2025, 3, 1), date(2025, 9, 30))
    rng = random.Random(20)
    start, end = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 9, 20, tzinfo=UTC)
    as_of = datetime(2025, 9, 30, tzinfo=UTC)
    inside = [i for i in items if start <= i.acquired <= end]
    for _ in range(20):
        withheld = set(rng.sample([i.item_id for i in inside], rng.randint(1, 6)))
        cov = assess([i for i in items if i.item_id not in withheld], start=start, end=end,
                     as_of=as_of)
        found = {f"S2{e.unit[-1].upper()}_{e.day:%Y%m%d}_{e.orbit}" for e in cov.missing}
        assert found == withheld


def test_a_lost_unit_ends_and_a_stall_stays_missing() -> None:
    # Sentinel-1A and 1B, 12 days each, 1B lost on 2021-12-23 (as it was)
    items = synthetic({"sentinel-1a": (date(2021, 6, 1), date(2022, 6, 30)),
                       "sentinel-1b": (date(2021, 6, 7), date(2021, 12, 23))},
                      date(2021, 6, 1), date(2022, 6, 30), repeat=12, offset_days=5, prefix="S1")
    as_of = datetime(2022, 6, 30, tzinfo=UTC)
    cov = assess(items, start=datetime(2021, 9, 1, tzinfo=UTC), end=as_of, as_of=as_of,
                 modality="s1")
    b_tracks = [t for t in cov.tracks if t.unit == "sentinel-1b"]
    assert b_tracks and all(t.status == "ended" for t in b_tracks)
    assert cov.missing == []  # after the loss, 1B is not expected
    assert cov.revisit()["t18:03"] == {"units": ["sentinel-1a"], "repeat_days": 12,
                                       "revisit_days": 12.0}
    # ... but within three repeats of its last pass, its silence was a gap
    early = datetime(2022, 1, 20, tzinfo=UTC)
    assert {e.unit for e in assess(items, start=datetime(2021, 12, 1, tzinfo=UTC), end=early,
                                   as_of=early, modality="s1").missing} == {"sentinel-1b"}
    # a stall of the whole source (nothing listed 2022-03-01..04-15) stays missing
    stalled = [i for i in items
               if not datetime(2022, 3, 1, tzinfo=UTC) <= i.acquired <= datetime(2022, 4, 15, tzinfo=UTC)]
    cov = assess(stalled, start=datetime(2022, 1, 1, tzinfo=UTC), end=as_of, as_of=as_of,
                 modality="s1")
    assert len(cov.missing) == 8 and {e.unit for e in cov.missing} == {"sentinel-1a"}
    gaps = find_gaps(cov)
    assert len(gaps) == 1 and len(gaps[0].missing) == 8 and gaps[0].state == "closed"


def test_a_new_unit_is_expected_once_seen_over_a_repeat() -> None:
    items = synthetic({"sentinel-2b": (date(2025, 1, 4), date(2025, 6, 30)),
                       "sentinel-2c": (date(2025, 3, 9), date(2025, 6, 30))},
                      date(2025, 1, 1), date(2025, 6, 30))
    early = datetime(2025, 3, 15, tzinfo=UTC)  # 2C seen for 6 days
    cov = assess(items, start=datetime(2025, 3, 1, tzinfo=UTC), end=early, as_of=early)
    assert {t.status for t in cov.tracks if t.unit == "sentinel-2c"} == {"unscheduled"}
    late = datetime(2025, 6, 30, tzinfo=UTC)
    cov = assess(items, start=datetime(2025, 5, 1, tzinfo=UTC), end=late, as_of=late)
    assert cov.revisit()["t17:53"]["revisit_days"] == 5.0 and cov.missing == []


def test_gap_changes_open_then_close() -> None:
    items = synthetic({"sentinel-2b": (date(2025, 3, 6), date(2025, 9, 30)),
                       "sentinel-2c": (date(2025, 3, 1), date(2025, 9, 30))},
                      date(2025, 3, 1), date(2025, 9, 30))
    dropped = {i.item_id for i in items if i.acquired.date() == date(2025, 7, 21)}
    items = [i for i in items if i.item_id not in dropped]
    start = datetime(2025, 7, 1, tzinfo=UTC)

    def gaps(at: datetime) -> Any:
        return find_gaps(assess(items, start=start, end=at, as_of=at))

    t0, t1, t2 = (datetime(2025, 7, 23, 12, tzinfo=UTC), datetime(2025, 7, 24, 12, tzinfo=UTC),
                  datetime(2025, 7, 25, 12, tzinfo=UTC))
    assert gaps(t0) == []  # 07-21 still within the grace
    opened = gap_changes(gaps(t0), gaps(t1))
    assert [(c.state, c.gap.missing[0].day) for c in opened] == [("open", date(2025, 7, 21))]
    closed = gap_changes(gaps(t1), gaps(t2))  # 2B listed 07-24 (+2 h): the flow resumed
    assert [(c.state, c.gap.missing[0].day) for c in closed] == [("closed", date(2025, 7, 21))]
    assert closed[0].gap.resumed_with is not None
    assert closed[0].gap.resumed_with.day == date(2025, 7, 24)
    assert gap_changes(gaps(t2), gaps(t2)) == []  # nothing new: nothing to say


def test_the_gap_event_of_the_real_series_validates() -> None:
    from monitor.pipeline.coverage import gap_event

    withheld = {"S2B_T13TDE_20250721T174755_L2A", "S2C_T13TDE_20250726T175050_L2A"}
    series = [_with(f, created=f["properties"]["datetime"]) for f in denver_series()]
    cov = assess(listed(series, withheld))
    changes = gap_changes([], find_gaps(cov))  # both opened and closed since "never"
    assert [(c.state, c.gap.missing[0].day) for c in changes] == [
        ("open", date(2025, 7, 21)), ("closed", date(2025, 7, 21)),
        ("open", date(2025, 7, 26)), ("closed", date(2025, 7, 26))]
    events = [gap_event("denver", cov, c) for c in changes]
    schema = json_schemas()["coverage-gap-event.v1"]
    for event in events:
        jsonschema.validate(json.loads(event.to_json()), schema)
        assert parse_event(event.to_json()).type == COVERAGE_GAP_TYPE
    closed = json.loads(events[1].to_json())["data"]
    assert closed["state"] == "closed" and closed["resumed_item_ids"] == [
        "S2B_T13TDE_20250724T180145_L2A"]
    assert [m["date"] for m in closed["missing"]] == ["2025-07-21"]
    assert gap_event("denver", cov, changes[1]).id == events[1].id  # deterministic
    assert events[0].id != events[1].id and events[0].data.gap_id == events[1].data.gap_id  # type: ignore[union-attr]


def test_a_pass_over_midnight_utc_is_one_acquisition() -> None:
    # Planetary Computer's R116 pass of 2019-01-01 starts at 00:00:01; the tiles before it
    # on the same pass are acquired seconds before midnight.
    real_item = listed_item_from_stac(real("planetarycomputer__sentinel-2-l2a")[0])
    assert real_item is not None and real_item.orbit == 116
    items: list[ListedItem] = []
    for k in range(-12, 13):  # S2A and S2B on R116, five days apart, frames across midnight
        unit = "sentinel-2a" if k % 2 == 0 else "sentinel-2b"
        at = real_item.acquired + timedelta(days=5 * k)
        items += [ListedItem(f"{unit}-{k}-a", at, unit=unit, orbit=116),
                  ListedItem(f"{unit}-{k}-b", at - timedelta(seconds=9), unit=unit, orbit=116)]
    passes = group_passes(items)
    assert len(passes) == 25 and all(len(p.item_ids) == 2 for p in passes)
    start, end = real_item.acquired - timedelta(days=40), real_item.acquired + timedelta(days=40)
    cov = assess(items, start=start, end=end, as_of=end + timedelta(days=5))
    assert cov.missing == [] and cov.revisit() == {
        "R116": {"units": ["sentinel-2a", "sentinel-2b"], "repeat_days": 10, "revisit_days": 5.0}}
    dropped = [i for i in items if not i.item_id.startswith("sentinel-2b-3-")]
    missing = assess(dropped, start=start, end=end, as_of=end + timedelta(days=5)).missing
    (gone,) = missing  # its usual time is 23:59:56 UTC, the pass's day is the 15th
    assert gone.unit == "sentinel-2b" and gone.day == date(2019, 1, 15)
    assert abs(gone.at - (real_item.acquired + timedelta(days=15))) < timedelta(seconds=10)
