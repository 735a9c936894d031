"""The scheduler service: interval polls that never overlap, a graceful stop on a stop
event and on a real SIGTERM to the process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from monitor.adapters.bus_embedded import EmbeddedBus
from monitor.adapters.database import Database
from monitor.adapters.stac_server import StacServer
from monitor.pipeline.scheduling import run_scheduler
from tests.integration.stac_fixtures import (
    ES,
    HostileStacServer,
    collection_file,
    embedded_events,
    item_by_id,
    make_settings,
    provider_settings,
    real_items,
    require_stac_dir,
    servable,
)

GOOD_ID = "S2B_T24MXV_20250731T130245_L2A"
CEARA = {"id": "ceara", "name": "Ceara coast", "bbox": [-40.5, -5.3, -37.5, -3.5]}


def test_scheduler_polls_repeatedly_without_overlap_and_stops_on_event(tmp_path: Path) -> None:
    require_stac_dir()
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    db.init_schema()
    good = item_by_id(ES, "sentinel-2-c1-l2a", GOOD_ID)
    # Each search takes 1.5 s while the interval is 0.6 s: runs would overlap if allowed.
    with HostileStacServer(features=[good], default="hang", hang_s=1.5) as server:
        settings = make_settings(
            providers={ES: provider_settings(server.url, ES, timeout_s=10)},
            sources=[{"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
                      "lookback_days": 10, "interval_minutes": 0.01}],
            cities=[CEARA], database_url=db.url)
        bus = EmbeddedBus()
        stop = threading.Event()
        clock_calls: list[datetime] = []

        def clock() -> datetime:  # a simulated "now": the day after the acquisitions
            clock_calls.append(datetime(2025, 8, 1, tzinfo=UTC))
            return clock_calls[-1]

        thread = threading.Thread(target=run_scheduler, args=(settings, bus, db, stop),
                                  kwargs={"clock": clock}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while len(server.searches) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the scheduler did not stop within 10 s"
        assert len(server.searches) >= 3 and len(clock_calls) >= 3
        assert server.max_in_flight == 1  # max_instances=1: polls never overlap
        events = embedded_events(bus, settings.bus.scenes_topic)
        assert [e.data.item_id for e in events] == [GOOD_ID]  # polled often, published once
    db.dispose()


def test_scheduler_process_stops_gracefully_on_sigterm(tmp_path: Path, repo_root: Path) -> None:
    require_stac_dir()
    items = servable(real_items(ES, "sentinel-2-c1-l2a"))
    db_url = f"sqlite:///{tmp_path / 'registry.db'}"
    # The process uses the real clock: look back far enough to reach the real items.
    lookback = (datetime.now(UTC) - datetime(2025, 7, 1, tzinfo=UTC)).days + 30
    with StacServer([collection_file(ES, "sentinel-2-c1-l2a")], items) as es:
        config = {
            "database": {"url": db_url},
            "bus": {"kind": "embedded"},
            "state": {"url": str(tmp_path / "state")},
            "providers": {ES: provider_settings(es.url, ES)},
            "sources": [{"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
                         "lookback_days": lookback, "interval_minutes": 5}],
            "cities": [CEARA],
        }
        path = tmp_path / "scheduler.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("URBAN_MONITOR_")}
        proc = subprocess.Popen([sys.executable, "-m", "services.scheduler", "--config",
                                 str(path)], cwd=repo_root, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            db = Database(db_url)
            deadline = time.monotonic() + 60
            published = 0
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    published = db.scene_counts().get("published", 0)
                except Exception:  # the process may not have created the schema yet
                    published = 0
                if published == 5:
                    break
                time.sleep(0.2)
            assert published == 5, f"scheduler did not publish the 5 Ceara scenes: {published}"
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, output
        assert "received SIGTERM" in output and "scheduler stopped" in output
        db.dispose()
