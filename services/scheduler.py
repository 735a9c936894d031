"""The scheduler service: polls every enabled source at its own interval and publishes
new scenes (APScheduler 3, one interval job per source).

    python -m services.scheduler [--config FILE]      # or: urban-monitor serve scheduler

Jobs never overlap (``max_instances=1``) and missed runs collapse into one (``coalesce``):
a slow API delays the next poll of that source, it never stacks polls. SIGTERM/SIGINT stop
the scheduler after the polls in hand finish; whatever they registered but could not
publish stays ``discovered`` and goes out on the next start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.adapters.database import Database
from monitor.domain.events import utc_now
from monitor.errors import UrbanMonitorError
from monitor.pipeline.discovery import Clock, CycleReport, DiscoveryCycle, Strategy
from monitor.ports import Bus
from monitor.settings import Settings, load_settings

if TYPE_CHECKING:
    from monitor.pipeline.runtime import Runtime

log = logging.getLogger(__name__)

# A poll that starts this late (e.g. the machine slept) still runs, once.
MISFIRE_GRACE_S = 300


def poll_job(cycle: DiscoveryCycle, source_name: str) -> CycleReport | None:
    """One scheduled poll. Never raises: a bug or an outage in one poll must not take the
    scheduler down (the error is logged with its traceback and the next run retries)."""
    try:
        return cycle.poll_source(cycle.source(source_name))
    except UrbanMonitorError as exc:
        log.error("poll of source %s failed: %s", source_name, exc)
    except Exception:  # deliberately broad: the scheduler thread must survive any bug
        log.exception("poll of source %s failed unexpectedly", source_name)
    return None


def build_scheduler(cycle: DiscoveryCycle, *, start_now: bool = True,
                    sources: Sequence[str] | None = None) -> BackgroundScheduler:
    """A (not yet started) scheduler with one interval job per enabled source."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1,
                      "misfire_grace_time": MISFIRE_GRACE_S})
    chosen = ([cycle.source(n) for n in sources] if sources is not None
              else [s for s in cycle.settings.sources if s.enabled])
    for source in chosen:
        scheduler.add_job(
            poll_job, IntervalTrigger(minutes=source.interval_minutes, timezone=UTC),
            args=[cycle, source.name], id=f"discover:{source.name}",
            name=f"discover {source.name} every {source.interval_minutes:g} min",
            next_run_time=datetime.now(UTC) if start_now else None,
            max_instances=1, coalesce=True, replace_existing=True)
    return scheduler


def install_signal_handlers(stop_event: threading.Event) -> bool:
    """SIGTERM/SIGINT set ``stop_event``. Only possible in the main thread; False otherwise
    (then the caller owns the stop event, e.g. ``urban-monitor serve all``)."""
    if threading.current_thread() is not threading.main_thread():
        return False

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: stopping the scheduler after the polls in hand",
                 signal.Signals(signum).name)
        stop_event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return True


def run_scheduler(settings: Settings, bus: Bus, db: Database,
                  stop_event: threading.Event | None = None, *,
                  clock: Clock = utc_now, strategy: Strategy = "batched",
                  max_workers: int = 8, install_signals: bool | None = None) -> None:
    """Poll all enabled sources on their intervals until ``stop_event`` is set (or
    SIGTERM/SIGINT when run in the main thread without a stop event of its own).

    ``clock`` gives "now" to each poll (inject a simulated clock to replay an archive as
    if live). Blocks; returns after a graceful shutdown (running polls finish first).
    """
    own_event = stop_event is None
    stop_event = stop_event or threading.Event()
    if install_signals if install_signals is not None else own_event:
        install_signal_handlers(stop_event)
    bus.ensure_topics([settings.bus.scenes_topic], settings.bus.partitions)
    cycle = DiscoveryCycle(settings, bus, db, clock=clock, strategy=strategy,
                           max_workers=max_workers)
    scheduler = build_scheduler(cycle)
    if not scheduler.get_jobs():
        log.warning("no enabled sources in the settings: the scheduler has nothing to poll")
    scheduler.start()
    for job in scheduler.get_jobs():
        log.info("scheduled %s", job.name)
    try:
        while not stop_event.wait(1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        try:
            bus.flush()
        except UrbanMonitorError as exc:
            log.warning("flushing the bus at shutdown failed: %s", exc)
        log.info("scheduler stopped")


def serve_scheduler(runtime: Runtime, stop: threading.Event) -> None:
    """``run_scheduler`` for a composed :class:`Runtime` (``urban-monitor serve``)."""
    run_scheduler(runtime.settings, runtime.bus, runtime.db, stop, install_signals=False)


def main(argv: Sequence[str] | None = None) -> int:
    from monitor.cli import configure_logging
    from monitor.pipeline.runtime import build_runtime

    parser = argparse.ArgumentParser(prog="python -m services.scheduler",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="settings file (YAML)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    configure_logging(settings.logging.level)
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        runtime = build_runtime(settings)
    except UrbanMonitorError as exc:
        log.error("%s", exc)
        return 2
    try:
        run_scheduler(runtime.settings, runtime.bus, runtime.db, stop, install_signals=False)
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
