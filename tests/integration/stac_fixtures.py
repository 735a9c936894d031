"""Helpers for the discovery tests: the real STAC items, test cities and settings, a
hostile STAC API (a real HTTP server that fails on purpose), and reading events back."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitor.domain.events import CloudEvent, parse_event
from monitor.settings import Settings

STAC_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stac").resolve()

ES = "earth-search"
PC = "planetary-computer"
ES_FILES = ("sentinel-2-l2a", "sentinel-2-c1-l2a", "sentinel-1-grd")
PC_FILES = ("sentinel-2-l2a", "sentinel-1-rtc", "sentinel-1-grd")
_PREFIX = {ES: "earth-search", PC: "planetarycomputer"}

# Test cities whose areas cover the real items (from the items' bboxes), and one without.
TEST_CITIES: list[dict[str, Any]] = [
    {"id": "ceara", "name": "Ceara coast", "bbox": [-40.5, -5.3, -37.5, -3.5]},     # ES S2 24M*
    {"id": "antarctic", "name": "Antarctic Peninsula", "bbox": [-60.0, -60.6, -59.0, -60.3]},
    {"id": "denver", "name": "Denver", "bbox": [-106.2, 39.6, -104.8, 40.7]},       # ES 13TDE
    {"id": "kerguelen", "name": "Kerguelen sea", "bbox": [74.0, -50.1, 79.6, -44.9]},  # ES S1 HH
    {"id": "gabes", "name": "Gabes", "bbox": [8.0, 32.6, 11.3, 34.6]},              # PC S1 GRD
    {"id": "sirte", "name": "Sirte", "bbox": [13.7, 29.8, 17.7, 35.5]},             # PC S1 RTC
    {"id": "kamchatka", "name": "Kamchatka", "bbox": [166.5, 53.0, 174.3, 59.2]},   # PC S2
    {"id": "stockholm", "name": "Stockholm", "bbox": [17.90, 59.28, 18.16, 59.38]},  # nothing
]


def require_stac_dir() -> Path:
    if not STAC_DIR.is_dir():
        pytest.skip(f"real STAC responses are absent ({STAC_DIR}); these tests serve them")
    return STAC_DIR


def collection_file(provider: str, collection: str) -> Path:
    return require_stac_dir() / f"{_PREFIX[provider]}__{collection}__collection.json"


def real_items(provider: str, collection: str) -> list[dict[str, Any]]:
    path = require_stac_dir() / f"{_PREFIX[provider]}__{collection}__items.json"
    return json.loads(path.read_text())["features"]


def item_by_id(provider: str, collection: str, item_id: str) -> dict[str, Any]:
    return next(i for i in real_items(provider, collection) if i["id"] == item_id)


def servable(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items a STAC API can index (the real answers include some without a geometry)."""
    return [i for i in items if i.get("geometry")]


def provider_settings(url: str, provider: str, *, page_size: int = 100,
                      timeout_s: float = 10.0, max_retries: int = 3) -> dict[str, Any]:
    from monitor.settings import load_settings

    base = load_settings().providers[provider].model_dump()
    base.update(url=url, page_size=page_size, timeout_s=timeout_s, max_retries=max_retries)
    return base


def make_settings(*, providers: dict[str, dict[str, Any]], sources: list[dict[str, Any]],
                  cities: Sequence[dict[str, Any]] = TEST_CITIES, database_url: str,
                  scenes_topic: str = "urban.scenes.v1", bus_kind: str = "embedded",
                  bootstrap: str = "127.0.0.1:19092") -> Settings:
    return Settings(providers=providers, sources=sources, cities=list(cities),
                    database={"url": database_url},
                    bus={"kind": bus_kind, "bootstrap_servers": bootstrap,
                         "scenes_topic": scenes_topic, "partitions": 3})


def all_sources(lookback_days: float, max_cloud_cover: float = 80) -> list[dict[str, Any]]:
    return [
        {"name": "es-s2-c1", "provider": ES, "collection": "sentinel-2-c1-l2a",
         "lookback_days": lookback_days, "max_cloud_cover": max_cloud_cover},
        {"name": "es-s2", "provider": ES, "collection": "sentinel-2-l2a",
         "lookback_days": lookback_days, "max_cloud_cover": max_cloud_cover},
        {"name": "es-s1", "provider": ES, "collection": "sentinel-1-grd",
         "lookback_days": lookback_days},
        {"name": "pc-s2", "provider": PC, "collection": "sentinel-2-l2a",
         "lookback_days": lookback_days, "max_cloud_cover": max_cloud_cover},
        {"name": "pc-rtc", "provider": PC, "collection": "sentinel-1-rtc",
         "lookback_days": lookback_days},
        {"name": "pc-grd", "provider": PC, "collection": "sentinel-1-grd",
         "lookback_days": lookback_days},
    ]


# -- reading events back -------------------------------------------------------------------

def embedded_events(bus: Any, topic: str) -> list[CloudEvent]:
    events = [parse_event(m.value) for m in bus.records(topic)]
    for m in bus.records(topic):
        assert m.key == parse_event(m.value).subject, "key must be the city id"
    return events


def kafka_events(bootstrap: str, topic: str, expected: int, timeout_s: float = 30.0,
                 settle_s: float = 2.0) -> list[CloudEvent]:
    """Everything on ``topic`` (waits for ``expected`` records, then a little longer so
    that an unexpected extra record would be seen too)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None)
    events: list[CloudEvent] = []
    deadline = time.monotonic() + timeout_s
    quiet_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = parse_event(record.value)
                    assert record.key.decode() == event.subject, "key must be the city id"
                    events.append(event)
            if len(events) >= expected:
                quiet_until = quiet_until or time.monotonic() + settle_s
                if time.monotonic() >= quiet_until:
                    break
    finally:
        consumer.close()
    return events


# -- a hostile STAC API --------------------------------------------------------------------

@dataclass
class HostileStacServer:
    """A real HTTP server that speaks just enough STAC API for pystac-client, and answers
    ``/search`` according to a script: each search request takes the next action from
    ``script`` (then ``default``). Actions: ``ok``, ``500``, ``503``, ``429`` (with
    ``Retry-After``), ``hang`` (answers after ``hang_s``), ``garbage`` (HTML with 200),
    ``not-a-collection`` (a JSON list). ``fail_if(body) -> action | None`` overrides per
    request (e.g. fail only searches that cover one city)."""

    features: list[dict[str, Any]] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    default: str = "ok"
    hang_s: float = 3.0
    retry_after_s: int = 1
    fail_if: Callable[[dict[str, Any]], str | None] | None = None
    searches: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0  # the most searches served at the same time
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _next_action(self, body: dict[str, Any]) -> str:
        with self._lock:
            forced = self.fail_if(body) if self.fail_if else None
            action = forced or (self.script.pop(0) if self.script else self.default)
            self.searches.append((time.monotonic(), action, body))
            return action

    def __enter__(self) -> HostileStacServer:
        server_ref = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

            def _send(self, status: int, payload: bytes, ctype: str = "application/json",
                      headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): that is the point of 'hang'

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                base = server_ref.url
                landing = {
                    "type": "Catalog", "id": "hostile", "description": "a hostile STAC API",
                    "stac_version": "1.0.0",
                    "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                                   "https://api.stacspec.org/v1.0.0/item-search"],
                    "links": [
                        {"rel": "self", "href": base + "/"},
                        {"rel": "root", "href": base + "/"},
                        {"rel": "search", "href": base + "/search", "method": "POST",
                         "type": "application/geo+json"},
                        {"rel": "search", "href": base + "/search", "method": "GET",
                         "type": "application/geo+json"},
                    ],
                }
                self._send(200, json.dumps(landing).encode())

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                action = server_ref._next_action(body)
                with server_ref._lock:
                    server_ref.in_flight += 1
                    server_ref.max_in_flight = max(server_ref.max_in_flight,
                                                   server_ref.in_flight)
                try:
                    self._answer(action)
                finally:
                    with server_ref._lock:
                        server_ref.in_flight -= 1

            def _answer(self, action: str) -> None:
                if action == "hang":
                    time.sleep(server_ref.hang_s)
                    action = "ok"
                if action in ("500", "503"):
                    self._send(int(action), b'{"code":"ServerError","description":"boom"}')
                elif action == "429":
                    self._send(429, b'{"code":"TooManyRequests"}',
                               headers={"Retry-After": str(server_ref.retry_after_s)})
                elif action == "garbage":
                    self._send(200, b"<html><body>Service temporarily unavailable</body></html>",
                               ctype="text/html")
                elif action == "not-a-collection":
                    self._send(200, b"[1, 2, 3]")
                else:
                    page = {"type": "FeatureCollection", "features": server_ref.features,
                            "links": []}
                    self._send(200, json.dumps(page).encode(), ctype="application/geo+json")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def actions(self) -> list[str]:
        with self._lock:
            return [a for _, a, _ in self.searches]


def renamed(item: dict[str, Any], suffix: str) -> dict[str, Any]:
    out = copy.deepcopy(item)
    out["id"] = f"{item['id']}-{suffix}"
    return out


def body_covers(body: dict[str, Any], lon: float, lat: float) -> bool:
    """Whether a search body's ``intersects`` covers a point (to fail one city only)."""
    from shapely.geometry import Point, shape

    area = body.get("intersects")
    return bool(area) and shape(area).intersects(Point(lon, lat))
