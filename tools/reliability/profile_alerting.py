"""Profile the alerting of real ChangeEvents of the 1 Mpx load city on PostgreSQL.

    python -m tools.reliability.profile_alerting [N_SCENES] [DATABASE_URL]

Runs the real inference worker over the cached, warmed load city (``var/load/``, as the
load run builds it) for N S2 scenes (default 10) on the embedded bus, then folds their
ChangeEvents with the real ``AlertingHandler`` into a fresh PostgreSQL database (created
on the server of DATABASE_URL, default the test server of ``docker/postgres.sh``, and
dropped after), publishing AlertEvents to an embedded bus, under cProfile. Prints the
seconds per event and per AlertEvent and the top functions by cumulative time. This is
what found the alerting's per-row writes (7.9 ms per AlertEvent, now 1.4 ms: README).
"""

from __future__ import annotations

import cProfile
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:55432/urban_monitor"


def main(argv: list[str]) -> int:
    from monitor.adapters.bus_embedded import EmbeddedBus
    from monitor.adapters.database import Database
    from monitor.domain.events import CHANGE_TYPE, parse_event
    from monitor.pipeline.alerting import AlertingHandler
    from monitor.pipeline.runtime import build_runtime, build_worker
    from monitor.settings import AlertingSettings
    from tools.reliability.load import (
        LoadOptions,
        copy_state,
        ensure_archive,
        ensure_warm_state,
        local_settings,
        register_scene,
        scene_events,
    )

    n_scenes = int(argv[0]) if argv else 10
    admin_url = argv[1] if len(argv) > 1 else DEFAULT_URL
    opts = LoadOptions()
    archive = ensure_archive(opts.work_dir, size_km=opts.size_km, seed=opts.seed,
                             start=opts.archive_start, end=opts.archive_end, progress=False)
    warm = ensure_warm_state(archive, opts.work_dir, opts.warm_until, progress=False)
    tmp = Path(tempfile.mkdtemp(prefix="profile-alerting-"))
    settings = local_settings(archive, tmp, ["pc"])
    copy_state(warm, settings.state.url, ["pc"])
    bus = EmbeddedBus(settings.bus.partitions)
    runtime = build_runtime(settings, bus=bus)
    try:
        worker = build_worker(runtime)
        done = 0
        for event in scene_events(archive, "pc", after=opts.warm_until, modalities=("s2",)):
            register_scene(runtime.db, event)
            done += worker.handle(event).status == "processed"
            if done >= n_scenes:
                break
        changes = [parse_event(m.value, CHANGE_TYPE)
                   for m in bus.records(settings.bus.changes_topic)]
    finally:
        runtime.close()
    print("change events", len(changes), "sites per event",
          [len(getattr(c.data, "sites", [])) for c in changes])

    name = f"profile_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    db = Database(admin_url.rsplit("/", 1)[0] + "/" + name)
    try:
        db.init_schema()
        handler = AlertingHandler(db, EmbeddedBus(6), settings=AlertingSettings(),
                                  alerts_topic="urban.alerts.v1",
                                  links_base="http://localhost:8000")
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.enable()
        for change in changes:
            handler(change)
        profile.disable()
        seconds = time.perf_counter() - t0
        print(f"alerting {len(changes)} events, {handler.published} AlertEvents: "
              f"{seconds:.2f} s, {seconds / max(len(changes), 1):.3f} s per event, "
              f"{1000 * seconds / max(handler.published, 1):.2f} ms per AlertEvent")
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
