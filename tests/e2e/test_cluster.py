"""The distributed topology on this machine without Docker (docker/cluster.sh).

A synthetic archive (three cities over the same 1 km AOI, whose ids land on the three
partitions of the scenes topic) is served by a real STAC API (rustac); docker/cluster.sh
starts the scheduler, three inference worker processes in one consumer group, alerting and
the API against the real Kafka broker and PostgreSQL, on fresh topics and a fresh
database. The test waits until every discovered scene is processed, checks that the
consumer group gave each worker its own partitions and that each worker handled scenes,
that alerts reached PostgreSQL and the API, then stops the cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER = REPO_ROOT / "docker" / "cluster.sh"
PARTITIONS = 3
WORKERS = 3
SETTLE_TIMEOUT_S = 420


def spread_city_ids(n: int, partitions: int) -> list[str]:
    """City ids whose keys land on ``n`` different partitions (Kafka's murmur2 partitioner),
    so the three workers each own a city."""
    from kafka.partitioner.default import murmur2

    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < n:
        city_id = f"cluster-city-{i}"
        partition = (murmur2(city_id.encode()) & 0x7FFFFFFF) % partitions
        chosen.setdefault(partition, city_id)
        i += 1
    return [chosen[p] for p in sorted(chosen)]


def _assigned(raw: object) -> list[tuple[str, list[int]]]:
    """(topic, partitions) pairs of a decoded consumer-protocol assignment (dict or object)."""
    if isinstance(raw, dict):
        entries = raw.get("assigned_partitions") or raw.get("assignment") or []
    else:
        entries = getattr(raw, "assigned_partitions", None) or getattr(raw, "assignment", [])
    out = []
    for entry in entries or []:
        if isinstance(entry, dict):
            out.append((str(entry["topic"]), [int(p) for p in entry["partitions"]]))
        else:
            out.append((str(entry[0]), [int(p) for p in entry[1]]))
    return out


def _member_partitions(admin: object, group: str, topic: str) -> dict[str, set[int]]:
    """member id -> partitions of ``topic`` it owns now (DescribeGroups)."""
    described = admin.describe_groups([group])  # type: ignore[attr-defined]
    info = described[group]
    out: dict[str, set[int]] = {}
    for member in info["members"]:
        parts = {p for name, numbers in _assigned(member["member_assignment"])
                 if name == topic for p in numbers}
        out[str(member["member_id"])] = parts
    return out


@pytest.fixture
def cluster_env(tmp_path: Path, kafka_bootstrap: str, postgres_url: str):
    from monitor.adapters.stac_server import StacServer, free_port
    from monitor.synthetic.archive import generate_archive
    from monitor.synthetic.params import ArchiveParams
    from tools.reliability.harness import resolve_models
    from tools.reliability.infrastructure import drop_database, fresh_database

    # Recent dates: the scheduler polls on the real clock, its first window reaches back
    # ``lookback_days``.
    end = date.today() - timedelta(days=1)
    archive = generate_archive(
        REPO_ROOT / "var" / "cluster-test" / f"archive-{end:%Y%m%d}",
        ArchiveParams(name="cluster", size_km=1.0, start=end - timedelta(days=150), end=end,
                      seed=5), progress=False)
    db_url = fresh_database(postgres_url, prefix="cluster")
    ns = f"cluster-{uuid.uuid4().hex[:6]}"
    cities = spread_city_ids(WORKERS, PARTITIONS)
    models = resolve_models()
    with StacServer(list(archive.collection_paths.values()),
                    list(archive.item_collection_paths.values())) as stac:
        api_port = free_port()
        config = {
            "base": str(REPO_ROOT / "config" / "default.yaml"),
            "cities_file": "",
            "cities": [{"id": c, "name": c, "geometry": dict(archive.aoi.__geo_interface__)}
                       for c in cities],
            "bus": {"kind": "kafka", "scenes_topic": f"{ns}.scenes.v1",
                    "changes_topic": f"{ns}.changes.v1", "alerts_topic": f"{ns}.alerts.v1",
                    "dead_letter_topic": f"{ns}.deadletter.v1", "partitions": PARTITIONS,
                    "inference_group": f"{ns}-inference", "alerting_group": f"{ns}-alerting",
                    "client_id": ns},
            "state": {"url": str(tmp_path / "state")},
            "models": {"s2": models["s2"], "s1": models["s1"], "threads": 1},
            "api": {"port": api_port},
            "providers": {"synthetic": {
                "url": stac.url, "signing": "none",
                "collections": {
                    "sentinel-2-l2a": {"modality": "s2", "assets": {
                        b: b for b in ("blue", "green", "red", "nir", "swir16", "swir22",
                                       "scl")}},
                    "sentinel-1-rtc": {"modality": "s1", "assets": {"vv": "vv", "vh": "vh"}}}}},
            "sources": [
                {"name": "s2-synthetic", "provider": "synthetic",
                 "collection": "sentinel-2-l2a", "interval_minutes": 1440,
                 "lookback_days": 160, "max_cloud_cover": 95},
                {"name": "s1-synthetic", "provider": "synthetic",
                 "collection": "sentinel-1-rtc", "interval_minutes": 1440,
                 "lookback_days": 160}],
        }
        config_path = tmp_path / "cluster.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {**os.environ, "URBAN_MONITOR_CLUSTER_DIR": str(tmp_path / "cluster"),
               "URBAN_MONITOR_CLUSTER_WORKERS": str(WORKERS),
               "URBAN_MONITOR_BUS__BOOTSTRAP_SERVERS": kafka_bootstrap,
               "URBAN_MONITOR_DATABASE__URL": db_url}
        try:
            yield {"config": config_path, "env": env, "db_url": db_url, "ns": ns,
                   "cities": cities, "api": f"http://127.0.0.1:{api_port}",
                   "dir": tmp_path / "cluster", "bootstrap": kafka_bootstrap}
        finally:
            subprocess.run(["bash", str(CLUSTER), "stop"], env=env, cwd=REPO_ROOT,
                           capture_output=True, timeout=120, check=False)
            drop_database(postgres_url, db_url)


def test_cluster_spreads_cities_over_three_workers(cluster_env: dict) -> None:
    from kafka.admin import KafkaAdminClient

    from monitor.adapters.database import Database

    env = cluster_env["env"]
    started = subprocess.run(["bash", str(CLUSTER), "start", str(cluster_env["config"])],
                             env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=300, check=False)
    assert started.returncode == 0, started.stderr[-3000:]
    status = subprocess.run(["bash", str(CLUSTER), "status"], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=30, check=False)
    assert status.returncode == 0, status.stdout
    assert status.stdout.count("running") == WORKERS + 3

    db = Database(cluster_env["db_url"])
    terminal = ("processed", "skipped", "dead_lettered")
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    counts: dict[str, dict[str, int]] = {}
    while time.monotonic() < deadline:
        counts = {c: db.scene_counts(c) for c in cluster_env["cities"]}
        if all(sum(n.values()) > 0 and all(s in terminal for s in n)
               for n in counts.values()):
            break
        time.sleep(2)
    assert all(n and set(n) <= set(terminal) for n in counts.values()), counts
    for city, n in counts.items():
        assert n.get("processed", 0) >= 20, (city, n)
        assert n.get("dead_lettered", 0) == 0, (city, n)

    # The consumer group: three members, each owning one partition of the scenes topic.
    admin = KafkaAdminClient(bootstrap_servers=cluster_env["bootstrap"],
                             client_id="cluster-test")
    try:
        owned = _member_partitions(admin, f"{cluster_env['ns']}-inference",
                                   f"{cluster_env['ns']}.scenes.v1")
    finally:
        admin.close()
    assert len(owned) == WORKERS, owned
    assert sorted(p for parts in owned.values() for p in parts) == list(range(PARTITIONS))
    assert all(len(parts) == 1 for parts in owned.values()), owned

    # Alerts in PostgreSQL, served by the API process.
    deadline = time.monotonic() + 120
    alerts = 0
    while time.monotonic() < deadline and not alerts:
        alerts = db.count_alerts()
        time.sleep(1)
    assert alerts > 0
    assert {a.city_id for a in db.alerts(limit=None)} <= set(cluster_env["cities"])
    answer = httpx.get(f"{cluster_env['api']}/collections/alerts/items?status=all", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["features"], answer.text[:500]
    db.dispose()

    stopped = subprocess.run(["bash", str(CLUSTER), "stop"], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120, check=False)
    assert stopped.returncode == 0, stopped.stderr
    logs = {p.name: p.read_text(errors="replace") for p in cluster_env["dir"].glob("*.log")}
    tracebacks = {name: text[max(0, text.index("Traceback") - 500):text.index("Traceback") + 3000]
                  for name, text in logs.items() if "Traceback" in text}
    assert not tracebacks, tracebacks  # the context, so that a rare one can be diagnosed
    for i in range(1, WORKERS + 1):  # every worker handled scenes and stopped gracefully
        found = re.search(r"inference worker stopped: ConsumeStats\(processed=(\d+)",
                          logs[f"inference-{i}.log"])
        assert found, logs[f"inference-{i}.log"][-2000:]
        assert int(found.group(1)) > 0, f"inference-{i} handled no scene"
    assert not list(cluster_env["dir"].glob("*.pid"))
