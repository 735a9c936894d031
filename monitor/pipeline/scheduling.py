"""The live schedule of discovery: every enabled source polled at its own interval
(APScheduler 3, one interval job per source).

Jobs never overlap (``max_instances=1``) and missed runs collapse into one (``coalesce``):
a slow API delays the next poll of that source, it never stacks polls. A stop (event or
SIGTERM/SIGINT) ends the scheduler after the polls in hand finish; whatever they
registered but could not publish stays ``discovered`` and goes out on the next start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.domain.events import utc_now
from monitor.errors import UrbanMonitorError
from monitor.pipeline.coverage import CoverageService, CoverageWatch
from monitor.pipeline.discovery import Clock, CycleReport, DiscoveryCycle, Strategy
from monitor.pipeline.runtime import discovery_cycle, install_stop_handlers
from monitor.ports import Bus, SceneRegistry
from monitor.settings import Settings

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


def coverage_job(watch: CoverageWatch, clock: Clock) -> int:
    """One coverage gap check (``monitor.pipeline.coverage``); never raises."""
    try:
        return len(watch.check(clock()))
    except UrbanMonitorError as exc:
        log.error("coverage check failed: %s", exc)
    except Exception:  # deliberately broad: the scheduler thread must survive any bug
        log.exception("coverage check failed unexpectedly")
    return 0


def add_coverage_job(scheduler: BackgroundScheduler, settings: Settings, bus: Bus,
                     registry: SceneRegistry, clock: Clock = utc_now) -> CoverageWatch:
    """Check for coverage gaps every ``coverage.check_minutes`` (first check one interval
    after the start) and publish their events on ``coverage.topic``."""
    from monitor.pipeline.runtime import stac_catalogs

    watch = CoverageWatch(settings, bus, CoverageService(
        settings, registry=registry, catalog_for=stac_catalogs(settings)),
        outbox=registry if hasattr(registry, "save_alert_changes") else None)
    minutes = settings.coverage.check_minutes
    scheduler.add_job(coverage_job, IntervalTrigger(minutes=minutes, timezone=UTC),
                      args=[watch, clock], id="coverage", name=f"coverage gaps every "
                      f"{minutes:g} min", max_instances=1, coalesce=True, replace_existing=True)
    return watch


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


def run_scheduler(settings: Settings, bus: Bus, registry: SceneRegistry,
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
        install_stop_handlers(stop_event, "the polls in hand")
    bus.ensure_topics([settings.bus.scenes_topic], settings.bus.partitions)
    cycle = discovery_cycle(settings, bus, registry, clock=clock, strategy=strategy,
                            max_workers=max_workers)
    scheduler = build_scheduler(cycle)
    if not scheduler.get_jobs():
        log.warning("no enabled sources in the settings: the scheduler has nothing to poll")
    else:
        bus.ensure_topics([settings.coverage.topic], settings.bus.partitions)
        add_coverage_job(scheduler, settings, bus, registry, clock)
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
