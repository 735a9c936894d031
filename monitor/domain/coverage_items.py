"""Coverage, part one: listed STAC items as acquisitions (units, relative orbits or pass
time of day, passes grouped over tiles and midnight) and each unit's repeat.
:mod:`monitor.domain.coverage` learns the schedule from these and sets it against what was
listed. Pure: standard library only.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from statistics import median
from typing import Any, Literal

from monitor.domain.vocabulary import as_utc, iso_utc

# One unit's repeat cycle, in days (the exact repeat of its reference orbit).
UNIT_REPEAT_DAYS: dict[str, int] = {"sentinel-1": 12, "sentinel-2": 10}
# Sentinel-1 relative orbit from the absolute orbit number in the product id.
_S1_ORBIT_OFFSET = {"sentinel-1a": 73, "sentinel-1b": 27}
_S1_CYCLE_ORBITS = 175
# Items whose acquisition time-of-day lies within this many minutes belong to one orbit
# (passes of one orbit over a city vary by seconds; neighbouring orbits differ ~10 min).
ORBIT_TIME_TOLERANCE_MIN = 4.0
FULLY = 99.5  # a scene with at least this much cloud (or no-data), in percent, is unusable

_UNIT_IN_ID = re.compile(r"^(S[12])([A-D])_", re.IGNORECASE)
_S2_ORBIT_IN_ID = re.compile(r"_R(\d{3})_")
_S1_ABS_ORBIT_IN_ID = re.compile(r"^S1[A-D]_\w{2}_\w{4}_\w{4}_\d{8}T\d{6}_\d{8}T\d{6}_(\d{6})_")

ListedBy = Literal["published", "created", "discovered", "unknown"]


@dataclass(frozen=True)
class CoverageParams:
    """What counts as late or missing, and how cautious the schedule learning is."""

    grace: timedelta = timedelta(hours=48)
    lost_after_cycles: float = 3.0
    min_fill: float = 0.5
    # A discovery time this long after acquisition says "found by a backfill", not "listed
    # then": it is not used to judge lateness (the item's own published/created is).
    backfill_horizon: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class ListedItem:
    """One item a source listed for a city, reduced to what coverage needs."""

    item_id: str
    acquired: datetime
    unit: str | None = None         # "sentinel-2b"
    orbit: int | None = None        # relative orbit, when known
    listed_at: datetime | None = None
    listed_by: ListedBy = "unknown"
    unusable: str | None = None     # why nothing could be seen in it


def unit_of(platform: Any, item_id: str) -> str | None:
    """``sentinel-2b`` from the ``platform`` property (any case) or the item id prefix."""
    if isinstance(platform, str) and re.fullmatch(r"sentinel-[12][a-d]", platform.strip().lower()):
        return platform.strip().lower()
    match = _UNIT_IN_ID.match(item_id)
    if match:
        return f"sentinel-{match.group(1)[1]}{match.group(2).lower()}"
    return None


def relative_orbit_of(props: Mapping[str, Any], item_id: str, unit: str | None) -> int | None:
    """``sat:relative_orbit``, else from the id (S2 ``_R116_``; S1A/S1B absolute orbit)."""
    value = props.get("sat:relative_orbit")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if unit and unit.startswith("sentinel-2"):
        match = _S2_ORBIT_IN_ID.search(item_id)
        return int(match.group(1)) if match else None
    if unit in _S1_ORBIT_OFFSET:
        match = _S1_ABS_ORBIT_IN_ID.match(item_id)
        if match:
            return (int(match.group(1)) - _S1_ORBIT_OFFSET[unit]) % _S1_CYCLE_ORBITS + 1
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        return None
    return as_utc(parsed)


def _percent(props: Mapping[str, Any], key: str) -> float | None:
    value = props.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def unusable_reason(props: Mapping[str, Any]) -> str | None:
    """"all cloud" / "all no-data" from the item's scene-level properties, else None."""
    cloud = _percent(props, "eo:cloud_cover")
    if cloud is not None and cloud >= FULLY:
        return f"all cloud (eo:cloud_cover {cloud:.1f} %)"
    nodata = _percent(props, "s2:nodata_pixel_percentage")
    if nodata is not None and nodata >= FULLY:
        return f"all no-data (s2:nodata_pixel_percentage {nodata:.1f} %)"
    return None


def listed_item_from_stac(item: Mapping[str, Any], *,
                          discovered_at: datetime | None = None) -> ListedItem | None:
    """A STAC item (a dict as the API returned it) as a :class:`ListedItem`; None if it has
    no id or no acquisition time (discovery records those as skipped items)."""
    item_id = item.get("id")
    props = item.get("properties")
    if not isinstance(item_id, str) or not item_id or not isinstance(props, Mapping):
        return None
    acquired = _parse_time(props.get("datetime")) or _parse_time(props.get("start_datetime"))
    if acquired is None:
        return None
    unit = unit_of(props.get("platform"), item_id)
    listed_at: datetime | None = None
    listed_by: ListedBy = "unknown"
    for key in ("published", "created"):
        stamp = _parse_time(props.get(key))
        if stamp is not None:
            listed_at, listed_by = stamp, ("published" if key == "published" else "created")
            break
    if listed_at is None and discovered_at is not None:
        listed_at, listed_by = as_utc(discovered_at), "discovered"
    return ListedItem(item_id=item_id, acquired=acquired, unit=unit,
                      orbit=relative_orbit_of(props, item_id, unit), listed_at=listed_at,
                      listed_by=listed_by, unusable=unusable_reason(props))


# -- passes -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pass:
    """One acquisition: a unit over the city on one orbit on one UTC day (all its items)."""

    unit: str
    orbit: str
    day: date
    acquired: datetime
    item_ids: tuple[str, ...]
    listed_at: datetime | None
    listed_by: ListedBy
    unusable: str | None

    def to_dict(self, params: CoverageParams | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "date": self.day.isoformat(), "acquired": iso_utc(self.acquired),
            "unit": self.unit, "orbit": self.orbit, "item_ids": list(self.item_ids),
            "listed_at": iso_utc(self.listed_at) if self.listed_at else None,
            "listed_by": self.listed_by,
        }
        if self.listed_at is not None:
            out["delay_hours"] = round((self.listed_at - self.acquired).total_seconds() / 3600, 1)
        if self.unusable:
            out["reason"] = self.unusable
        return out


def _seconds_of_day(value: datetime) -> float:
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6


DAY_S = 86400.0


def circular_median_seconds(seconds: Iterable[float]) -> float:
    """The median time of day (seconds), across midnight: 23:59:50 and 00:00:10 give
    00:00:00, not noon."""
    values = list(seconds)
    ref = values[0]
    offsets = [(v - ref + DAY_S / 2) % DAY_S - DAY_S / 2 for v in values]
    return (ref + median(offsets)) % DAY_S


def _label(seconds: float) -> str:
    return f"t{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}"


def _time_of_day_labels(times: Sequence[datetime]) -> dict[datetime, str]:
    """Cluster acquisition times of day (within ORBIT_TIME_TOLERANCE_MIN of a neighbour,
    across midnight too); label each time with its cluster's median time, ``t17:53``."""
    if not times:
        return {}
    tolerance = ORBIT_TIME_TOLERANCE_MIN * 60
    ordered = sorted(set(times), key=_seconds_of_day)
    clusters: list[list[datetime]] = [[ordered[0]]]
    for value in ordered[1:]:
        if _seconds_of_day(value) - _seconds_of_day(clusters[-1][-1]) <= tolerance:
            clusters[-1].append(value)
        else:
            clusters.append([value])
    if len(clusters) > 1 and (_seconds_of_day(clusters[0][0]) + DAY_S
                              - _seconds_of_day(clusters[-1][-1])) <= tolerance:
        clusters[0] = clusters.pop() + clusters[0]  # one orbit passing at midnight
    labels: dict[datetime, str] = {}
    for cluster in clusters:
        label = _label(circular_median_seconds(_seconds_of_day(v) for v in cluster))
        for value in cluster:
            labels[value] = label
    return labels


def orbit_day(acquired: datetime, orbit_seconds: float) -> date:
    """The day of a pass: the date of the orbit's usual time of day nearest to
    ``acquired`` (frames of a pass over midnight UTC share one day)."""
    return (acquired - timedelta(seconds=orbit_seconds) + timedelta(hours=12)).date()


def group_passes(items: Iterable[ListedItem], params: CoverageParams = CoverageParams()
                 ) -> list[Pass]:
    """Items of one unit on one orbit on one day (of that orbit's time of day; see
    :func:`orbit_day`) are one acquisition; ordered by time."""
    items = list(items)
    # Items with a relative orbit name it; the others are placed by their time of day.
    unknown_orbit = [i.acquired for i in items if i.orbit is None]
    labels = _time_of_day_labels(unknown_orbit)
    orbit_of = {id(i): f"R{i.orbit:03d}" if i.orbit is not None else labels[i.acquired]
                for i in items}
    by_orbit: dict[str, list[float]] = defaultdict(list)
    for item in items:
        by_orbit[orbit_of[id(item)]].append(_seconds_of_day(item.acquired))
    usual = {orbit: circular_median_seconds(secs) for orbit, secs in by_orbit.items()}
    groups: dict[tuple[str, str, date], list[ListedItem]] = defaultdict(list)
    for item in items:
        orbit = orbit_of[id(item)]
        groups[(item.unit or "unknown", orbit, orbit_day(item.acquired, usual[orbit]))].append(item)
    passes = []
    for (unit, orbit, day), members in groups.items():
        members.sort(key=lambda i: (i.acquired, i.item_id))
        timed = [i for i in members if i.listed_at is not None]
        first = min(timed, key=lambda i: i.listed_at) if timed else None  # type: ignore[arg-type, return-value]
        reasons = [i.unusable for i in members]
        passes.append(Pass(
            unit=unit, orbit=orbit, day=day, acquired=members[0].acquired,
            item_ids=tuple(i.item_id for i in members),
            listed_at=first.listed_at if first else None,
            listed_by=first.listed_by if first else "unknown",
            unusable=reasons[0] if all(reasons) else None))
    passes.sort(key=lambda p: (p.acquired, p.unit, p.orbit))
    return passes


# -- the schedule -------------------------------------------------------------------------

def repeat_days(unit: str, modality: str | None = None) -> int:
    """One unit's repeat: 10 days for Sentinel-2, 12 for Sentinel-1 (from the unit name,
    else the collection's modality ``s1``/``s2``)."""
    for prefix, days in UNIT_REPEAT_DAYS.items():
        if unit.startswith(prefix):
            return days
    if modality in ("s1", "s2"):
        return UNIT_REPEAT_DAYS[f"sentinel-{modality[1]}"]
    raise ValueError(f"unknown unit {unit!r} and no modality: cannot tell its repeat")
