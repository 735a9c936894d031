"""`urban-monitor capacity`: every urban centre on Earth at every revisit — what it takes.

    urban-monitor capacity                       # the report (modelled world, measured costs)
    urban-monitor capacity --costs stage-costs.json --cores 16 --memory-gb 128 --json

The model and its sources are described in ``monitor/domain/capacity.py``. ``--costs`` takes
the per-stage costs a benchmark measured (``tests/benchmarks/test_bench_history.py`` writes
``var/benchmarks/stage-costs.json``); without it the defaults (measured on this project's
2-core machine, see the README) are used.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path


def _cmd_capacity(args: argparse.Namespace) -> int:
    from monitor.domain.capacity import StageCosts, capacity

    costs = StageCosts()
    if args.costs:
        data = json.loads(Path(args.costs).read_text())
        known = {f.name for f in fields(StageCosts)}
        costs = StageCosts(**{k: float(v) for k, v in data.items() if k in known})
    report = capacity(costs, target_p95_s=args.target_minutes * 60, machine_cores=args.cores,
                      machine_memory_gb=args.memory_gb)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    one = report.one_machine_16_cores
    print("Urban Monitor capacity — every urban centre, every revisit")
    print(f"  urban centres        {report.centres:,} (GHS-UCDB 2015 count; sizes modelled: "
          f"median {report.median_km2:.0f} km2, largest {report.largest_km2:,.0f} km2, "
          f"{report.total_area_km2:,.0f} km2 in all, {report.total_population / 1e9:.1f} bn people)")
    print(f"  scenes a day         S2 {report.scenes_per_day['s2']:,}, S1 {report.scenes_per_day['s1']:,}")
    print(f"  per-scene cost       {json.dumps(report.costs)}")
    print(f"  target               p95 discovery -> alert <= {report.target_p95_s / 60:.0f} min")
    print(f"  workers needed       {report.workers} single-threaded (busy {report.busy_share:.0%}); "
          f"p50 {report.p50_s:.0f} s, p95 {report.p95_s:.0f} s")
    print(f"  one {one['workers']}-core machine  p50 {one['p50_s']:.0f} s, p95 {one['p95_s']:.0f} s, "
          f"busy {one['busy_share']:.0%}, states warm in memory: {one['states_warm_in_memory']} -> "
          f"{'meets' if one['meets_target'] else 'misses'} the target")
    print(f"  state storage        {report.state_storage_gb:,.0f} GB "
          f"({report.state_storage_gb_with_versions:,.0f} GB with the kept versions)")
    print(f"  Kafka partitions     {report.kafka_partitions} (twice the workers: room to scale)")
    print(f"  database rows        {report.registry_rows_per_year:,} scene-registry rows a year")
    print(f"  saturates first      {report.saturates_first}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "capacity", help="what watching every urban centre on Earth takes (a simulated day)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--costs", default=None, help="measured per-stage costs (JSON)")
    p.add_argument("--target-minutes", type=float, default=30.0,
                   help="p95 discovery -> alert target (default 30)")
    p.add_argument("--cores", type=int, default=16, help="cores of the one machine (16)")
    p.add_argument("--memory-gb", type=float, default=128.0, help="its memory (128 GB)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(func=_cmd_capacity)
