"""`urban-monitor demo`."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date
from pathlib import Path

from monitor.settings import CONFIG_DIR, DEFAULT_CONFIG, load_settings


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.pipeline.demo import options_from_settings, run_demo

    config = args.config if args.config != str(DEFAULT_CONFIG) else str(CONFIG_DIR / "demo.yaml")
    settings = load_settings(config)
    overrides = {
        "archive_dir": Path(args.archive) if args.archive else None,
        "report_path": Path(args.report) if args.report else None,
        "seed": args.seed, "size_km": args.size_km,
        "start": date.fromisoformat(args.start) if args.start else None,
        "end": date.fromisoformat(args.end) if args.end else None,
        "progress": not args.no_progress,
    }
    if args.fast:
        overrides.update(size_km=overrides["size_km"] or 2.0,
                         end=overrides["end"] or date(2020, 6, 30))
    opts = options_from_settings(settings, **overrides)
    quiet = {}
    if args.log_level is None:
        # The replay polls hundreds of times: per-poll and per-alert lines would bury the
        # progress bar. --log-level INFO brings them back.
        for name in ("monitor.pipeline.discovery", "monitor.pipeline.alerting",
                     "monitor.pipeline.inference", "monitor.pipeline.products",
                     "monitor.adapters.stac_server", "monitor.pipeline.runtime", "httpx"):
            quiet[name] = logging.getLogger(name).level
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        result = run_demo(settings, opts)
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    print()
    print("Urban Monitor demo — summary")
    print(f"  scenes       {json.dumps(result.scenes)}")
    print(f"  alerts       {json.dumps(result.alerts)}")
    print(f"  dead letters {result.dead_letters}")
    # confirmed alerts scored against the truth (monitor.domain.alert_scoring)
    for key in ("object_precision", "object_recall", "object_f1", "pixel_f1",
                "time_error_median_days", "delay_median_days", "false_alerts_per_km2_year",
                "retracted_share", "confirmed_in_baseline"):
        if key in result.score:
            print(f"  {key:<28} {result.score[key]}")
    print("  seconds per stage " + ", ".join(f"{k}={v}" for k, v in result.stage_seconds.items()))
    print(f"  total {result.seconds} s")
    if result.report:
        print(f"  report: {result.report.resolve()}")
    if result.serve_config:
        print(f"  live dashboard: urban-monitor serve api --config {result.serve_config}"
              " -> http://127.0.0.1:8000/dashboard/")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole pipeline on a synthetic city and write a report",
        description="Generate (or reuse) a synthetic city archive, serve it with a local STAC "
                    "API, replay it through the scheduler, inference and alerting in embedded "
                    "mode on a simulated clock, score the result against the known truth and "
                    "write an HTML report. Uses config/demo.yaml unless --config is given.")
    demo.add_argument("--archive", help="archive folder (default: demo.archive in the config)")
    demo.add_argument("--report", help="HTML report path (default: demo.report)")
    demo.add_argument("--seed", type=int, default=None)
    demo.add_argument("--size-km", type=float, default=None, help="city side length in km")
    demo.add_argument("--start", help="first day of the archive (YYYY-MM-DD)")
    demo.add_argument("--end", help="last day of the archive (YYYY-MM-DD)")
    demo.add_argument("--fast", action="store_true",
                      help="a 2 x 2 km city over 18 months: a quick look (about a minute)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)
