"""Security and operations (issue 17): hostile parameters answer 4xx, a damaged state
falls back to an intact version (or 503 without a server path), SSE frames are built off
the event loop and bounded, the server bounds connections and slow requests, and a taken
port fails ``serve api`` at once. Real uvicorn on loopback, real state files, real
subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from monitor.adapters.database import Database
from monitor.adapters.state_store import StateStore
from monitor.domain.alerts import AlertRules
from monitor.domain.grid import CityGrid
from monitor.domain.state import CityState, Observation, StateParams
from monitor.pipeline.alerting import apply_change_event
from monitor.settings import ApiSettings, CitySettings, Settings
from services.api import create_app
from services.api import stream as stream_module
from services.api.server import bind_socket, make_server
from tests.integration.alerting_fixtures import make_change, rect_region, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "ops-key-5b1d2468ace07f3a9c0e"
H, W = 6, 7
GRID = CityGrid(epsg=32633, origin_x=674000.0, origin_y=6580000.0, width=W, height=H)


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'ops.db'}")
    database.init_schema()
    yield database
    database.dispose()


def settings(**api: Any) -> Settings:
    cities = [CitySettings(id="stockholm", name="Stockholm", country="SE",
                           bbox=(17.90, 59.28, 18.16, 59.38))]
    return Settings(cities=cities, api=ApiSettings(**{"api_keys": [API_KEY],
                                                      "sse_poll_s": 0.05, **api}))


def seed(db: Database, n: int) -> None:
    regions = [rect_region(f"h{i}", (i % 20) * 80, (i // 20) * 80, 40, 40,
                           first=date(2024, 1, 1) + timedelta(days=i % 300)) for i in range(n)]
    apply_change_event(db, make_change("stockholm", "hostile", regions).data,
                       rules=AlertRules(), alerts_topic=None)


# -- hostile parameters ----------------------------------------------------------------------
HOSTILE = [
    ("/collections/alerts/items?offset=9223372036854775808", "offset"),
    ("/collections/cities/items?offset=9223372036854775808", "offset"),
    ("/collections/alerts/items?offset=-1", "offset"),
    ("/collections/alerts/items?limit=99999999999999999999999", None),  # clamped: 200
    ("/collections/alerts/items?datetime=9999-12-31T23:59:59-23:59", "out of range"),
    ("/collections/alerts/items?datetime=0001-01-01T00:00:00%2B23:59", "out of range"),
    ("/collections/alerts/items?datetime=0001-01-01T00:00:00%2B23:59/..", "out of range"),
    ("/collections/alerts/items?datetime=2024-13-01", "datetime"),
    ("/collections/alerts/items?bbox=1e999,0,1,1", "bbox"),
    ("/alerts/stream?since=0001-01-01T00:00:00%2B23:59", "out of range"),
    ("/alerts/stream?since=9999-12-31T23:59:59-23:59", "out of range"),
    ("/alerts/stream?since=yesterday", "since"),
    ("/subscriptions/x/deliveries?offset=9223372036854775808", "offset"),
    ("/subscriptions?offset=99999999999999999999", "offset"),
]


def test_hostile_parameters_get_4xx_with_a_clear_message(lite: Database) -> None:
    seed(lite, 3)
    with serve(create_app(settings(), lite)) as base, httpx.Client(
            base_url=base, timeout=10, headers={"X-API-Key": API_KEY}) as client:
        for path, words in HOSTILE:
            r = client.get(path)
            if words is None:
                assert r.status_code == 200, (path, r.text)
                continue
            assert r.status_code == 400, (path, r.status_code, r.text)
            body = r.json()
            assert body["code"] == "InvalidParameterValue" and words in body["description"], path
        # A stream from the year 1 (UTC) works: everything since then, no overflow.
        with client.stream("GET", "/alerts/stream?since=0001-01-01T00:00:00Z") as r:
            assert r.status_code == 200
            frames = 0
            for line in r.iter_lines():
                frames += line.startswith("event: alert")
                if frames == 3:
                    break
        assert frames == 3


def test_a_bbox_page_parses_only_its_alerts(lite: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from monitor.adapters.sql import alerts as sql_alerts

    seed(lite, 120)
    parsed = 0
    real = sql_alerts._alert

    def counting(row: Any) -> Any:
        nonlocal parsed
        parsed += 1
        return real(row)

    monkeypatch.setattr(sql_alerts, "_alert", counting)
    with serve(create_app(settings(), lite)) as base:
        r = httpx.get(f"{base}/collections/alerts/items",
                      params={"bbox": "17.0,59.0,19.0,60.0", "limit": 10, "status": "all"},
                      timeout=20)
    assert r.status_code == 200 and r.json()["numberMatched"] == 120
    assert r.json()["numberReturned"] == 10
    assert parsed == 10  # not 120


# -- damaged state versions ----------------------------------------------------------------------
def scene(i: int) -> Observation:
    values = np.full((6, H, W), 0.1 + 0.01 * i, dtype=np.float32)
    return Observation(f"scene-{i}", "s2", None, date(2022, 5, 1) + timedelta(days=5 * i),
                       values, np.ones((H, W), bool), np.full((H, W), 0.95, np.float32))


MAP_ROUTES = ("/cities/stockholm/maps/change-date.tif", "/cities/stockholm/maps/change-date.png")


def test_a_damaged_state_falls_back_to_the_newest_intact_version(lite: Database,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "secret-server-path" / "state"
    store = StateStore(str(root), keep=3)
    state = CityState.create(GRID, StateParams(s2_reference_count=1, baseline_days=0))
    for i in range(3):
        state.apply(scene(i))
        store.save("stockholm", state)
    (v1, v2, v3) = store.versions("stockholm")
    folder = root / "stockholm"
    latest = folder / f"v{v3:08d}.npz"
    with serve(create_app(settings(), lite, store)) as base, httpx.Client(
            base_url=base, timeout=20) as client:
        assert all(client.get(p).status_code == 200 for p in MAP_ROUTES)
        latest.write_bytes(latest.read_bytes()[:200])          # truncated latest version
        for path in MAP_ROUTES:
            assert client.get(path).status_code == 200, path   # served from v2
        (folder / "LATEST.json").write_text("{not json")       # a bad pointer too
        for path in MAP_ROUTES:
            assert client.get(path).status_code == 200, path
        for v in (v1, v2):                                     # nothing intact is left
            (folder / f"v{v:08d}.npz").write_bytes(b"PK\x03\x04garbage")
        for path in MAP_ROUTES:
            r = client.get(path)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["code"] == "ServiceUnavailable"
            assert "secret-server-path" not in r.text and str(tmp_path) not in r.text


# -- SSE -------------------------------------------------------------------------------------------
def test_sse_frames_are_built_off_the_event_loop_and_streams_are_bounded(
        lite: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(lite, 60)
    on_loop: list[bool] = []
    real = stream_module.record_to_event

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(stream_module, "record_to_event", recording)
    app = create_app(settings(max_sse_clients=2), lite)
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        with client.stream("GET", "/alerts/stream?since=2000-01-01T00:00:00Z") as one, \
                client.stream("GET", "/alerts/stream?since=2000-01-01T00:00:00Z") as two:
            assert one.status_code == two.status_code == 200
            third = httpx.get(f"{base}/alerts/stream", timeout=10)
            assert third.status_code == 503 and "max_sse_clients" in third.text
            started = time.monotonic()
            assert httpx.get(f"{base}/health", timeout=10).status_code == 200
            assert time.monotonic() - started < 2
            got = 0
            for line in one.iter_lines():  # (leaving this loop closes the stream)
                got += line.startswith("event: alert")
                if got == 60:
                    break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the slots are given back on disconnect
            with client.stream("GET", "/alerts/stream") as again:
                if again.status_code == 200:
                    break
            time.sleep(0.2)
        assert again.status_code == 200
    assert on_loop and not any(on_loop)  # every frame was serialised in a worker thread


# -- the server's own bounds ----------------------------------------------------------------------
@contextlib.contextmanager
def bounded_server(app: Any, s: Settings) -> Iterator[int]:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = make_server(app, s)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_the_server_bounds_connections_and_slow_requests(lite: Database) -> None:
    s = settings(max_connections=3, timeout_request_s=1.0, timeout_keep_alive_s=1.0)
    with bounded_server(create_app(s, lite), s) as port:
        # Slow headers: the connection is closed once the time is up.
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert slow.recv(1024) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 5
        slow.close()
        # A slow body: 408.
        body = socket.create_connection(("127.0.0.1", port), timeout=10)
        body.sendall(b"POST /subscriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                     b"X-API-Key: " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n\r\n{\"na")
        answer = body.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        body.close()
        # More open connections than allowed: the next request gets 503.
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        time.sleep(0.2)
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert r.status_code == 503
        for conn in idle:
            conn.close()
        time.sleep(0.3)
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200


# -- failing loudly --------------------------------------------------------------------------------
def serve_env(tmp_path: Path, port: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "URBAN_MONITOR_API__PORT": str(port),
            "URBAN_MONITOR_DATABASE__URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "URBAN_MONITOR_STATE__URL": str(tmp_path / "state"),
            "URBAN_MONITOR_HEALTH_DIR": str(tmp_path / "health")}


def test_serve_api_on_a_taken_port_exits_non_zero_at_once(tmp_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        for command in (["-m", "services.cli", "serve", "api"], ["-m", "services.api"]):
            started = time.monotonic()
            done = subprocess.run([sys.executable, *command], env=serve_env(tmp_path, port),
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
            took = time.monotonic() - started
            assert done.returncode == 2, (command, done.returncode, done.stderr[-500:])
            assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
            assert "already in use" in done.stderr.lower()
            assert took < 30, took  # interpreter start and imports; no hang
    finally:
        holder.close()


def test_served_roles_write_a_heartbeat_that_the_health_command_reads(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = serve_env(tmp_path, port)
    health = [sys.executable, "-m", "services.cli", "health", "api", "--max-age", "20"]
    down = subprocess.run(health, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 1 and "no heartbeat" in down.stderr
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "api"], env=env,
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        up = None
        while time.monotonic() < deadline:
            up = subprocess.run(health, env=env, cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=60)
            if up.returncode == 0:
                break
            time.sleep(0.5)
        assert up is not None and up.returncode == 0, up.stderr if up else None
        assert "alive (api)" in up.stdout
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        # A token in a query string reaches uvicorn's access log masked.
        httpx.get(f"http://127.0.0.1:{port}/health?token=TOKEN-IN-QUERY-5521&x=1", timeout=10)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-500:]
    assert "/health?token=***&x=1" in out  # uvicorn's access log (stdout)
    assert "TOKEN-IN-QUERY-5521" not in out + err
    gone = subprocess.run(health, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert gone.returncode == 1


def test_compose_publishes_a_reachable_api_pins_images_and_checks_every_worker() -> None:
    """docker compose cannot run here: the file's structure is checked instead (YAML as
    compose reads it, merge keys resolved)."""
    import yaml

    from services.cli import ROLES

    compose = yaml.safe_load((REPO_ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", (name, image)  # pinned
    api = services["api"]
    assert api["environment"]["URBAN_MONITOR_API__HOST"] == "0.0.0.0"
    assert api["environment"]["URBAN_MONITOR_DATABASE__URL"].startswith("postgresql")
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert "/health" in " ".join(api["healthcheck"]["test"])
    assert ".status == 200" in " ".join(api["healthcheck"]["test"])
    for role in ("scheduler", "inference", "alerting"):
        service = services[role]
        assert service["command"] == ["serve", role]
        assert service["healthcheck"]["test"] == ["CMD", "urban-monitor", "health", role]
        assert role in ROLES and service["restart"] == "unless-stopped"
    # The API's own settings inside the container are valid with that environment.
    env = {k: str(v) for k, v in api["environment"].items()
           if k.startswith("URBAN_MONITOR_") and "${" not in str(v)}
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "config", "check",
                           str(REPO_ROOT / "config" / "default.yaml")], cwd=REPO_ROOT,
                          env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "host: 0.0.0.0" in done.stdout and "urban:***@postgres" in done.stdout


def test_items_carry_the_default_feed_unless_asked_for_every_status(lite: Database) -> None:
    """Issue 14.6 (decided by the lead): without ``status`` the OGC items are the default
    feed (provisional + confirmed); ``status=all`` gives every status."""
    regions = [rect_region("f", 0, 0, 40, 40, status="first"),
               rect_region("p", 200, 0, 40, 40, status="provisional", confidence=0.7),
               rect_region("c", 400, 0, 40, 40, status="confirmed", confirmed=date(2024, 3, 5),
                           confidence=0.9)]
    apply_change_event(lite, make_change("stockholm", "feed", regions).data,
                       rules=AlertRules(), alerts_topic=None)
    with serve(create_app(settings(), lite)) as base, httpx.Client(base_url=base,
                                                                   timeout=10) as client:
        def statuses(**params: str) -> list[str]:
            r = client.get("/collections/alerts/items", params=params)
            assert r.status_code == 200, r.text
            return sorted(f["properties"]["status"] for f in r.json()["features"])

        assert statuses() == ["confirmed", "provisional"]
        assert statuses(status="all") == ["confirmed", "first", "provisional"]
        assert statuses(status="first") == ["first"]
        assert statuses(status="first,confirmed") == ["confirmed", "first"]
        page = client.get("/collections/alerts/items", params={"status": "all", "limit": 1})
        nxt = next(link["href"] for link in page.json()["links"] if link["rel"] == "next")
        assert "status=all" in nxt
        assert client.get("/collections/alerts/items?status=everything").status_code == 400
        doc = client.get("/openapi.json").json()
        items = doc["paths"]["/collections/{cid}/items"]["get"]
        assert "status=all" in items["description"]
        (status,) = [p for p in items["parameters"] if p["name"] == "status"]
        assert "provisional + confirmed" in status["description"]
