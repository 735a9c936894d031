"""Load run: many 1 Mpx cities through Kafka, N inference worker processes and alerting.

    python -m tools.reliability.load --workers 3 --cities 6 --rate 10

What it does (issue 9):

1. generates (once, cached under ``var/load/``) a synthetic 10 km x 10 km archive, i.e.
   a 1 Mpx city, and registers it as ``--cities`` cities with their own ids over the same
   AOI: each has its own state, its own partition and its own alerts, which is what load
   means here (the pixels read are the same files, so the OS page cache is kinder than it
   would be with distinct cities: say so when quoting the figures);
2. warms one city state on the first months of the archive (cached) and copies it to every
   city, so the measured scenes run the full model path (S2 and S1 references exist);
3. starts ``--workers`` inference processes (``monitor.pipeline.runtime.build_worker`` /
   ``build_inference_loop`` over Kafka and PostgreSQL, in their own interpreters) and the alerting
   service (``urban-monitor serve alerting``), on fresh topics and a fresh database;
4. *saturation*: registers and publishes ``--burst`` scenes per city at once (as discovery
   does: scene registry ``discovered``, SceneEvent, ``published``) and measures scenes per
   minute until the last one is processed;
5. *paced*: publishes at ``--rate`` scenes per minute for ``--paced-s`` seconds and measures
   the latency from discovery (registry ``discovered_at``) to the ChangeEvent and to the
   AlertEvent (record timestamps on the topics), p50/p95;
6. samples the consumer lag (end offsets minus committed offsets) of both groups all along,
   and the peak resident memory (``VmHWM``) of every process; workers report their stage
   timers when they stop.

The table goes to stdout and the figures to ``var/benchmarks/load.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import Any

import yaml

from monitor.errors import UrbanMonitorError
from tools.reliability.load_observe import Monitor, Observed, wait_drained
from tools.reliability.load_setup import (
    PROVIDER,
    REPO_ROOT,
    city_entry,
    copy_state,
    ensure_archive,
    ensure_warm_state,
    local_settings,
    percentile,
    provider_entry,
    register_scene,
    resolve_models,
    scene_events,
    spread_city_ids,
    vm_hwm_kib,
)

__all__ = ["LoadOptions", "copy_state", "ensure_archive", "ensure_warm_state", "format_table",
           "local_settings", "register_scene", "run_load", "scene_events"]

log = logging.getLogger(__name__)
@dataclass
class LoadOptions:
    workers: int = 3
    cities: int = 6
    rate_per_min: float = 10.0
    burst_per_city: int = 4
    paced_s: float = 150.0
    partitions: int = 6
    size_km: float = 10.0
    seed: int = 11
    archive_start: date = date(2019, 1, 1)
    archive_end: date = date(2019, 12, 31)
    warm_until: date = date(2019, 4, 15)
    work_dir: Path = REPO_ROOT / "var" / "load"
    output: Path = REPO_ROOT / "var" / "benchmarks" / "load.json"
    bootstrap: str | None = None
    database_url: str | None = None
    drain_timeout_s: float = 240.0
    progress: bool = True
    # which scenes are measured: both (what discovery delivers) or one modality. S1 scenes
    # skip the model while the calibrated S1 weight is 0 (monitor/domain/STATE.md), so an
    # "s2" run is the model-bound worst case.
    modalities: tuple[str, ...] = ("s2", "s1")

# -- the worker process -----------------------------------------------------------------
def serve_worker(config: Path, report: Path) -> int:
    """One inference worker process; writes its stage timers and stats at SIGTERM."""
    from monitor.pipeline.runtime import (
        build_inference_loop,
        build_runtime,
        build_worker,
        install_stop_handlers,
    )
    from monitor.settings import load_settings

    settings = load_settings(config)
    logging.basicConfig(level=settings.logging.level,
                        format=f"%(asctime)s %(levelname)-7s worker-{os.getpid()} %(name)s: "
                        "%(message)s")
    stop = threading.Event()
    install_stop_handlers(stop)
    runtime = build_runtime(settings)
    worker = build_worker(runtime)
    loop = build_inference_loop(runtime, worker, client_id=f"load-worker-{os.getpid()}")
    try:
        loop.run(stop, timeout_s=0.5)
    finally:
        loop.consumer.close()
        report.write_text(json.dumps({
            "pid": os.getpid(), "times": worker.times.as_dict(),
            "processed": loop.stats.processed, "dead_lettered": loop.stats.dead_lettered,
            "retried": loop.stats.retried, "vm_hwm_kib": vm_hwm_kib(os.getpid())}, indent=1))
        runtime.close()
    return 0


# -- the run ------------------------------------------------------------------------------
def _pick_database(opts: LoadOptions) -> str:
    url = opts.database_url or os.environ.get("URBAN_MONITOR_TEST_DATABASE_URL")
    if url is None:
        completed = subprocess.run(["bash", str(REPO_ROOT / "docker" / "postgres.sh"), "start"],
                                   capture_output=True, text=True, check=False, timeout=300)
        lines = completed.stdout.strip().splitlines()
        if completed.returncode != 0 or not lines:
            raise UrbanMonitorError("PostgreSQL did not start for the load run",
                                    "run `bash docker/postgres.sh start` and see its output")
        url = lines[-1].strip()
    return url


def _pick_bootstrap(opts: LoadOptions) -> str:
    bootstrap = opts.bootstrap or os.environ.get("URBAN_MONITOR_TEST_KAFKA")
    if bootstrap is None:
        completed = subprocess.run(["bash", str(REPO_ROOT / "docker" / "kafka.sh"), "start"],
                                   capture_output=True, text=True, check=False, timeout=300)
        lines = completed.stdout.strip().splitlines()
        if completed.returncode != 0 or not lines:
            raise UrbanMonitorError("Kafka did not start for the load run",
                                    "run `bash docker/kafka.sh start` and see its output")
        bootstrap = lines[-1].strip()
    return bootstrap


LOAD_DATABASE = "urban_monitor_load"


def fresh_database(admin_url: str) -> str:
    """Drop and create the load run's own PostgreSQL database; returns its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # A constant identifier: DDL cannot take bound parameters.
        conn.execute(text(f'DROP DATABASE IF EXISTS "{LOAD_DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{LOAD_DATABASE}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + LOAD_DATABASE


def _start(command: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    out = open(log_path, "wb")  # noqa: SIM115 (the child owns it until it exits)
    return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT)


def _stop(processes: Sequence[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in processes:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            log.warning("process %d did not stop in time: killing it", p.pid)
            p.kill()
            p.wait(timeout=10)


def _publish(db: Any, bus: Any, topic: str, event: Any, discovered: dict[str, float]) -> None:
    register_scene(db, event)
    discovered[event.id] = time.time()
    bus.publish(topic, event.data.city_id, event.to_json())
    db.mark_scene(event.id, "published")


def _finished(db: Any, ids: Iterable[str]) -> dict[str, tuple[str, float]]:
    """Scene id -> (final status, processed_at epoch s) for the finished ones."""
    wanted = set(ids)
    out = {}
    for scene in db.scenes(statuses=["processed", "skipped", "dead_lettered"]):
        if scene.id in wanted and scene.processed_at is not None:
            stamp = scene.processed_at
            stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
            out[scene.id] = (scene.status, stamp.timestamp())
    return out


def _wait_finished(db: Any, ids: Sequence[str], timeout_s: float,
                   processes: Sequence[subprocess.Popen[bytes]]) -> dict[str, tuple[str, float]]:
    deadline = time.monotonic() + timeout_s
    done = _finished(db, ids)
    while len(done) < len(ids) and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise UrbanMonitorError("a load process exited early",
                                    "read its log under var/load/run-*/")
        time.sleep(1.0)
        done = _finished(db, ids)
    return done


def _alert_latencies(observed: Observed, discovered: dict[str, float],
                     city_item_to_scene: dict[tuple[str, str], str]) -> list[float]:
    """Discovery -> AlertEvent for every alert revision: the triggering scene is the
    latest of the alert's scenes whose ChangeEvent came out before the AlertEvent."""
    out = []
    for alert in observed.alerts:
        best: tuple[float, str] | None = None
        for item_id in alert["scene_ids"]:
            scene_id = city_item_to_scene.get((alert["city_id"], item_id))
            at = observed.change_at.get(scene_id or "")
            if scene_id in discovered and at is not None and at <= alert["at"] + 1.0 and (
                    best is None or at > best[0]):
                best = (at, scene_id)
        if best is not None:
            out.append(alert["at"] - discovered[best[1]])
    return out


def run_load(opts: LoadOptions) -> dict[str, Any]:
    from monitor.adapters.bus_kafka import KafkaBus
    from monitor.adapters.database import Database
    from monitor.settings import load_settings

    started = time.time()
    load_before = os.getloadavg()
    archive = ensure_archive(opts.work_dir, size_km=opts.size_km, seed=opts.seed,
                             start=opts.archive_start, end=opts.archive_end,
                             progress=opts.progress)
    warm_store = ensure_warm_state(archive, opts.work_dir, opts.warm_until,
                                   progress=opts.progress)
    bootstrap = _pick_bootstrap(opts)
    db_url = fresh_database(_pick_database(opts))
    run_id = uuid.uuid4().hex[:8]
    run_dir = opts.work_dir / f"run-{run_id}"
    run_dir.mkdir(parents=True)
    city_ids = spread_city_ids(opts.cities, opts.partitions)
    models = resolve_models()
    config = {
        "cities_file": "",
        "cities": [city_entry(c, archive) for c in city_ids],
        "bus": {"kind": "kafka", "bootstrap_servers": bootstrap,
                "scenes_topic": f"load.{run_id}.scenes", "changes_topic": f"load.{run_id}.changes",
                "alerts_topic": f"load.{run_id}.alerts",
                "dead_letter_topic": f"load.{run_id}.deadletter",
                "partitions": opts.partitions, "inference_group": f"load-{run_id}-inference",
                "alerting_group": f"load-{run_id}-alerting", "client_id": f"load-{run_id}"},
        "database": {"url": db_url},
        "state": {"url": str(run_dir / "state")},
        "models": {"s2": models["s2"], "s1": models["s1"], "threads": 1},
        "logging": {"level": "WARNING"},
        "providers": {PROVIDER: provider_entry()},
    }
    config_path = run_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    settings = load_settings(config_path)
    copy_state(warm_store, settings.state.url, city_ids)

    db = Database(db_url)
    db.init_schema()
    bus = KafkaBus(bootstrap, client_id=f"load-{run_id}-publisher")
    b = settings.bus
    bus.ensure_topics([b.scenes_topic, b.changes_topic, b.alerts_topic, b.dead_letter_topic],
                      opts.partitions)
    python = sys.executable
    workers = [_start([python, "-m", "tools.reliability.load", "serve-worker",
                       "--config", str(config_path), "--report", str(run_dir / f"worker{i}.json")],
                      run_dir / f"worker{i}.log") for i in range(opts.workers)]
    alerting = _start([python, "-m", "services.alerting", "--config", str(config_path)],
                      run_dir / "alerting.log")
    processes = [*workers, alerting]
    monitor = Monitor(bootstrap, settings)
    monitor.start()
    per_city = {c: scene_events(archive, c, after=opts.warm_until, modalities=opts.modalities)
                for c in city_ids}
    discovered: dict[str, float] = {}
    result: dict[str, Any] = {}
    try:
        monitor.wait_for_group(b.inference_group, opts.workers)
        monitor.wait_for_group(b.alerting_group, 1)
        ready_s = time.time() - started

        # Saturation: a burst of scenes per city, all at once.
        monitor.phase = "saturation"
        burst = [per_city[c][i] for i in range(opts.burst_per_city) for c in city_ids]
        t_burst = time.time()
        for event in burst:
            _publish(db, bus, b.scenes_topic, event, discovered)
        done = _wait_finished(db, [e.id for e in burst], opts.drain_timeout_s, processes)
        last = max((t for _, t in done.values()), default=time.time())
        saturated_per_min = len(done) / max(last - t_burst, 1e-6) * 60

        # Let the alerting work off the burst first: the paced latencies are the steady
        # state at that rate, not the tail of the saturation backlog.
        monitor.phase = "drain"
        t_drain = time.time()
        drained_s = wait_drained(monitor, b.alerting_group, monitor.change_tps,
                                 opts.drain_timeout_s)

        # Paced: one scene every 60/rate seconds, cities round-robin.
        monitor.phase = "paced"
        n_paced = max(1, int(opts.rate_per_min * opts.paced_s / 60))
        cursor = opts.burst_per_city
        paced = []
        for i in range(n_paced):
            city = city_ids[i % len(city_ids)]
            index = cursor + i // len(city_ids)
            if index < len(per_city[city]):
                paced.append(per_city[city][index])
        t_paced = time.time()
        for i, event in enumerate(paced):
            delay = t_paced + i * 60.0 / opts.rate_per_min - time.time()
            if delay > 0:
                time.sleep(delay)
            _publish(db, bus, b.scenes_topic, event, discovered)
        paced_done = _wait_finished(db, [e.id for e in paced], opts.drain_timeout_s, processes)
        monitor.phase = "drain"
        time.sleep(4.0)  # let alerting fold the last changes and the lag sampler see zero
        peaks = {f"worker{i}": vm_hwm_kib(p.pid) for i, p in enumerate(workers)}
        peaks["alerting"] = vm_hwm_kib(alerting.pid)
    finally:
        _stop(processes)
        monitor.close()
        bus.close()

    reports = []
    for i in range(opts.workers):
        path = run_dir / f"worker{i}.json"
        reports.append(json.loads(path.read_text()) if path.exists() else {})
    scene_to_city_item = {e.id: (e.data.city_id, e.data.item_id)
                          for events in per_city.values() for e in events}
    city_item_to_scene = {v: k for k, v in scene_to_city_item.items()}
    paced_ids = {e.id for e in paced}
    processed_lat = [paced_done[i][1] - discovered[i] for i in paced_ids if i in paced_done]
    change_lat = [monitor.observed.change_at[i] - discovered[i] for i in paced_ids
                  if i in monitor.observed.change_at]
    alert_lat_all = _alert_latencies(monitor.observed, discovered, city_item_to_scene)
    paced_alerts = Observed(change_at=monitor.observed.change_at,
                            alerts=[a for a in monitor.observed.alerts if a["at"] >= t_paced])
    alert_lat = _alert_latencies(paced_alerts, {k: v for k, v in discovered.items()
                                                if k in paced_ids}, city_item_to_scene)
    statuses: dict[str, int] = {}
    for status, _ in list(done.values()) + list(paced_done.values()):
        statuses[status] = statuses.get(status, 0) + 1
    stage_totals: dict[str, float] = {}
    for r in reports:
        for k, v in r.get("times", {}).items():
            stage_totals[k] = round(stage_totals.get(k, 0.0) + v, 2)
    n_timed = stage_totals.get("scenes", 0) or 1
    lag = monitor.observed.lag

    def stats(values: list[float]) -> dict[str, Any]:
        return {"n": len(values), "p50_s": _r(percentile(values, 50)),
                "p95_s": _r(percentile(values, 95)), "max_s": _r(max(values, default=None))}

    result = {
        "machine": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": {"workers": opts.workers, "cities": len(city_ids), "city_ids": city_ids,
                  "partitions": opts.partitions, "grid": archive.grid.to_dict(),
                  "city_pixels": _city_pixels(archive), "models": models,
                  "warm_until": opts.warm_until.isoformat(), "bus": "kafka",
                  "database": "postgresql", "run_dir": str(run_dir),
                  "ready_s": round(ready_s, 1)},
        "saturation": {"scenes": len(burst), "finished": len(done),
                       "by_modality": dict(Counter(e.data.modality for e in burst)),
                       "alerting_drained_after_s": round(drained_s + t_drain - last, 1),
                       "scenes_per_min": round(saturated_per_min, 2),
                       "seconds": round(last - t_burst, 1)},
        "paced": {"rate_per_min": opts.rate_per_min, "scenes": len(paced),
                  "finished": len(paced_done),
                  "discovery_to_processed": stats(processed_lat),
                  "discovery_to_change_event": stats(change_lat),
                  "discovery_to_alert_event": stats(alert_lat)},
        "alerts": {"alert_events": len(monitor.observed.alerts),
                   "discovery_to_alert_event_all_phases": stats(alert_lat_all)},
        "scene_statuses": statuses,
        "consumer_lag": {
            "inference_max": max((s["inference"] for s in lag), default=None),
            "alerting_max": max((s["alerting"] for s in lag), default=None),
            "inference_max_paced": max((s["inference"] for s in lag if s["phase"] == "paced"),
                                       default=None),
            "inference_mean_paced": _r(statistics.fmean(
                [s["inference"] for s in lag if s["phase"] == "paced"] or [0])),
            "samples": lag},
        "peak_rss_mib": {k: round(v / 1024, 1) if v else None for k, v in peaks.items()},
        "worker_reports": reports,
        "stage_seconds_per_scene": {k: round(v / n_timed, 3) for k, v in stage_totals.items()
                                    if k != "scenes"},
        "seconds": round(time.time() - started, 1),
        "targets": {"throughput_scenes_per_min": 20, "p95_discovery_to_alert_s": 30},
    }
    db.dispose()
    shutil.rmtree(run_dir / "state", ignore_errors=True)  # ~32 MB per city and version
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(json.dumps(result, indent=1, default=str))
    return result


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _city_pixels(archive: Any) -> int:
    from monitor.domain.grid import CityGrid

    grid = CityGrid.from_aoi(archive.aoi)
    return grid.width * grid.height


def format_table(result: dict[str, Any]) -> str:
    p = result["paced"]
    rows = [
        ("workers x cities (partitions)", f"{result['setup']['workers']} x "
         f"{result['setup']['cities']} ({result['setup']['partitions']}), "
         f"{result['setup']['city_pixels'] / 1e6:.2f} Mpx each"),
        ("saturated throughput", f"{result['saturation']['scenes_per_min']} scenes/min "
         f"({result['saturation']['finished']}/{result['saturation']['scenes']} scenes in "
         f"{result['saturation']['seconds']} s; "
         + ", ".join(f"{n} {m.upper()}" for m, n in
                     result['saturation'].get('by_modality', {}).items())
         + ")  [target >= 20]"),
        ("alerting after the burst", "backlog worked off "
         f"{result['saturation'].get('alerting_drained_after_s', '?')} s after the last scene"),
        ("paced rate", f"{p['rate_per_min']} scenes/min, {p['finished']}/{p['scenes']} done"),
    ]
    for name, key in (("discovery -> processed", "discovery_to_processed"),
                      ("discovery -> ChangeEvent", "discovery_to_change_event"),
                      ("discovery -> AlertEvent", "discovery_to_alert_event")):
        s = p[key]
        rows.append((name, f"p50 {s['p50_s']} s, p95 {s['p95_s']} s, max {s['max_s']} s "
                     f"(n={s['n']})" + ("  [target p95 <= 30]" if "Alert" in name else "")))
    lag = result["consumer_lag"]
    rows.append(("consumer lag (max)", f"inference {lag['inference_max']} (paced "
                 f"{lag['inference_max_paced']}, mean {lag['inference_mean_paced']}), "
                 f"alerting {lag['alerting_max']}"))
    rows.append(("peak RSS (MiB)", ", ".join(f"{k} {v}" for k, v in
                                             result["peak_rss_mib"].items())))
    rows.append(("stage s/scene (workers)", ", ".join(
        f"{k} {v}" for k, v in result["stage_seconds_per_scene"].items())))
    rows.append(("scene statuses", ", ".join(f"{k} {v}" for k, v in
                                             sorted(result["scene_statuses"].items()))))
    rows.append(("load average before/after", f"{result['machine']['loadavg_before']} / "
                 f"{result['machine']['loadavg_after']} on {result['machine']['cpus']} CPUs"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.reliability.load",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("serve-worker", help="(internal) one inference worker process")
    worker.add_argument("--config", required=True, type=Path)
    worker.add_argument("--report", required=True, type=Path)
    defaults = LoadOptions()
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--cities", type=int, default=defaults.cities)
    parser.add_argument("--rate", type=float, default=defaults.rate_per_min,
                        help="paced phase: scenes per minute (default %(default)s)")
    parser.add_argument("--burst", type=int, default=defaults.burst_per_city,
                        help="saturation phase: scenes per city published at once")
    parser.add_argument("--paced-s", type=float, default=defaults.paced_s)
    parser.add_argument("--partitions", type=int, default=defaults.partitions)
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: docker/kafka.sh)")
    parser.add_argument("--database-url", help="PostgreSQL admin URL (default: "
                        "docker/postgres.sh); the run uses its own database on that server")
    parser.add_argument("--output", type=Path, default=defaults.output)
    parser.add_argument("--modalities", default="s2,s1",
                        help="scenes measured: 's2,s1' (default, as discovered) or 's2' alone "
                        "(the model-bound worst case: S1 scenes skip the model while the "
                        "calibrated S1 weight is 0)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "serve-worker":
        return serve_worker(args.config, args.report)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: "
                        "%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # one line per connection otherwise
    opts = LoadOptions(workers=args.workers, cities=args.cities, rate_per_min=args.rate,
                       burst_per_city=args.burst, paced_s=args.paced_s,
                       partitions=args.partitions, bootstrap=args.bootstrap,
                       database_url=args.database_url, output=args.output,
                       progress=not args.no_progress,
                       modalities=tuple(m.strip() for m in args.modalities.split(",") if m))
    result = run_load(opts)
    print(format_table(result))
    print(f"figures written to {opts.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

