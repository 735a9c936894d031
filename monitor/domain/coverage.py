"""Coverage: the acquisitions a source should have served for a city, against what it listed.

"No data" is not "no change". A STAC API that silently drops scenes, or stalls for days,
makes a monitor report "no change" where it saw nothing; so for every city and source this
module learns the expected acquisition schedule from what the source *has* served, and
sets it against what was listed:

- **expected**: a pass of a unit (Sentinel-2A/B/C, Sentinel-1A/B/C) over the city on one
  of its orbits, on the unit's repeat (Sentinel-2: 10 days per unit and orbit, so 5 days
  per orbit with two units; Sentinel-1: 12 days per unit, 6 with two);
- **listed**: the acquisitions the source lists (items of one pass over several tiles,
  frames or reprocessings are one acquisition);
- **late**: listed, but more than the grace period after acquisition (the item's
  ``published``/``created``, else the time discovery first saw it);
- **unusable**: listed, but all cloud, all no-data, or skipped by the worker with that
  reason: listed, and still nothing seen;
- **missing**: expected, and not listed although the grace period has passed;
- **pending**: expected, not listed, still within the grace period.

How the schedule is learned (all from the listed items, nothing hard-coded per mission
but the repeat of one unit):

1. Items become *passes*: (unit, orbit, day; a pass over midnight UTC keeps one day). The unit comes from ``platform`` or
   the item id (``S2B_...``); the orbit from ``sat:relative_orbit``, the id (Planetary
   Computer ``_R116_``; Sentinel-1 absolute orbit numbers), or, when neither says, the
   pass's UTC time of day (one relative orbit over one place always passes at the same
   time of day, neighbouring orbits ~10 minutes apart): ``t17:53``.
2. A *track* is one unit on one orbit; its passes fall on one phase modulo the repeat
   (a phase change, e.g. an orbit manoeuvre, starts a new segment).
3. All units fly the same ground-track sequence, so the day offset between two orbits
   (mod the repeat) is the same for every unit: it is learned from the units seen on
   both, and gives the phase of a track that has no listed pass (yet): a unit seen on
   orbit A is expected on orbit B too.
4. A unit is *scheduled* once its passes span at least one full repeat (it has been seen
   in two cycles) and it delivered at least ``min_fill`` of what it was expected to
   between its first and last pass; otherwise its acquisitions are listed but
   *unscheduled* (a new unit still being learned, or one in a sparse campaign such as
   Sentinel-2A's extended campaign of 2025).
5. Constellation changes: a unit's expectations start at its first pass (a unit added,
   e.g. Sentinel-2C, is expected from then on). A track that stays silent for more than
   ``lost_after_cycles`` repeats *while other tracks of the source are listed* is taken as
   ended (a unit lost, e.g. Sentinel-1B on 2021-12-23) or paused; silence shared by every
   track is a gap of the source (an ingestion stall) and stays missing.

Gaps (what the coverage gap event reports): a run of consecutive missing expected
acquisitions of one source. It *opens* when its first acquisition passes the grace
period, and *closes* when the source lists an expected acquisition after it again (the
flow resumed; the acquisitions still not listed stay in the report as missing), or when
all its acquisitions have been listed late, or are no longer expected.

Pure: standard library only (datetimes, dataclasses).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from monitor.domain.coverage_items import (  # noqa: F401  (re-exported)
    _S1_ABS_ORBIT_IN_ID,
    _S1_CYCLE_ORBITS,
    _S1_ORBIT_OFFSET,
    _S2_ORBIT_IN_ID,
    _UNIT_IN_ID,
    DAY_S,
    FULLY,
    ORBIT_TIME_TOLERANCE_MIN,
    UNIT_REPEAT_DAYS,
    CoverageParams,
    ListedItem,
    Pass,
    _label,
    _parse_time,
    _percent,
    _seconds_of_day,
    _time_of_day_labels,
    circular_median_seconds,
    group_passes,
    listed_item_from_stac,
    orbit_day,
    relative_orbit_of,
    repeat_days,
    unit_of,
    unusable_reason,
)
from monitor.domain.vocabulary import as_utc, iso_utc


@dataclass(frozen=True)
class Span:
    """Days ``first..last`` (inclusive) on which a track is expected every ``repeat``
    days from ``first``."""

    first: date
    last: date

    def days(self, repeat: int) -> list[date]:
        n = (self.last - self.first).days // repeat
        return [self.first + timedelta(days=repeat * k) for k in range(n + 1)] if n >= 0 else []


@dataclass
class Track:
    """One unit on one orbit: where it is expected, and why (``status``)."""

    unit: str
    orbit: str
    repeat: int
    passes: list[Pass] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    status: str = "scheduled"   # scheduled | inferred | ended | not acquired | unscheduled
    note: str = ""
    time_of_day: time | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "orbit": self.orbit, "repeat_days": self.repeat,
                "status": self.status, "note": self.note,
                "passes_listed": len(self.passes),
                "expected_from": self.spans[0].first.isoformat() if self.spans else None,
                "expected_until": self.spans[-1].last.isoformat() if self.spans else None}


def _phase(day: date, repeat: int) -> int:
    return day.toordinal() % repeat


def _segments(passes: Sequence[Pass], repeat: int) -> list[list[Pass]]:
    """Consecutive passes on one phase (a phase change starts a new segment)."""
    out: list[list[Pass]] = []
    for p in passes:
        if out and _phase(out[-1][-1].day, repeat) == _phase(p.day, repeat):
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _orbit_offsets(tracks: Mapping[tuple[str, str], list[Pass]],
                   repeat_of: Mapping[str, int]) -> dict[tuple[str, str], int]:
    """(orbit a, orbit b) -> day offset of b after a (mod repeat), by majority over the
    units seen on both orbits (their latest passes)."""
    by_unit: dict[str, dict[str, date]] = defaultdict(dict)
    for (unit, orbit), passes in tracks.items():
        by_unit[unit][orbit] = passes[-1].day
    votes: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    for unit, orbits in by_unit.items():
        repeat = repeat_of[unit]
        for a, day_a in orbits.items():
            for b, day_b in orbits.items():
                if a != b:
                    votes[(a, b)][(day_b - day_a).days % repeat] += 1
    return {pair: counter.most_common(1)[0][0] for pair, counter in votes.items()}


def _others_listed(between: tuple[date, date], passes: Sequence[Pass], track: tuple[str, str],
                   max_hole: timedelta) -> bool:
    """Whether other tracks of the source were listed throughout the start of ``between``
    (its first two ``max_hole``): no stretch longer than ``max_hole`` without one of their
    passes. A silence the whole source shares is a stall, not this track's end."""
    lo, hi = between
    hi = min(hi, lo + 2 * max_hole + timedelta(days=1))  # when the silence began counts
    days = sorted({p.day for p in passes if lo < p.day < hi and (p.unit, p.orbit) != track})
    if not days:
        return False
    points = [lo, *days, hi]
    return max(b - a for a, b in zip(points, points[1:], strict=False)) <= max_hole


def learn_schedule(passes: Sequence[Pass], *, as_of: date, modality: str | None = None,
                   params: CoverageParams = CoverageParams()) -> list[Track]:  # noqa: B008 (frozen)
    """The expected schedule of one source over one city, learned from its passes.

    ``as_of``: the last day expectations may run to (the evaluation time)."""
    by_track: dict[tuple[str, str], list[Pass]] = defaultdict(list)
    for p in sorted(passes, key=lambda p: p.acquired):
        by_track[(p.unit, p.orbit)].append(p)
    units = sorted({p.unit for p in passes})
    orbits = sorted({p.orbit for p in passes})
    repeat_of = {u: repeat_days(u, modality) for u in units}
    offsets = _orbit_offsets(by_track, repeat_of)
    tod: dict[str, time] = {}
    for orbit in orbits:
        secs = circular_median_seconds(_seconds_of_day(p.acquired) for p in passes
                                       if p.orbit == orbit)
        tod[orbit] = time(int(secs // 3600), int(secs % 3600 // 60), int(secs % 60), tzinfo=UTC)

    tracks: list[Track] = []
    for unit in units:
        repeat = repeat_of[unit]
        lost_after = timedelta(days=params.lost_after_cycles * repeat)
        own = [p for p in passes if p.unit == unit]
        first_day = min(p.day for p in own)
        last_day = max(p.day for p in own)
        unit_tracks: list[Track] = []
        for orbit in orbits:
            seen = by_track.get((unit, orbit), [])
            track = Track(unit=unit, orbit=orbit, repeat=repeat, passes=list(seen),
                          time_of_day=tod[orbit])
            if seen:
                segments = _segments(seen, repeat)
                for i, segment in enumerate(segments):
                    end = (segments[i + 1][0].day - timedelta(days=1)
                           if i + 1 < len(segments) else as_of)
                    track.spans.extend(_split_on_silence(segment, end, passes, (unit, orbit),
                                                         lost_after, track))
            else:
                # No pass listed on this orbit: its phase follows from the unit's pass on
                # another orbit and that orbit's offset to this one (learned from others).
                phase_day = None
                for other in orbits:
                    ref = by_track.get((unit, other))
                    if ref and (other, orbit) in offsets:
                        start = ref[-1].day + timedelta(days=offsets[(other, orbit)])
                        while start - timedelta(days=repeat) >= first_day:
                            start -= timedelta(days=repeat)
                        while start < first_day:
                            start += timedelta(days=repeat)
                        phase_day = start
                        break
                if phase_day is None:
                    track.status, track.note = "not acquired", "no pass on this orbit"
                elif (as_of - first_day > lost_after
                      and _others_listed((first_day, as_of), passes, (unit, orbit),
                                         timedelta(days=1.5 * repeat))):
                    track.status = "not acquired"
                    track.note = (f"never listed in {(as_of - first_day).days} days while other "
                                  "tracks were: not acquired on this orbit")
                else:
                    track.status = "inferred"
                    track.note = "phase inferred from the unit's other orbit(s)"
                    track.spans.append(Span(phase_day, as_of))
            unit_tracks.append(track)
        # Scheduled only when seen over a full repeat and it delivered what was expected.
        spanned = (last_day - first_day).days >= repeat
        due = [d for t in unit_tracks for s in t.spans for d in s.days(repeat)
               if first_day <= d <= last_day]
        seen_days = {(p.orbit, p.day) for p in own}
        fill = (sum(1 for t in unit_tracks for s in t.spans for d in s.days(repeat)
                    if first_day <= d <= last_day and (t.orbit, d) in seen_days) / len(due)
                if due else 0.0)
        if not spanned or fill < params.min_fill:
            for track in unit_tracks:
                if track.passes or track.status == "inferred":
                    track.status = "unscheduled"
                    track.note = (f"seen over {(last_day - first_day).days} days, less than one "
                                  f"{repeat}-day repeat: not expected yet" if not spanned else
                                  f"delivered {fill:.0%} of its expected passes (< "
                                  f"{params.min_fill:.0%}): irregular, not expected")
                    track.spans = []
        tracks.extend(t for t in unit_tracks if t.passes or t.status != "not acquired"
                      or t.note != "no pass on this orbit")
    return tracks


def _split_on_silence(segment: Sequence[Pass], end: date, passes: Sequence[Pass],
                      key: tuple[str, str], lost_after: timedelta, track: Track) -> list[Span]:
    """Spans of one phase segment: a silence longer than ``lost_after`` while other tracks
    were listed pauses the track (or ends it, after its last pass)."""
    max_hole = timedelta(days=1.5 * track.repeat)
    spans: list[Span] = []
    start = segment[0].day
    for prev, nxt in zip(segment, segment[1:], strict=False):
        if nxt.day - prev.day > lost_after and _others_listed((prev.day, nxt.day), passes, key,
                                                              max_hole):
            spans.append(Span(start, prev.day))
            start = nxt.day
    last = segment[-1].day
    if end - last > lost_after and _others_listed((last, end + timedelta(days=1)), passes, key,
                                                  max_hole):
        spans.append(Span(start, last))
        track.status = "ended"
        track.note = (f"no pass since {last.isoformat()} ({(end - last).days} days) while other "
                      "tracks were listed: unit lost or off this orbit; not expected after")
    else:
        spans.append(Span(start, end))
    return spans


# -- comparing ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Expected:
    unit: str
    orbit: str
    day: date
    at: datetime   # the orbit's usual time of day on that day

    def to_dict(self) -> dict[str, Any]:
        return {"date": self.day.isoformat(), "expected_at": iso_utc(self.at),
                "unit": self.unit, "orbit": self.orbit}


@dataclass
class SourceCoverage:
    """The coverage of one source over one city in a window (see the module docstring)."""

    source: str
    collection: str
    start: datetime
    end: datetime
    as_of: datetime
    params: CoverageParams
    tracks: list[Track]
    expected: list[Expected]
    listed: list[Pass]
    late: list[Pass]
    unusable: list[Pass]
    missing: list[Expected]
    pending: list[Expected]
    unscheduled: list[Pass]
    matched: dict[Expected, Pass]

    def counts(self) -> dict[str, int]:
        return {"expected": len(self.expected), "expected_listed": len(self.matched),
                "listed": len(self.listed),
                "late": len(self.late), "unusable": len(self.unusable),
                "missing": len(self.missing), "pending": len(self.pending),
                "unscheduled": len(self.unscheduled)}

    def revisit(self) -> dict[str, dict[str, Any]]:
        """Per orbit: the scheduled units and the resulting revisit in days."""
        out: dict[str, dict[str, Any]] = {}
        for track in self.tracks:
            if track.status in ("scheduled", "inferred") and track.spans:
                entry = out.setdefault(track.orbit, {"units": [], "repeat_days": track.repeat})
                entry["units"].append(track.unit)
        for entry in out.values():
            entry["revisit_days"] = round(entry["repeat_days"] / len(entry["units"]), 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "collection": self.collection,
            "start": iso_utc(self.start), "end": iso_utc(self.end), "as_of": iso_utc(self.as_of),
            "grace_hours": self.params.grace.total_seconds() / 3600,
            "counts": self.counts(),
            "schedule": {"orbits": self.revisit(), "tracks": [t.to_dict() for t in self.tracks]},
            "expected": [dict(e.to_dict(), listed=e in self.matched) for e in self.expected],
            "listed": [p.to_dict() for p in self.listed],
            "late": [p.to_dict() for p in self.late],
            "unusable": [p.to_dict() for p in self.unusable],
            "missing": [e.to_dict() for e in self.missing],
            "pending": [e.to_dict() for e in self.pending],
            "unscheduled": [p.to_dict() for p in self.unscheduled],
            "gaps": [g.to_dict() for g in find_gaps(self)],
        }


def is_late(p: Pass, params: CoverageParams) -> bool:
    if p.listed_at is None:
        return False
    delay = p.listed_at - p.acquired
    if p.listed_by == "discovered" and delay > params.backfill_horizon:
        return False  # found by a backfill: the discovery time says nothing about listing
    return delay > params.grace


def assess_source(items: Iterable[ListedItem], *, source: str, collection: str,
                  start: datetime, end: datetime, as_of: datetime,
                  modality: str | None = None,
                  params: CoverageParams = CoverageParams()) -> SourceCoverage:  # noqa: B008 (frozen)
    """Expected vs listed for one source over one city, reported for ``start..end``.

    ``items`` should be everything the source listed for the city (the schedule is
    learned from all of them); what the source listed after ``as_of`` is ignored, so a
    report can be recomputed as it stood at an earlier time."""
    start, end, as_of = as_utc(start), as_utc(end), as_utc(as_of)
    known = [i for i in items if i.listed_at is None or i.listed_at <= as_of]
    known = [i for i in known if i.acquired <= as_of]
    passes = group_passes(known, params)
    horizon = min(end, as_of).date()
    tracks = learn_schedule(passes, as_of=horizon, modality=modality, params=params)
    by_key = {(p.unit, p.orbit, p.day): p for p in passes}
    expected: list[Expected] = []
    for track in tracks:
        assert track.time_of_day is not None
        for span in track.spans:
            for day in span.days(track.repeat):
                at = datetime.combine(day, track.time_of_day)
                if start <= at <= end and at <= as_of:
                    expected.append(Expected(track.unit, track.orbit, day, at))
    expected.sort(key=lambda e: (e.at, e.unit))
    matched = {e: by_key[(e.unit, e.orbit, e.day)] for e in expected
               if (e.unit, e.orbit, e.day) in by_key}
    in_window = [p for p in passes if start <= p.acquired <= end]
    expected_keys = {(e.unit, e.orbit, e.day) for e in expected}
    unmatched = [e for e in expected if e not in matched]
    missing = [e for e in unmatched if e.at + params.grace <= as_of]
    pending = [e for e in unmatched if e.at + params.grace > as_of]
    return SourceCoverage(
        source=source, collection=collection, start=start, end=end, as_of=as_of,
        params=params, tracks=tracks, expected=expected, listed=in_window,
        late=[p for p in in_window if is_late(p, params)],
        unusable=[p for p in in_window if p.unusable],
        missing=missing, pending=pending,
        unscheduled=[p for p in in_window if (p.unit, p.orbit, p.day) not in expected_keys],
        matched=matched)


# -- gaps -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gap:
    """A run of consecutive missing expected acquisitions of one source."""

    source: str
    missing: tuple[Expected, ...]
    opened_at: datetime                 # when its first acquisition passed the grace
    closed_at: datetime | None          # when an expected acquisition after it was listed
    resumed_with: Pass | None

    @property
    def key(self) -> str:
        first = self.missing[0]
        return f"{self.source}|{first.unit}|{first.orbit}|{first.day.isoformat()}"

    @property
    def state(self) -> Literal["open", "closed"]:
        return "open" if self.closed_at is None else "closed"

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "first_expected": iso_utc(self.missing[0].at),
                "last_expected": iso_utc(self.missing[-1].at),
                "missing": [e.to_dict() for e in self.missing],
                "opened_at": iso_utc(self.opened_at),
                "closed_at": iso_utc(self.closed_at) if self.closed_at else None,
                "resumed_with": self.resumed_with.to_dict() if self.resumed_with else None}


def find_gaps(coverage: SourceCoverage) -> list[Gap]:
    """The runs of missing acquisitions in expected order; a run is closed by the first
    expected acquisition after it that was listed (its listing time closes it)."""
    gaps: list[Gap] = []
    run: list[Expected] = []
    grace = coverage.params.grace

    def close(resumed: Pass | None) -> None:
        if run:
            closed = (resumed.listed_at or resumed.acquired) if resumed else None
            gaps.append(Gap(coverage.source, tuple(run), run[0].at + grace, closed, resumed))
            run.clear()

    missing = set(coverage.missing)
    for e in coverage.expected:
        if e in missing:
            run.append(e)
        elif e in coverage.matched:
            close(coverage.matched[e])
        # pending: neither extends nor closes a run
    close(None)
    return gaps


@dataclass(frozen=True)
class GapChange:
    """A gap that opened or closed between two evaluations (what the gap event says)."""

    gap: Gap
    state: Literal["open", "closed"]
    reason: str


def gap_changes(before: Sequence[Gap], after: Sequence[Gap]) -> list[GapChange]:
    """What changed from one evaluation to the next: gaps that opened (new, open now) and
    gaps that closed (open before, and closed now, filled or no longer expected).

    A gap is the same gap while its first missing acquisition is the same."""
    was = {g.key: g for g in before}
    now = {g.key: g for g in after}
    out: list[GapChange] = []
    for key, gap in now.items():
        old = was.get(key)
        if gap.state == "open" and (old is None or old.state == "closed"):
            out.append(GapChange(gap, "open", f"{len(gap.missing)} expected acquisition(s) "
                                 "not listed after the grace period"))
        elif gap.state == "closed" and (old is None or old.state == "open"):
            if old is None:
                # Opened and closed between the two evaluations: say both.
                out.append(GapChange(gap, "open", f"{len(gap.missing)} expected "
                                     "acquisition(s) not listed after the grace period"))
            out.append(GapChange(gap, "closed", "the source listed an expected acquisition "
                                 "again; the acquisitions of the gap that are still not "
                                 "listed stay missing"))
    for key, old in was.items():
        if key not in now and old.state == "open":
            # Its first acquisition was listed late, or is no longer expected: find which.
            out.append(GapChange(replace(old, closed_at=None), "closed",
                                 "its acquisitions were listed late or are no longer "
                                 "expected (constellation change)"))
    return out
