"""Shared pieces of the alerting, webhook and API tests: a database on SQLite or
PostgreSQL, ChangeEvents v2 with real site polygons, and a real local webhook receiver."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import box, mapping
from sqlalchemy import create_engine, text

from monitor.adapters.database import Database
from monitor.adapters.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_payload,
)
from monitor.domain.events import ChangeData, ChangeSite, CloudEvent, change_event

# A spot in Stockholm (UTM 33N): regions are rectangles given in metres from here.
UTM_EPSG = 32633
X0, Y0 = 674_000.0, 6_580_000.0
_TO_LONLAT = Transformer.from_crs(UTM_EPSG, 4326, always_xy=True).transform


def make_database(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    """A fresh, initialised database: SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'alerts.db'}")
        database.init_schema()
        yield database
        database.dispose()
        return
    admin_url: str = request.getfixturevalue("postgres_url")
    name = f"test_alerts_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    database = Database(admin_url.rsplit("/", 1)[0] + "/" + name)
    database.init_schema()
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def rect_region(rid: str, x: float, y: float, w: float, h: float, *, status: str = "first",
                first: date = date(2024, 3, 1), confirmed: date | None = None,
                change: date | None = date(2024, 2, 15),
                confidence: float = 0.7, closed: date | None = None) -> ChangeSite:
    """A site report (ChangeEvent v2) of site ``rid``: a w x h m rectangle at (x, y) m."""
    geom = shapely.transform(box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + h), _TO_LONLAT,
                             interleaved=False)
    gone = status in ("retracted", "withdrawn")
    return ChangeSite(site_id=rid, geometry=None if gone else dict(mapping(geom)),
                      bbox=None if gone else list(geom.bounds), status=status,  # type: ignore[arg-type]
                      n_pixels=0 if gone else max(1, int(round(w * h / 100))),
                      area_m2=0.0 if gone else w * h, first_detected=first,
                      confirmed=confirmed, change_date=change, confidence=confidence,
                      closed=closed or (first if gone else None))


def make_change(city: str, scene: str, sites: list[ChangeSite],
                acquired: datetime = datetime(2024, 3, 1, 10, tzinfo=UTC),
                model_version: str = "test-model-1") -> CloudEvent:
    data = ChangeData(city_id=city, scene_event_id=f"scene-{scene}", scene_ids=[scene],
                      modality="s2", acquired=acquired, model_version=model_version,
                      state_version=1, valid_fraction=0.9,
                      pixels={"first": sum(r.n_pixels for r in sites)}, sites=sites)
    return change_event(data)


# The receivers below listen on loopback, which the webhook SSRF guard refuses unless
# allow-listed: tests pass this as alerting.webhook_allow_private / WebhookSender(allow=).
LOOPBACK_ALLOW = ["127.0.0.1/32", "::1"]


@dataclass
class WebhookReceiver:
    """A real HTTP server that answers ``fail_status`` while ``failing``; records every
    request and the event ids it accepted (answered 2xx)."""

    secret: str
    failing: bool = False
    fail_status: int = 503
    requests: list[dict[str, object]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def signatures_valid(self) -> bool:
        """Every request carried a valid HMAC over its timestamp and exact body."""
        for req in self.requests:
            headers = req["headers"]
            assert isinstance(headers, dict)
            body = req["body"]
            assert isinstance(body, bytes)
            expected = sign_payload(self.secret, int(headers[TIMESTAMP_HEADER]), body)
            if headers.get(SIGNATURE_HEADER) != expected:
                return False
        return True


def start_receiver(secret: str) -> WebhookReceiver:
    receiver = WebhookReceiver(secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.requests.append({"headers": headers, "body": body})
                status = receiver.fail_status if receiver.failing else 200
                if status < 300:
                    event = json.loads(body)
                    assert event["id"] == headers[EVENT_ID_HEADER]
                    receiver.accepted.append(event["id"])
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            return None

    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver


@contextlib.contextmanager
def serve(app: object) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free local port in a thread; yields its base URL."""
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",  # type: ignore[arg-type]
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
