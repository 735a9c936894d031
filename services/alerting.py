"""The alerting service: consumes ChangeEvents, records alerts, notifies subscribers.

    python -m services.alerting [--config FILE]

``run_alerting`` runs the consume loop (topic ``bus.changes_topic``, group
``bus.alerting_group``) in the calling thread and the webhook dispatcher in a second
thread, until ``stop_event`` is set.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from monitor.adapters.database import Database
from monitor.adapters.webhooks import WebhookSender
from monitor.domain.events import CHANGE_TYPE
from monitor.errors import UrbanMonitorError
from monitor.pipeline.alerting import AlertingHandler
from monitor.pipeline.consuming import ConsumeStats, EventLoop
from monitor.pipeline.outbox import dispatch_due, publish_pending
from monitor.ports import Bus
from monitor.settings import Settings, load_settings

log = logging.getLogger(__name__)


def run_dispatcher(settings: Settings, db: Database, stop_event: threading.Event) -> None:
    """Send due webhook deliveries every ``alerting.dispatch_interval_s`` until stopped."""
    with WebhookSender(timeout_s=settings.alerting.webhook_timeout_s) as sender:
        while not stop_event.is_set():
            try:
                stats = dispatch_due(db, datetime.now(UTC), sender=sender,
                                     settings=settings.alerting)
                busy = stats.delivered + stats.retried + stats.failed
            except UrbanMonitorError as exc:  # database down: keep trying, lose nothing
                log.warning("webhook dispatcher: %s", exc)
                busy = 0
            if not busy:
                stop_event.wait(settings.alerting.dispatch_interval_s)


def run_alerting(settings: Settings, bus: Bus, db: Database,
                 stop_event: threading.Event) -> ConsumeStats:
    """Consume ChangeEvents until ``stop_event`` is set; returns the loop's statistics."""
    topics = [settings.bus.changes_topic, settings.bus.alerts_topic,
              settings.bus.dead_letter_topic]
    bus.ensure_topics(topics, settings.bus.partitions)
    handler = AlertingHandler(db, bus, settings=settings.alerting,
                              alerts_topic=settings.bus.alerts_topic)
    publish_pending(db, bus)  # anything a crash left in the outbox goes out first
    consumer = bus.consumer([settings.bus.changes_topic], settings.bus.alerting_group,
                            client_id=f"{settings.bus.client_id}-alerting")
    loop = EventLoop(bus, consumer, handler, expected_type=CHANGE_TYPE,
                     dead_letter_topic=settings.bus.dead_letter_topic,
                     group=settings.bus.alerting_group)
    dispatcher = threading.Thread(target=run_dispatcher, args=(settings, db, stop_event),
                                  name="webhook-dispatcher", daemon=True)
    dispatcher.start()
    try:
        stats = loop.run(stop_event, timeout_s=0.5)
    finally:
        stop_event.set()
        consumer.close()
        dispatcher.join(timeout=settings.alerting.webhook_timeout_s + 5)
    return stats


def main(argv: Sequence[str] | None = None) -> int:
    from monitor.adapters.bus import create_bus

    parser = argparse.ArgumentParser(prog="urban-monitor-alerting", description=__doc__)
    parser.add_argument("--config", help="settings YAML (default config/default.yaml)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    logging.basicConfig(level=settings.logging.level,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    db = Database(settings.database.url)
    db.init_schema()
    bus = create_bus(settings.bus)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = run_alerting(settings, bus, db, stop)
    finally:
        bus.close()
        db.dispose()
    log.info("alerting stopped: %d processed, %d dead-lettered", stats.processed,
             stats.dead_lettered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
