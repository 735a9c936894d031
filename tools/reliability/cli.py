"""`urban-monitor reliability faults`: the fault-injection suite and its table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def _cmd_faults(args: argparse.Namespace) -> int:
    from tools.reliability.faults import all_faults
    from tools.reliability.runner import DEFAULT_ROOT, SuiteOptions, run_suite

    # kafka-python narrates every reconnect at WARNING; the suite provokes many on purpose.
    logging.getLogger("kafka").setLevel(logging.ERROR)

    if args.list:
        for fault in all_faults():
            print(f"{fault.name:<24} {'quick ' if fault.quick else '      '}{fault.title}")
        return 0
    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    result = run_suite(SuiteOptions(only=only, quick=args.quick,
                                    root=Path(args.root) if args.root else DEFAULT_ROOT,
                                    workers=args.workers, keep_services=args.keep_services,
                                    progress=not args.no_progress))
    print()
    print(result.report())
    return 0 if result.passed else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    reliability = subparsers.add_parser(
        "reliability", help="fault injection against the distributed pipeline",
        description="Reliability checks of the distributed pipeline (Kafka, PostgreSQL, "
                    "inference worker processes).")
    sub = reliability.add_subparsers(dest="reliability_command", required=True)
    faults = sub.add_parser(
        "faults", help="run the fault-injection suite and print the table of outcomes",
        description="Replay a small synthetic city through discovery, inference worker "
                    "processes and alerting on the suite's own Kafka broker and PostgreSQL "
                    "server (ports 29092 and 55433, started with docker/kafka.sh and "
                    "docker/postgres.sh), once without faults and once per fault, and "
                    "compare: every scene processed or dead-lettered with a reason, no "
                    "alert lost or duplicated, the same final state. Exits 1 if any row "
                    "fails. Results also go to var/reliability/faults.json.")
    faults.add_argument("--only", help="comma-separated fault names (see --list)")
    faults.add_argument("--quick", action="store_true",
                        help="the quick subset (worker kill, Kafka restart, state write "
                             "failure, duplicates, webhook down: about 4 minutes)")
    faults.add_argument("--list", action="store_true", help="list the faults and exit")
    faults.add_argument("--workers", type=int, default=2, help="inference worker processes")
    faults.add_argument("--root", help="work folder (default var/reliability)")
    faults.add_argument("--keep-services", action="store_true",
                        help="leave the suite's Kafka and PostgreSQL running afterwards")
    faults.add_argument("--no-progress", action="store_true")
    faults.set_defaults(func=_cmd_faults)
