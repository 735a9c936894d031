"""`urban-monitor backfill` and `urban-monitor discover`: scene discovery by hand.

    urban-monitor backfill --city ID --start 2024-01-01 --end 2024-06-30 [--source NAME]
    urban-monitor discover once [--city ID] [--source NAME] [--now 2025-08-01T00:00:00Z]
    urban-monitor discover status [--city ID]

The scheduler (``urban-monitor serve scheduler``) does the same polls on a timer.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime

from monitor.domain.vocabulary import as_utc
from monitor.settings import load_settings

log = logging.getLogger(__name__)


def parse_when(text: str) -> datetime:
    """A date (``2024-06-30``) or an ISO datetime (``2024-06-30T12:00:00Z``), as UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or ISO datetime (YYYY-MM-DDTHH:MM:SSZ)"
        ) from None
    return as_utc(value)


def _embedded_note(kind: str) -> None:
    if kind == "embedded":
        log.warning("bus.kind is 'embedded': the events live only in this process; the scene "
                    "registry keeps them and the embedded services pick them up on start")


def _cmd_backfill(args: argparse.Namespace) -> int:
    from monitor.pipeline.runtime import build_runtime, discovery_cycle

    settings = load_settings(args.config)
    settings.city(args.city)  # a clear error for an unknown city before connecting anything
    end = args.end
    if len(args.end_text) <= 10:  # a bare end date includes that whole day
        end = end.replace(hour=23, minute=59, second=59, microsecond=999999)
    runtime = build_runtime(settings)
    try:
        _embedded_note(settings.bus.kind)
        cycle = discovery_cycle(settings, runtime.bus, runtime.db)
        report = cycle.backfill(args.city, args.start, end, sources=args.source or None,
                                progress=not args.no_progress)
    finally:
        runtime.close()
    print(f"backfill {args.city} {args.start:%Y-%m-%d}..{end:%Y-%m-%d}: {report.items_seen} "
          f"items, {report.published} published, {report.duplicates} already known, "
          f"{report.filtered} filtered, {report.skipped} skipped, {report.pending} pending "
          f"({report.seconds:.1f} s)")
    return 0 if report.pending == 0 else 1


def _cmd_discover_once(args: argparse.Namespace) -> int:
    from monitor.pipeline.runtime import build_runtime, discovery_cycle

    settings = load_settings(args.config)
    runtime = build_runtime(settings)
    try:
        _embedded_note(settings.bus.kind)
        cycle = discovery_cycle(settings, runtime.bus, runtime.db, strategy=args.strategy,
                                max_workers=args.workers)
        reports = cycle.poll_once(args.now, sources=args.source or None,
                                  city_ids=args.city or None)
        runtime.bus.flush()
    finally:
        runtime.close()
    for report in reports:
        print(report.summary())
        for city_id, error in sorted(report.errors.items()):
            print(f"  {city_id}: {error}")
    return 1 if any(r.errors for r in reports) else 0


def _cmd_discover_status(args: argparse.Namespace) -> int:
    from monitor.pipeline.runtime import open_database

    settings = load_settings(args.config)
    db = open_database(settings)
    try:
        cities = [args.city] if args.city else [c.id for c in settings.cities]
        print(f"{'city':<20} {'source':<24} {'newest acquisition':<22} {'last poll':<22} error")
        for city_id in cities:
            for source in settings.sources:
                mark = db.watermark(city_id, source.name)
                newest = f"{mark.last_acquired:%Y-%m-%dT%H:%M:%S}" if mark and mark.last_acquired else "-"
                polled = f"{mark.last_polled_at:%Y-%m-%dT%H:%M:%S}" if mark and mark.last_polled_at else "-"
                error = (mark.last_error or "")[:80] if mark else ""
                print(f"{city_id:<20} {source.name:<24} {newest:<22} {polled:<22} {error}")
        counts = db.scene_counts(args.city)
        print("scenes: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
    finally:
        db.dispose()
    return 0


class _EndDate(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        namespace.end_text = str(values)
        namespace.end = parse_when(str(values))


def register(subparsers: argparse._SubParsersAction) -> None:
    backfill = subparsers.add_parser(
        "backfill", help="publish a city's past scenes (STAC search) in acquisition order",
        description="Search every enabled source (or --source) for scenes over the city "
                    "between --start and --end, and publish the ones not yet known, in "
                    "acquisition order (all sources merged). Watermarks are not moved.")
    backfill.add_argument("--city", required=True, help="city id from the cities file")
    backfill.add_argument("--start", required=True, type=parse_when, help="YYYY-MM-DD")
    backfill.add_argument("--end", required=True, action=_EndDate,
                          help="YYYY-MM-DD (inclusive) or an ISO datetime")
    backfill.add_argument("--source", action="append", help="source name (repeatable)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill.set_defaults(func=_cmd_backfill)

    discover = subparsers.add_parser("discover", help="poll the STAC sources once, or show "
                                                      "the watermarks")
    sub = discover.add_subparsers(dest="discover_command", metavar="ACTION", required=True)
    once = sub.add_parser("once", help="poll every enabled source once and publish new scenes")
    once.add_argument("--city", action="append", help="city id (repeatable; default: all)")
    once.add_argument("--source", action="append", help="source name (repeatable)")
    once.add_argument("--now", type=parse_when, default=None,
                      help="poll as if it were this time (default: now)")
    once.add_argument("--strategy", choices=["batched", "naive"], default="batched")
    once.add_argument("--workers", type=int, default=8, help="concurrent searches")
    once.set_defaults(func=_cmd_discover_once)
    status = sub.add_parser("status", help="watermarks and scene counts per city and source")
    status.add_argument("--city", default=None)
    status.set_defaults(func=_cmd_discover_status)
