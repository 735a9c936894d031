"""Security checks (issue 9), against the real API served by uvicorn over SQLite and
PostgreSQL: API keys on every write, signed webhooks, bounded request bodies, no secrets
in logs, SQL only through bound parameters (behaviour with injection payloads, and a
static check of the source)."""

from __future__ import annotations

import ast
import base64
import inspect
import json
import logging
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute

from monitor.adapters.database import Database
from monitor.adapters.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSender,
    sign_payload,
    verify_signature,
)
from monitor.domain.alerts import AlertRules
from monitor.domain.records import Subscription
from monitor.errors import DatabaseError
from monitor.pipeline.alerting import apply_change_event
from monitor.pipeline.outbox import dispatch_due
from monitor.settings import AlertingSettings, ApiSettings, CitySettings, Settings
from services import api as api_module
from services.api import create_app
from tests.integration.alerting_fixtures import (
    LOOPBACK_ALLOW,
    make_change,
    make_database,
    rect_region,
    serve,
    start_receiver,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sec-key-7f3a9c0e5b1d2468ace0"
WEBHOOK_SECRET = "whsec-0123456789abcdef-do-not-log"
DB_PASSWORD = "Pw-n0t-in-logs-9931"
INJECTIONS = ["x' OR '1'='1", "x\" OR \"1\"=\"1", "1; DROP TABLE alert; --",
              "' UNION SELECT id, secret FROM subscription --", "stockholm' --",
              "%' OR 1=1 --"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from make_database(request, tmp_path)


def settings_with(**api: Any) -> Settings:
    cities = [CitySettings(id="stockholm", name="Stockholm", country="SE",
                           bbox=(17.90, 59.28, 18.16, 59.38))]
    return Settings(cities=cities, api=ApiSettings(**{"api_keys": [API_KEY], **api}),
                    alerting=AlertingSettings(webhook_allow_private=LOOPBACK_ALLOW))


def seed_alerts(db: Database, n: int = 3) -> list[str]:
    ids = []
    for i in range(n):
        region = rect_region(f"r{i}", i * 300, 0, 50, 40, first=date(2024, 1 + i, 10))
        (event,) = apply_change_event(db, make_change("stockholm", f"scene{i}", [region]).data,
                                      rules=AlertRules(), alerts_topic=None)
        ids.append(event.data.alert_id)
    return ids


def write_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route that changes something or shows a delivery log."""
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        if (route.openapi_extra or {}).get("x-read-only"):
            continue  # a query sent as a POST body (STAC item search): reads only
        for method in sorted(route.methods or ()):
            if method in ("POST", "PUT", "PATCH", "DELETE"):
                out.append((method, route.path))
    return out


# -- API keys ----------------------------------------------------------------------------
def test_every_write_endpoint_needs_a_valid_api_key(db: Database) -> None:
    app = create_app(settings_with(), db)
    writes = write_routes(app)
    assert ("POST", "/subscriptions") in writes and ("DELETE", "/subscriptions/{sub_id}") in writes
    body = {"name": "twin", "url": "http://127.0.0.1:9/hook"}
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        for method, path in writes:
            url = path.replace("{sub_id}", "nope")
            for headers in ({}, {"X-API-Key": "wrong-key"}, {"X-API-Key": API_KEY[:-1]},
                            {"X-API-Key": API_KEY + "x"}, {"X-API-Key": ""}):
                r = client.request(method, url, json=body, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["code"] == "Unauthorized"
        # The delivery log is private as well.
        assert client.get("/subscriptions/nope/deliveries").status_code == 401
        assert db.subscriptions() == []  # nothing was written by the refused requests
        created = client.post("/subscriptions", json=body, headers={"X-API-Key": API_KEY})
        assert created.status_code == 201
        sub_id = created.json()["id"]
        assert client.delete(f"/subscriptions/{sub_id}").status_code == 401
        assert db.subscription(sub_id).active  # type: ignore[union-attr]
        assert client.delete(f"/subscriptions/{sub_id}",
                             headers={"X-API-Key": API_KEY}).status_code == 204
    # No key configured: writes are switched off (403), whatever the request sends.
    closed = create_app(settings_with(api_keys=[]), db)
    with serve(closed) as base, httpx.Client(base_url=base, timeout=10) as client:
        for headers in ({}, {"X-API-Key": API_KEY}, {"X-API-Key": ""}):
            r = client.post("/subscriptions", json=body, headers=headers)
            assert r.status_code == 403, r.text
    assert len(db.subscriptions(active_only=False)) == 1


def test_api_key_comparison_is_constant_time() -> None:
    """The key check compares with hmac.compare_digest against every configured key and
    never with ==, ``in`` or a dict lookup (which leak the key through timing)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(api_module.require_key)))
    (check,) = [n for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef) and n.name == "require_key"]
    calls = {ast.unparse(n.func) for n in ast.walk(check) if isinstance(n, ast.Call)}
    assert "hmac.compare_digest" in calls
    compares = [n for n in ast.walk(check) if isinstance(n, ast.Compare)]
    for node in compares:
        text = ast.unparse(node)
        assert "given" not in text, f"the key is compared with a plain operator: {text}"
    # Every configured key is compared (no early exit that reveals which key matched).
    loops = [n for n in ast.walk(check) if isinstance(n, ast.For)]
    assert loops and not any(isinstance(n, ast.Break | ast.Return)
                             for loop in loops for n in ast.walk(loop))


# -- webhook signatures --------------------------------------------------------------------
def test_webhook_signatures_verify_and_tampering_fails(db: Database) -> None:
    receiver = start_receiver(WEBHOOK_SECRET)
    try:
        db.add_subscription(Subscription(id=uuid.uuid4().hex, name="twin", url=receiver.url,
                                         secret=WEBHOOK_SECRET))
        seed_alerts(db, 2)
        now = datetime.now(UTC)
        with WebhookSender(timeout_s=5, allow=LOOPBACK_ALLOW) as sender:
            stats = dispatch_due(db, now, sender=sender)
        assert stats.delivered == 2 and len(receiver.requests) == 2
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]
    for request in receiver.requests:
        headers: dict[str, str] = request["headers"]  # type: ignore[assignment]
        body: bytes = request["body"]  # type: ignore[assignment]
        ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
        assert int(ts) == int(now.timestamp())
        assert sig.startswith("sha256=") and len(sig) == len("sha256=") + 64
        assert verify_signature(WEBHOOK_SECRET, body, ts, sig, now=time.time())
        # Tampered body: one byte changed, a field changed, whitespace added.
        flipped = bytes([body[0] ^ 1]) + body[1:]
        event = json.loads(body)
        event["data"]["status"] = "confirmed" if event["data"]["status"] != "confirmed" else "first"
        for bad_body in (flipped, json.dumps(event).encode(), body + b" ", body[:-1]):
            assert not verify_signature(WEBHOOK_SECRET, bad_body, ts, sig, now=time.time())
        # Tampered timestamp with the old signature; a replay outside the window; a
        # re-signed old timestamp; a wrong secret; missing or malformed headers.
        assert not verify_signature(WEBHOOK_SECRET, body, str(int(ts) + 1), sig, now=time.time())
        assert not verify_signature(WEBHOOK_SECRET, body, ts, sig, now=float(ts) + 301)
        old = int(ts) - 3600
        assert not verify_signature(WEBHOOK_SECRET, body, str(old),
                                    sign_payload(WEBHOOK_SECRET, old, body), now=time.time())
        assert not verify_signature("another-secret-0123456789", body, ts, sig, now=time.time())
        assert not verify_signature(WEBHOOK_SECRET, body, None, sig, now=time.time())
        assert not verify_signature(WEBHOOK_SECRET, body, ts, None, now=time.time())
        assert not verify_signature(WEBHOOK_SECRET, body, "12abc", sig, now=time.time())
        assert not verify_signature(WEBHOOK_SECRET, body, ts, sig.upper(), now=time.time())
        # The secret itself never travels with the request.
        assert WEBHOOK_SECRET.encode() not in body
        assert all(WEBHOOK_SECRET not in v for v in headers.values())


# -- bounded request sizes -------------------------------------------------------------------
def test_request_bodies_above_the_limit_get_413_and_write_nothing(db: Database) -> None:
    app = create_app(settings_with(max_request_bytes=2048), db)
    big = {"name": "x" * 150, "url": "http://127.0.0.1:9/hook", "cities": ["stockholm"] * 400}
    raw = json.dumps(big).encode()
    assert len(raw) > 2048
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        r = client.post("/subscriptions", content=raw, headers=headers)
        assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
            for i in range(0, len(raw), 256):
                yield raw[i:i + 256]

        r = client.post("/subscriptions", content=chunks(), headers=headers)
        assert r.status_code == 413
        # A plain large body (well above the limit).
        r = client.post("/subscriptions", content=b"x" * 100_000, headers=headers)
        assert r.status_code == 413
        # Without a key, a big body is refused too (413 or 401; never processed).
        assert client.post("/subscriptions", content=raw).status_code in (401, 413)
        assert db.subscriptions(active_only=False) == []
        ok = client.post("/subscriptions", json={"name": "twin", "url": "http://127.0.0.1:9/h"},
                         headers={"X-API-Key": API_KEY})
        assert ok.status_code == 201
    assert len(db.subscriptions()) == 1


# -- no secrets in logs ----------------------------------------------------------------------
def all_logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            lines.append(repr(record.exc_info[1]))
        if record.exc_text:
            lines.append(record.exc_text)
    return "\n".join(lines)


def test_no_secret_in_logs_of_subscriptions_and_webhook_deliveries(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = start_receiver(WEBHOOK_SECRET)
    hook_password = "hookPW-77c1e0d2"
    host_port = receiver.url.removeprefix("http://")
    app = create_app(settings_with(), db)
    try:
        with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
            for url in (receiver.url, f"http://hookuser:{hook_password}@{host_port}"):
                created = client.post("/subscriptions", headers={"X-API-Key": API_KEY},
                                      json={"name": "twin", "url": url,
                                            "statuses": ["first"],  # the seeded alerts'
                                            "secret": WEBHOOK_SECRET})
                assert created.status_code == 201
                assert created.json()["secret"] == WEBHOOK_SECRET  # shown once, to the caller
                listed = client.get("/subscriptions", headers={"X-API-Key": API_KEY}).text
                assert WEBHOOK_SECRET not in listed
        seed_alerts(db, 2)
        receiver.failing = True  # failures are logged with the target: still no secret
        now = datetime.now(UTC)
        with WebhookSender(timeout_s=5, allow=LOOPBACK_ALLOW) as sender:
            failed = dispatch_due(db, now, sender=sender)
            receiver.failing = False
            done = dispatch_due(db, now + timedelta(minutes=10), sender=sender,
                                settings=AlertingSettings())
        assert failed.retried == 4 and done.delivered == 4
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]
    # The credentials still reach the subscriber, as a basic-auth header (not in the URL).
    token = base64.b64encode(f"hookuser:{hook_password}".encode()).decode()
    auth = [r["headers"].get("Authorization") for r in receiver.requests]  # type: ignore[union-attr]
    assert auth.count(f"Basic {token}") == 4 and auth.count(None) == 4
    logged = all_logged(caplog)
    assert "webhook delivery" in logged  # the failures were logged...
    for secret in (WEBHOOK_SECRET, API_KEY, hook_password):
        assert secret not in logged  # ...without the secrets
    for row in db.deliveries(limit=None):
        assert WEBHOOK_SECRET not in (row.last_error or "") and WEBHOOK_SECRET not in row.payload


def test_no_database_password_in_errors_or_logs(postgres_url: str, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from monitor.pipeline.runtime import build_runtime

    caplog.set_level(logging.DEBUG)
    scheme, rest = postgres_url.split("://", 1)
    user_part, host_part = rest.rsplit("@", 1)
    user = user_part.split(":", 1)[0]
    # Failing: nothing listens on port 1.
    unreachable = f"{scheme}://{user}:{DB_PASSWORD}@127.0.0.1:1/urban_monitor"
    database = Database(unreachable)
    with pytest.raises(DatabaseError) as failure:
        database.init_schema()
    database.dispose()
    assert DB_PASSWORD not in str(failure.value)
    assert "***" in str(failure.value)  # the URL is named, redacted
    # Connecting: the test server trusts local connections, so a password in the URL is
    # accepted (and ignored); every log line of a runtime start names the URL redacted.
    with_password = f"{scheme}://{user}:{DB_PASSWORD}@{host_part}"
    settings = Settings(cities=[CitySettings(id="stockholm", name="Stockholm",
                                             bbox=(17.90, 59.28, 18.16, 59.38))],
                        database={"url": with_password}, state={"url": str(tmp_path / "s")})
    from monitor.adapters.bus_embedded import EmbeddedBus

    runtime = build_runtime(settings, bus=EmbeddedBus())
    try:
        assert runtime.db.schema_version() >= 1
        assert DB_PASSWORD not in runtime.db.safe_url
        assert DB_PASSWORD not in repr(runtime.db.engine.url)
    finally:
        runtime.close()
    logged = all_logged(caplog)
    assert "runtime ready" in logged
    assert DB_PASSWORD not in logged


# -- SQL injection ----------------------------------------------------------------------------
def table_counts(db: Database) -> tuple[int, int, int]:
    return (db.count_alerts(), len(db.subscriptions(active_only=False)), len(db.cities()))


def test_injection_payloads_find_nothing_and_change_nothing(db: Database) -> None:
    alert_ids = seed_alerts(db, 3)
    db.add_subscription(Subscription(id="sub1", name="twin", url="http://127.0.0.1:9/h",
                                     secret=WEBHOOK_SECRET))
    before = table_counts(db)
    app = create_app(settings_with(), db)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        for payload in INJECTIONS:
            q = quote(payload, safe="")
            r = client.get(f"/collections/alerts/items/{q}")
            assert r.status_code == 404, (payload, r.text)
            r = client.get(f"/collections/cities/items/{q}")
            assert r.status_code == 404, (payload, r.text)
            r = client.get("/collections/alerts/items", params={"city": payload})
            assert r.status_code in (200, 400), (payload, r.text)
            if r.status_code == 200:
                assert r.json()["features"] == [], payload
            r = client.get("/collections/alerts/items", params={"status": payload})
            assert r.status_code == 400 or r.json()["features"] == [], payload
            r = client.get("/collections/alerts/items", params={"bbox": f"1,2,3,{payload}"})
            assert r.status_code == 400, (payload, r.text)
            r = client.get("/collections/alerts/items", params={"datetime": payload})
            assert r.status_code == 400, (payload, r.text)
            assert client.get(f"/cities/{q}/stats").status_code == 404
            assert client.get(f"/subscriptions/{q}",
                              headers={"X-API-Key": API_KEY}).status_code == 404
            r = client.delete(f"/subscriptions/{q}", headers={"X-API-Key": API_KEY})
            assert r.status_code == 404, (payload, r.text)
            r = client.get(f"/subscriptions/{q}/deliveries", headers={"X-API-Key": API_KEY})
            assert r.status_code == 404, (payload, r.text)
        # The real rows are still all there and still found.
        everything = client.get("/collections/alerts/items",
                                params={"limit": 50, "status": "all"}).json()
        assert sorted(f["id"] for f in everything["features"]) == sorted(alert_ids)
    # The repository methods directly: nothing matches, nothing changes.
    for payload in INJECTIONS:
        assert db.get_alert(payload) is None
        assert db.alerts(city_id=payload) == []
        assert db.count_alerts(city_id=payload) == 0
        assert db.alerts(statuses=[payload]) == []
        assert db.scenes(city_id=payload) == []
        assert db.city(payload) is None
        assert db.subscription(payload) is None
        assert db.deactivate_subscription(payload) is False
        assert db.known_item_ids(payload, payload, [payload]) == set()
        assert db.deliveries(subscription_id=payload) == []
    # A payload stored as data comes back verbatim (it is a value, never SQL).
    db.upsert_city("evil", INJECTIONS[0], {"type": "Point", "coordinates": [0, 0]}, {})
    assert db.city("evil").name == INJECTIONS[0]  # type: ignore[union-attr]
    assert table_counts(db) == (before[0], before[1], before[2] + 1)
    assert db.subscription("sub1").active  # type: ignore[union-attr]


# -- static check: no SQL built from formatted strings ------------------------------------------
SQL_CALLS = {"text", "execute", "exec", "exec_driver_sql", "executescript", "executemany"}
# DDL cannot take bound parameters: these identifiers are constants (or checked) in code.
ALLOWED = {
    ("tools/reliability/load.py", """f'DROP DATABASE IF EXISTS "{LOAD_DATABASE}" WITH (FORCE)'"""),
    ("tools/reliability/load.py", """f'CREATE DATABASE "{LOAD_DATABASE}"'"""),
    # fault suite: the name is made of [a-z0-9_] (re.sub) right before
    ("tools/reliability/infrastructure.py", "f'CREATE DATABASE {name}'"),
    # fault suite: the name is the last segment of a URL that fresh_database made
    ("tools/reliability/infrastructure.py", "f'DROP DATABASE IF EXISTS {name} WITH (FORCE)'"),
    # alerting profile: the name is "profile_" + 8 hex digits of a uuid4, made right before
    ("tools/reliability/profile_alerting.py", """f'CREATE DATABASE "{name}"'"""),
    ("tools/reliability/profile_alerting.py", """f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'"""),
}


def formatted(node: ast.AST) -> bool:
    """An f-string with placeholders, a str.format call, ``%`` or ``+`` on strings."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return any(isinstance(side, ast.Constant | ast.JoinedStr) and
                   isinstance(getattr(side, "value", ""), str)
                   for side in (node.left, node.right)) or formatted(node.left) or \
            formatted(node.right)
    return False


def sql_built_from_strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for scope in ast.walk(tree):
        if not isinstance(scope, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        # Names assigned from formatted strings in this scope (one level of indirection).
        tainted = {t.id for n in ast.walk(scope) if isinstance(n, ast.Assign)
                   and formatted(n.value) for t in n.targets if isinstance(t, ast.Name)}
        for node in ast.walk(scope):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else (
                node.func.id if isinstance(node.func, ast.Name) else "")
            if name not in SQL_CALLS:
                continue
            arg = node.args[0]
            if formatted(arg) or (isinstance(arg, ast.Name) and arg.id in tainted):
                found.append((node.lineno, ast.unparse(arg)))
    return sorted(set(found))


def test_no_sql_is_built_from_formatted_strings() -> None:
    files = sorted(p for folder in ("monitor", "services", "tools")
                   for p in (REPO_ROOT / folder).rglob("*.py"))
    assert len(files) > 30
    offenders = []
    for path in files:
        rel = path.relative_to(REPO_ROOT).as_posix()
        for line, expression in sql_built_from_strings(path):
            if (rel, expression) not in ALLOWED:
                offenders.append(f"{rel}:{line}: {expression}")
    assert not offenders, ("SQL built from formatted strings (use bound parameters; DDL "
                           "identifiers go into the allow-list with a reason):\n"
                           + "\n".join(offenders))


def test_the_static_check_catches_what_it_should(tmp_path: Path) -> None:
    sample = tmp_path / "bad.py"
    sample.write_text(
        "from sqlalchemy import text\n"
        "def a(s, x):\n    s.execute(text(f\"SELECT * FROM alert WHERE id = '{x}'\"))\n"
        "def b(s, x):\n    q = \"SELECT * FROM alert WHERE id = '%s'\" % x\n    s.execute(q)\n"
        "def c(s, x):\n    s.exec_driver_sql(\"DELETE FROM alert WHERE id = '{}'\".format(x))\n"
        "def d(s, x):\n    s.execute(text(\"SELECT 1 WHERE id = '\" + x + \"'\"))\n"
        "def ok(s, x):\n    s.execute(text('SELECT * FROM alert WHERE id = :id'), {'id': x})\n")
    lines = [line for line, _ in sql_built_from_strings(sample)]
    assert lines == [3, 6, 8, 10]
