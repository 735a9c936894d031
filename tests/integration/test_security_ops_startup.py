"""Security and operations (issue 17): start-up is safe to run concurrently. Several real
processes create the schema and register the same cities at the same instant against one
PostgreSQL database (and one SQLite file); none may die (the load benchmark's second run
used to lose two workers and the alerting to ``UniqueViolation`` on ``city_pkey``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.adapters.database import Database

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 5

# Each process: wait for the common start instant, then do what a service does at start
# (schema, then every configured city), several times to widen the race window.
STARTER = """
import json, sys, time
from monitor.adapters.database import Database
url, start = sys.argv[1], float(sys.argv[2])
db = Database(url)
while time.time() < start:
    time.sleep(0.001)
db.init_schema()
for round in range(15):
    for i in range(4):
        db.upsert_city(f"city{i}", f"City {i} r{round}", {"type": "Point", "coordinates": [i, 0]},
                       {"epsg": 32633, "width": 10, "height": 10}, country="SE",
                       population={2020: 1000.0 * i})
print(json.dumps({"ok": True, "schema": db.schema_version()}))
db.dispose()
"""


def start_together(url: str) -> list[subprocess.CompletedProcess[str]]:
    start = time.time() + 4.0  # after every interpreter has started and imported
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, url, str(start)], env=env,
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(PROCESSES)]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def check(url: str) -> None:
    results = start_together(url)
    for result in results:
        assert result.returncode == 0, result.stderr[-1500:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["ok"]
    db = Database(url)
    try:
        cities = db.cities()
        assert [c.id for c in cities] == ["city0", "city1", "city2", "city3"]
        assert all(c.name.endswith("r14") for c in cities)  # the last round of someone
        assert db.schema_version() >= 1
    finally:
        db.dispose()


def test_concurrent_start_against_one_postgresql(postgres_url: str) -> None:
    from tools.reliability.infrastructure import drop_database, fresh_database

    url = fresh_database(postgres_url, prefix="startup")
    try:
        check(url)
    finally:
        drop_database(postgres_url, url)


def test_concurrent_start_against_one_sqlite_file(tmp_path: Path) -> None:
    check(f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.mark.parametrize("existing", [False, True])
def test_upsert_city_inserts_then_updates(tmp_path: Path, existing: bool) -> None:
    db = Database(f"sqlite:///{tmp_path / 'one.db'}")
    db.init_schema()
    if existing:
        db.upsert_city("c", "Old", {"type": "Point", "coordinates": [0, 0]}, {"w": 1})
    db.upsert_city("c", "New", {"type": "Point", "coordinates": [1, 1]}, {"w": 2},
                   country="FR", population={2020: 5.0})
    (city,) = db.cities()
    assert (city.name, city.country, city.population) == ("New", "FR", {2020: 5.0})
    db.dispose()
