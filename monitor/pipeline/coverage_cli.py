"""`urban-monitor coverage`: expected vs listed acquisitions of a city, per source.

    urban-monitor coverage --city ID [--start 2025-07-01] [--end 2025-07-31] [--json]
        [--source NAME] [--listing stac+registry|registry|stac] [--as-of DATETIME]
        [--freshness] [--gap-events-since DATETIME [--publish]]

Exit code 0 when nothing is missing, 1 when some expected acquisition is missing (so a
cron job or CI can alert on it), 2 on an error.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import Any

from monitor.pipeline.discovery_cli import parse_when
from monitor.settings import load_settings


def _fmt_pass(entry: dict[str, Any]) -> str:
    when = entry.get("acquired") or entry.get("expected_at") or ""
    text = f"{when[:16].replace('T', ' ')}Z  {entry['unit']:<12} orbit {entry['orbit']:<7}"
    if entry.get("item_ids"):
        text += " " + ", ".join(entry["item_ids"])
    if entry.get("delay_hours") is not None and entry.get("listed_by") != "unknown":
        text += f"  (listed after {entry['delay_hours']:g} h, {entry['listed_by']})"
    if entry.get("reason"):
        text += f"  [{entry['reason']}]"
    return text


def render_text(report: dict[str, Any]) -> str:
    lines = [f"Coverage of {report['city_id']}  {report['start'][:10]} .. {report['end'][:10]}"
             f"  (as of {report['as_of'][:16].replace('T', ' ')}Z, listing: {report['listing']})"]
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    for src in report["sources"]:
        c = src["counts"]
        lines.append("")
        lines.append(f"source {src['source']} ({src['collection']}), grace "
                     f"{src['grace_hours']:g} h")
        error = report["errors"].get(src["source"])
        if error:
            lines.append(f"  search failed, registry only: {error}")
        orbits = src["schedule"]["orbits"]
        if orbits:
            for orbit, o in sorted(orbits.items()):
                lines.append(f"  schedule  orbit {orbit:<7} every {o['revisit_days']:g} d "
                             f"({' + '.join(o['units'])}, {o['repeat_days']} d each)")
        else:
            lines.append("  schedule  none learned yet (a unit is expected once it has been "
                         "seen over one full repeat)")
        for track in src["schedule"]["tracks"]:
            if track["status"] not in ("scheduled",) and track["note"]:
                lines.append(f"  {track['status']:<9} {track['unit']} orbit {track['orbit']}: "
                             f"{track['note']}")
        lines.append(f"  expected {c['expected']} ({c['expected_listed']} listed)  listed {c['listed']}  late {c['late']}  "
                     f"unusable {c['unusable']}  missing {c['missing']}  pending "
                     f"{c['pending']}  unscheduled {c['unscheduled']}")
        for key in ("missing", "late", "unusable", "pending", "unscheduled"):
            for i, entry in enumerate(src[key]):
                lines.append(f"  {key if i == 0 else '':<11} {_fmt_pass(entry)}")
        for gap in src["gaps"]:
            lines.append(f"  gap {gap['state']:<6} {len(gap['missing'])} acquisition(s) "
                         f"{gap['first_expected'][:10]} .. {gap['last_expected'][:10]}, opened "
                         f"{gap['opened_at'][:16].replace('T', ' ')}Z"
                         + (f", closed {gap['closed_at'][:16].replace('T', ' ')}Z"
                            if gap["closed_at"] else ""))
    fresh = report.get("freshness")
    if fresh:
        lines.append("")
        if fresh.get("available") is False:
            lines.append(f"freshness: {fresh['reason']}")
        else:
            lines.append(f"freshness (per pixel, last clear S2 view): seen clearly in the last "
                         f"30 d {fresh['seen_clear_30d_share']:.1%}, 90 d "
                         f"{fresh['seen_clear_90d_share']:.1%}, never "
                         f"{fresh['never_seen_clear_share']:.1%}; median "
                         f"{fresh['median_days_since_clear']} days since clear; layer "
                         "last_clear_date (urban-monitor products publish)")
    return "\n".join(lines)


def _freshness(settings: Any, city_id: str, as_of: Any) -> dict[str, Any]:
    from monitor.pipeline.city_stats import clear_view_stats
    from monitor.pipeline.runtime import state_store

    state = state_store(settings).load(city_id)
    if state is None:
        return {"available": False, "reason": f"no change state for {city_id} yet"}
    return {"available": True, **clear_view_stats(state.last_clear_day, as_of.date())}


def _cmd_coverage(args: argparse.Namespace) -> int:
    from monitor.pipeline.coverage import CoverageService, CoverageWatch
    from monitor.pipeline.runtime import open_database, stac_catalogs

    settings = load_settings(args.config)
    settings.city(args.city)
    if args.grace_hours is not None:
        settings = settings.model_copy(update={"coverage": settings.coverage.model_copy(
            update={"grace_hours": args.grace_hours})})
    end = args.end
    if end is not None and len(args.end_text) <= 10:  # a bare end date includes that day
        end = end + timedelta(days=1) - timedelta(microseconds=1)
    db = open_database(settings) if args.listing != "stac" else None
    try:
        service = CoverageService(settings, registry=db,
                                  catalog_for=stac_catalogs(settings)
                                  if args.listing != "registry" else None)
        report = service.city(args.city, start=args.start, end=end, as_of=args.as_of,
                              sources=args.source, listing=args.listing)
        out = report.to_dict()
        if args.freshness:
            out["freshness"] = _freshness(settings, args.city, report.as_of)
        events = []
        if args.gap_events_since is not None:
            bus = None
            if args.publish:
                from monitor.pipeline.runtime import build_runtime

                runtime = build_runtime(settings, db=db)
                bus = runtime.bus
            sink: Any = bus or _NoBus()
            watch = CoverageWatch(settings, sink, service, listing=args.listing,
                                  window_days=max(1.0, (report.as_of - report.start).days))
            events = watch.check(report.as_of, since=args.gap_events_since,
                                 city_ids=[args.city])
            if bus is not None:
                bus.flush()
            out["gap_events"] = [json.loads(e.to_json()) for e in events]
    finally:
        if db is not None:
            db.dispose()
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(render_text(out))
        for event in out.get("gap_events", []):
            print(json.dumps(event))
    return 1 if any(s.missing for s in report.sources) else 0


class _NoBus:
    """Gap events printed, not published (without --publish)."""

    def publish_many(self, topic: str, messages: Any) -> None:
        return None


class _EndDate(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        namespace.end_text = str(values)
        namespace.end = parse_when(str(values))


def register(subparsers: argparse._SubParsersAction) -> None:
    cmd = subparsers.add_parser(
        "coverage", help="expected vs listed acquisitions of a city: missing, late, unusable",
        description="Learn each source's expected acquisition schedule over the city (units, "
                    "relative orbits, repeat) from what it served, and compare it with what "
                    "it listed: missing (expected, not listed after the grace period), late "
                    "(listed after it), unusable (all cloud / no-data / nothing clear), "
                    "kept apart. Exit code 1 when something is missing.")
    cmd.add_argument("--city", required=True, help="city id from the cities file")
    cmd.add_argument("--start", type=parse_when, default=None,
                     help="YYYY-MM-DD (default: 30 days before --end)")
    cmd.add_argument("--end", action=_EndDate, default=None,
                     help="YYYY-MM-DD (inclusive) or an ISO datetime (default: --as-of)")
    cmd.add_argument("--as-of", type=parse_when, default=None,
                     help="evaluate as of this time (default: now)")
    cmd.add_argument("--source", action="append", help="source name (repeatable; default: "
                     "every enabled source)")
    cmd.add_argument("--listing", choices=["stac+registry", "registry", "stac"],
                     default="stac+registry", help="where the listed items come from "
                     "(default: the STAC API, unfiltered, merged with the scene registry)")
    cmd.add_argument("--grace-hours", type=float, default=None,
                     help="override coverage.grace_hours")
    cmd.add_argument("--freshness", action="store_true",
                     help="add the per-pixel freshness of the city's state (seen clearly in "
                     "the last 30/90 days)")
    cmd.add_argument("--gap-events-since", type=parse_when, default=None,
                     help="also give the coverage gap CloudEvents of gaps that opened or "
                     "closed between this time and --as-of")
    cmd.add_argument("--publish", action="store_true",
                     help="publish those events on coverage.topic (needs --gap-events-since)")
    cmd.add_argument("--json", action="store_true", help="JSON output")
    cmd.set_defaults(func=_cmd_coverage, end_text="")

