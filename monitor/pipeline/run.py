"""`urban-monitor run`: process one city over a past period, then stop.

    urban-monitor run --city ID --start 2024-01-01 --end 2024-12-31 [--baseline-days N]

1. backfill: publish the city's scenes of ``[start - baseline, end]`` (every enabled
   source, acquisition order) — the baseline scenes build the references and raise no
   alert (see ``StateParams.baseline_days``);
2. process: inference and alerting run in this process until every scene of the city is
   processed (or skipped / dead-lettered, with its reason) and every ChangeEvent folded;
3. print a summary (scenes by outcome, alerts by status, seconds per stage) and exit 0
   (1 when scenes stayed pending).

Works on either bus: on the embedded one everything happens here; on Kafka this process
joins the consumer groups like any other worker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor.pipeline.consuming import EventLoop
from monitor.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

_PENDING = ("discovered", "published", "processing")


@dataclass
class RunSummary:
    city_id: str
    start: datetime
    end: datetime
    baseline_start: datetime
    scenes: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    published: int = 0
    pending: int = 0
    dead_letters: int = 0
    seconds: float = 0.0
    alert_events: list[Any] = field(default_factory=list)

    def lines(self) -> list[str]:
        def fmt(d: dict[str, Any]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(d.items())) or "none"

        return [
            f"Urban Monitor run — city {self.city_id}, "
            f"{self.start:%Y-%m-%d}..{self.end:%Y-%m-%d} (baseline from {self.baseline_start:%Y-%m-%d})",
            f"  scenes        {fmt(self.scenes)}",
            f"  alerts        {fmt(self.alerts)}",
            f"  dead letters  {self.dead_letters}",
            "  seconds       " + ", ".join(f"{k}={v}" for k, v in self.stage_seconds.items()),
            f"  total         {self.seconds:.1f} s",
        ]


def _drain(loop: EventLoop, limit_s: float, max_records: int = 20) -> int:
    done = 0
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        n = loop.run_once(timeout_s=0.0 if done else 0.2, max_records=max_records)
        done += n
        if n == 0:
            return done
    return done


def run_period(runtime: Runtime, city_id: str, start: datetime, end: datetime, *,
               baseline_days: int | None = None, progress: bool = True,
               collect_alert_events: bool = False, idle_timeout_s: float = 120.0) -> RunSummary:
    """Backfill ``[start - baseline_days, end]`` for ``city_id`` and process it all."""
    from tqdm import tqdm

    from monitor.domain.events import AlertData, parse_event
    from monitor.domain.state import StateParams
    from monitor.pipeline.outbox import dispatch_due
    from monitor.pipeline.runtime import (
        build_alerting_loop,
        build_inference_loop,
        build_worker,
        discovery_cycle,
    )

    settings = runtime.settings
    started = time.perf_counter()
    if baseline_days is None:
        baseline_days = StateParams.from_dict(settings.state.params).baseline_days
    baseline_start = start - timedelta(days=max(0, baseline_days))
    summary = RunSummary(city_id=city_id, start=start, end=end, baseline_start=baseline_start)

    worker = build_worker(runtime)
    inference = build_inference_loop(runtime, worker, client_id=f"run-{city_id}-inference")
    b = settings.bus
    alerting, _ = build_alerting_loop(settings, runtime.bus, runtime.db,
                                      client_id=f"run-{city_id}-alerting")
    collector = (runtime.bus.consumer([b.alerts_topic], f"run-{city_id}-collector",
                                      client_id=f"run-{city_id}-collector")
                 if collect_alert_events else None)

    t = time.perf_counter()
    cycle = discovery_cycle(settings, runtime.bus, runtime.db, max_workers=1)
    report = cycle.backfill(city_id, baseline_start, end, progress=progress)
    summary.published = report.published
    t_discover = time.perf_counter() - t

    def pending() -> int:
        counts = runtime.db.scene_counts(city_id)
        return sum(counts.get(s, 0) for s in _PENDING)

    total = pending()
    from contextlib import ExitStack

    from tqdm.contrib.logging import logging_redirect_tqdm

    quiet = ExitStack()
    if progress:  # log lines (one per scene) print above the bar, not through it
        quiet.enter_context(logging_redirect_tqdm())
    bar = tqdm(total=total, desc=f"run {city_id}", unit="scene", disable=not progress)
    t_alert = 0.0
    idle_since = time.monotonic()
    try:
        while True:
            n = _drain(inference, limit_s=30.0, max_records=4)
            t = time.perf_counter()
            m = _drain(alerting, limit_s=300.0, max_records=50)
            dispatch_due(runtime.db, now=end, settings=settings.alerting)
            t_alert += time.perf_counter() - t
            if collector is not None:
                for message in collector.poll(timeout_s=0.0, max_records=10_000):
                    event = parse_event(message.value)
                    if isinstance(event.data, AlertData):
                        summary.alert_events.append(event.data)
                    collector.commit(message)
            left = pending()
            bar.n = max(0, total - left)
            bar.set_postfix(alerts=runtime.db.count_alerts(city_id=city_id))
            bar.refresh()
            if n or m:
                idle_since = time.monotonic()
            elif left == 0:
                # every scene is done; one more alerting pass catches the last ChangeEvents
                if _drain(alerting, limit_s=300.0) == 0:
                    break
            elif time.monotonic() - idle_since > idle_timeout_s:
                log.warning("run %s: %d scene(s) still pending after %.0f s without progress",
                            city_id, left, idle_timeout_s)
                break
    finally:
        bar.close()
        quiet.close()
        if collector is not None:
            collector.close()
    summary.pending = pending()
    summary.scenes = runtime.db.scene_counts(city_id)
    from monitor.domain.vocabulary import ALERT_STATUSES

    for status in ALERT_STATUSES:  # counted in SQL, never loading the city's alerts
        n = runtime.db.count_alerts(city_id=city_id, statuses=[status])
        if n:
            summary.alerts[status] = n
    summary.dead_letters = inference.stats.dead_lettered + alerting.stats.dead_lettered
    summary.stage_seconds = {"discover": round(t_discover, 2),
                             **{k: v for k, v in worker.times.as_dict().items() if k != "scenes"},
                             "alerting": round(t_alert, 2)}
    summary.seconds = round(time.perf_counter() - started, 1)
    return summary
