"""`urban-monitor run`: process one city over a period and exit (see monitor.pipeline.run)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _cmd_run(args: argparse.Namespace) -> int:
    from monitor.pipeline.discovery_cli import parse_when
    from monitor.pipeline.run import run_period
    from monitor.pipeline.runtime import build_runtime
    from monitor.settings import load_settings

    settings = load_settings(args.config)
    settings.city(args.city)  # a clear error for an unknown city before connecting anything
    start = parse_when(args.start)
    end = parse_when(args.end)
    if len(args.end) <= 10:  # a bare end date includes that whole day
        end = end.replace(hour=23, minute=59, second=59, microsecond=999999)
    if end <= start:
        from monitor.errors import UrbanMonitorError

        raise UrbanMonitorError(f"period {args.start} .. {args.end} is empty",
                                "give --start before --end")
    runtime = build_runtime(settings)
    try:
        summary = run_period(runtime, args.city, start, end, baseline_days=args.baseline_days,
                             progress=not args.no_progress)
    finally:
        runtime.close()
    for line in summary.lines():
        print(line)
    if summary.pending:
        print(f"  {summary.pending} scene(s) still pending: see the log above")
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="process one city over a past period, then exit (backfill + inference + "
                    "alerting + summary)",
        description="Backfill the city's scenes of [start - baseline, end] from every enabled "
                    "source, process them all in this process (inference and alerting), and "
                    "print scenes by outcome, alerts by status and seconds per stage. The "
                    "baseline scenes (state.params.baseline_days, default 90) only build the "
                    "city's references: nothing alerts from warm-up. Exit 0 when every scene "
                    "was processed, skipped or dead-lettered with a reason; 1 when some stayed "
                    "pending.")
    run.add_argument("--city", required=True, help="city id from the cities file")
    run.add_argument("--start", required=True, help="first day to monitor (YYYY-MM-DD)")
    run.add_argument("--end", required=True, help="last day (YYYY-MM-DD, inclusive)")
    run.add_argument("--baseline-days", type=int, default=None,
                     help="archive to backfill before --start for the references "
                          "(default: the state's baseline_days)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)
