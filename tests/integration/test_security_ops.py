"""Security and operations (issue 17): one test (or more) per probe of the issue's table,
against the real API served by uvicorn on loopback, real HTTP receivers, SQLite and the
real PostgreSQL (``URBAN_MONITOR_TEST_DATABASE_URL``), and real subprocesses.

Rows: webhook SSRF (creation and send), receiver bodies never stored, a malformed URL
that must not kill the dispatcher, subscriptions readable only with a key (redacted,
paged), empty/short keys, the key before the body. Further rows live in
``test_security_ops_*.py`` beside this file.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.adapters.database import Database
from monitor.adapters.webhooks import (
    DeliveryOutcome,
    TargetPolicy,
    UnsafeWebhookTargetError,
    WebhookSender,
    normalise_webhook_url,
)
from monitor.domain.alerts import AlertRules
from monitor.domain.records import Subscription
from monitor.errors import ConfigError
from monitor.pipeline.alerting import apply_change_event
from monitor.pipeline.outbox import dispatch_due
from monitor.settings import AlertingSettings, ApiSettings, CitySettings, Settings, load_settings
from services.api import create_app
from tests.integration.alerting_fixtures import (
    LOOPBACK_ALLOW,
    make_change,
    make_database,
    rect_region,
    serve,
    start_receiver,
)

API_KEY = "ops-key-5b1d2468ace07f3a9c0e"
SECRET = "whsec-ops-0123456789abcdef"
KEY = {"X-API-Key": API_KEY}

# Every target of the probe, plus the other refused classes.
REFUSED = [
    "http://127.0.0.1/hook", "http://localhost/hook", "http://LOCALHOST./hook",
    "http://foo.localhost/hook", "http://[::1]/hook", "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook", "http://0x7f000001/hook", "http://2130706433/hook",
    "http://0177.0.0.1/hook", "http://127.1/hook", "http://10.0.0.1/hook",
    "http://192.168.1.20/hook", "http://172.16.5.5/hook", "http://169.254.169.254/latest",
    "http://[fe80::1]/hook", "http://100.64.0.1/hook", "http://224.0.0.1/hook",
    "http://0.0.0.0/hook", "http://[::]/hook", "http://metadata.google.internal/computeMetadata",
    "http://[2002:7f00:1::]/hook", "http://[64:ff9b::7f00:1]/hook",
    "http://[::1", "http://exa mple.com/hook", "ftp://example.com/hook", "http:///hook",
    "http://host.invalid/hook",  # does not resolve (RFC 6761: never)
]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from make_database(request, tmp_path)


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'ops.db'}")
    database.init_schema()
    yield database
    database.dispose()


def ops_settings(*, allow: list[str] | None = None, **api: Any) -> Settings:
    cities = [CitySettings(id="stockholm", name="Stockholm", country="SE",
                           bbox=(17.90, 59.28, 18.16, 59.38))]
    return Settings(cities=cities, api=ApiSettings(**{"api_keys": [API_KEY], **api}),
                    alerting=AlertingSettings(webhook_allow_private=allow or []))


def seed(db: Database, n: int = 2, status: str = "first") -> None:
    for i in range(n):
        region = rect_region(f"o{i}", i * 300, 0, 50, 40, status=status,
                             confirmed=date(2024, 3, 5) if status == "confirmed" else None,
                             confidence=0.9)
        apply_change_event(db, make_change("stockholm", f"ops{i}", [region]).data,
                           rules=AlertRules(), alerts_topic=None)


def add_sub(db: Database, url: str, statuses: list[str] | None = None) -> str:
    sub_id = uuid.uuid4().hex[:16]
    db.add_subscription(Subscription(id=sub_id, name="t", url=url, secret=SECRET,
                                     statuses=statuses or []))
    return sub_id


# -- webhook targets at creation ---------------------------------------------------------------
def test_unsafe_webhook_targets_are_refused_at_creation_with_422(db: Database) -> None:
    app = create_app(ops_settings(), db)
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        for url in [*REFUSED, base + "/subscriptions"]:  # ... and the API itself
            r = client.post("/subscriptions", json={"name": "x", "url": url}, headers=KEY)
            assert r.status_code == 422, (url, r.text)
            assert r.json()["code"] == "UnprocessableEntity"
            assert r.json()["description"].startswith("url: "), r.text
        # A public address is accepted, normalised (scheme and host lower-case, no fragment).
        ok = client.post("/subscriptions", headers=KEY,
                         json={"name": "x", "url": "HTTPS://93.184.215.14:8443/Hook?x=1#frag"})
        assert ok.status_code == 201, ok.text
    (stored,) = db.subscriptions()
    assert stored.url == "https://93.184.215.14:8443/Hook?x=1"


def test_the_allow_list_admits_named_private_targets_only(lite: Database) -> None:
    app = create_app(ops_settings(allow=["127.0.0.1/32"]), lite)
    with serve(app) as base, httpx.Client(base_url=base, timeout=20) as client:
        ok = client.post("/subscriptions", json={"name": "x", "url": base + "/x"}, headers=KEY)
        assert ok.status_code == 201, ok.text
        for url in ("http://[::1]/x", "http://10.0.0.1/x", "http://169.254.169.254/x",
                    "http://2130706433/x"):
            assert client.post("/subscriptions", json={"name": "x", "url": url},
                               headers=KEY).status_code == 422, url
    with pytest.raises(ValueError, match="neither an IP address"):
        AlertingSettings(webhook_allow_private=["not a host!"])


def test_url_checks_in_detail() -> None:
    for url in ("http://[::1", "http://2130706433/", "http://0x7f.0.0.1/", "http://a\tb/",
                "gopher://x/"):
        with pytest.raises(UnsafeWebhookTargetError):
            normalise_webhook_url(url)
    assert normalise_webhook_url(" HTTP://Bücher.Example/a#b ") == "http://xn--bcher-kva.example/a"
    # A name is checked by what it resolves to (every address), here with a fixed resolver.
    answers = {"hooks.example.org": ["93.184.215.14", "10.1.2.3"]}
    policy = TargetPolicy(resolver=lambda host, port: answers[host])
    with pytest.raises(UnsafeWebhookTargetError, match="private"):
        policy.check("https://hooks.example.org/h")
    answers["hooks.example.org"] = ["93.184.215.14", "2606:2800:220:1::1"]
    parsed, found = policy.check("https://hooks.example.org/h")
    assert [str(a) for a in found] == ["93.184.215.14", "2606:2800:220:1::1"]
    assert TargetPolicy(["receiver"], resolver=lambda h, p: ["172.18.0.5"]).check(
        "http://receiver:8080/h")[1][0].is_private  # an allow-listed compose service name


# -- webhook targets at send -------------------------------------------------------------------
def test_dispatcher_rechecks_every_send_and_never_posts_to_refused_targets(
        db: Database) -> None:
    """Rows created before the check (or whose DNS changed since) are refused at send:
    the loopback receiver gets nothing, the row records why, other rows go on."""
    receiver = start_receiver(SECRET)
    try:
        refused = add_sub(db, receiver.url)
        # DNS rebinding: a name that was public at creation answers loopback now.
        rebound = add_sub(db, receiver.url.replace("127.0.0.1", "rebind.example.org"))
        seed(db, 2)
        now = datetime.now(UTC) + timedelta(seconds=1)
        with WebhookSender(timeout_s=5, policy=TargetPolicy(
                resolver=lambda host, port: ["127.0.0.1"])) as sender:
            stats = dispatch_due(db, now, sender=sender)
        assert stats.retried == 4 and receiver.requests == []
        for sub in (refused, rebound):
            for row in db.deliveries(subscription_id=sub):
                assert row.status == "pending" and row.attempts == 1
                assert row.last_error and row.last_error.startswith("refused: ")
                assert "loopback" in row.last_error
        # With the allow-list (how the other tests reach their receivers) both are sent,
        # each to the address that was checked (the name only in the Host header).
        with WebhookSender(timeout_s=5, policy=TargetPolicy(
                LOOPBACK_ALLOW, resolver=lambda host, port: ["127.0.0.1"])) as sender:
            sent = dispatch_due(db, now + timedelta(minutes=5), sender=sender)
        assert sent.delivered == 4 and len(receiver.accepted) == 4
        hosts = {str(r["headers"]["Host"]).split(":")[0] for r in receiver.requests}  # type: ignore[index]
        assert hosts == {"127.0.0.1", "rebind.example.org"}
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]


class BodyReceiver:
    """Answers every POST with ``status`` and a body holding something internal."""

    BODY = "INTERNAL-ANSWER root:x:0:0 token=abc123"

    def __init__(self, status: int = 500) -> None:
        outer = self
        self.status = status
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.hits += 1
                data = (outer.BODY * 20).encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def test_receiver_answers_are_never_stored_shown_or_logged(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target = BodyReceiver(500)
    try:
        sub = add_sub(db, target.url)
        seed(db, 1)
        with WebhookSender(timeout_s=5, allow=LOOPBACK_ALLOW) as sender:
            dispatch_due(db, datetime.now(UTC) + timedelta(seconds=1), sender=sender)
        assert target.hits == 1
        (row,) = db.deliveries(subscription_id=sub)
        assert (row.last_status_code, row.last_error) == (500, "HTTP 500")
        # An old row written before the rule (body in last_error) is shown without it.
        db.finish_delivery(row.id, status="pending", attempted_at=datetime.now(UTC),  # type: ignore[arg-type]
                           status_code=500, error="HTTP 500: " + BodyReceiver.BODY)
        app = create_app(ops_settings(), db)
        with serve(app) as base:
            log = httpx.get(f"{base}/subscriptions/{sub}/deliveries", headers=KEY, timeout=10)
        assert log.status_code == 200
        assert log.json()["deliveries"][0]["last_error"] == "HTTP 500"
        assert "INTERNAL-ANSWER" not in log.text
    finally:
        target.server.shutdown()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP 500" in logged and "INTERNAL-ANSWER" not in logged


class ExplodingSender:
    """A WebhookClient that raises for one target (a bug, a library surprise)."""

    def __init__(self, inner: WebhookSender, bad: str) -> None:
        self.inner, self.bad = inner, bad

    def send(self, url: str, body: bytes, **kw: Any) -> DeliveryOutcome:
        if url == self.bad:
            raise RuntimeError("boom")
        return self.inner.send(url, body, **kw)

    def close(self) -> None:
        self.inner.close()


def test_one_bad_row_never_stops_the_dispatcher(db: Database) -> None:
    """``http://[::1`` stored by an older version (httpx.InvalidURL used to escape and kill
    the dispatcher thread), and a sender that raises: each is recorded on its row, the
    good rows are delivered, and the next round goes on."""
    receiver = start_receiver(SECRET)
    try:
        broken = add_sub(db, "http://[::1")
        exploding = add_sub(db, "http://127.0.0.1:9/explodes")
        good = add_sub(db, receiver.url)
        seed(db, 2)
        now = datetime.now(UTC) + timedelta(seconds=1)
        with WebhookSender(timeout_s=5, allow=LOOPBACK_ALLOW) as inner:
            sender = ExplodingSender(inner, "http://127.0.0.1:9/explodes")
            stats = dispatch_due(db, now, sender=sender)  # type: ignore[arg-type]
            assert stats.delivered == 2 and len(receiver.accepted) == 2
            again = dispatch_due(db, now + timedelta(minutes=10), sender=sender)  # type: ignore[arg-type]
        assert again.delivered == 0 and len(again.errors) == 4  # tried again, recorded again
        assert {r.status for r in db.deliveries(subscription_id=good)} == {"delivered"}
        for row in db.deliveries(subscription_id=broken):
            assert row.status == "pending" and row.attempts == 2
            assert row.last_error and "not a valid URL" in row.last_error
        for row in db.deliveries(subscription_id=exploding):
            assert row.status == "pending" and row.last_error == "internal error: RuntimeError"
    finally:
        receiver.server.shutdown()  # type: ignore[union-attr]


# -- subscriptions: reads need the key, URLs redacted, paged ------------------------------------
def test_subscriptions_are_readable_only_with_a_key_redacted_and_paged(lite: Database) -> None:
    app = create_app(ops_settings(allow=["127.0.0.1"], default_limit=2), lite)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        ids = []
        for i in range(3):
            r = client.post("/subscriptions", headers=KEY, json={
                "name": f"s{i}", "url": f"http://user{i}:pa55word{i}@127.0.0.1:9/h{i}?token=T0K{i}"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        for path in ("/subscriptions", f"/subscriptions/{ids[0]}",
                     f"/subscriptions/{ids[0]}/deliveries"):
            for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}):
                r = client.get(path, headers=headers)
                assert r.status_code == 401, (path, r.text)
                assert "127.0.0.1" not in r.text
        first = client.get("/subscriptions", headers=KEY).json()
        assert [s["id"] for s in first["subscriptions"]] == ids[:2]
        assert first["numberReturned"] == 2
        (nxt,) = [link["href"] for link in first["links"] if link["rel"] == "next"]
        second = client.get(nxt.removeprefix(base), headers=KEY).json()
        assert [s["id"] for s in second["subscriptions"]] == ids[2:]
        assert not [link for link in second["links"] if link["rel"] == "next"]
        one = client.get(f"/subscriptions/{ids[1]}", headers=KEY).json()
        text = json.dumps([first, second, one])
        for i in range(3):
            assert f"pa55word{i}" not in text and f"T0K{i}" not in text and f"user{i}" not in text
        assert one["url"] == "http://127.0.0.1:9/h1"
        bad = client.get("/subscriptions?offset=9223372036854775808", headers=KEY)
        assert bad.status_code == 400 and "offset" in bad.json()["description"]
    # The full URL (credentials included) is still what the dispatcher uses.
    assert lite.subscription(ids[1]).url.endswith("/h1?token=T0K1")  # type: ignore[union-attr]


def test_a_new_subscription_without_statuses_gets_the_default_feed(lite: Database) -> None:
    app = create_app(ops_settings(allow=["127.0.0.1"]), lite)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        plain = client.post("/subscriptions", headers=KEY,
                            json={"name": "a", "url": "http://127.0.0.1:9/a"}).json()
        every = client.post("/subscriptions", headers=KEY, json={
            "name": "b", "url": "http://127.0.0.1:9/b",
            "statuses": ["first", "provisional", "confirmed", "retracted", "withdrawn"]}).json()
    assert plain["statuses"] == ["provisional", "confirmed"]
    assert len(every["statuses"]) == 5


def test_the_key_is_checked_before_the_body(lite: Database) -> None:
    app = create_app(ops_settings(), lite)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        for content in (b"{not json", b'{"name": 5}', b"\xff\xfe"):
            r = client.post("/subscriptions", content=content,
                            headers={"Content-Type": "application/json"})
            assert r.status_code == 401, (content, r.text)
            r = client.post("/subscriptions", content=content,
                            headers={**KEY, "Content-Type": "application/json"})
            assert r.status_code == 400, (content, r.text)
        assert client.request("DELETE", "/subscriptions/x", content=b"{").status_code == 401


# -- API keys ------------------------------------------------------------------------------
@pytest.mark.parametrize("keys", [[""], ["short"], ["has a space in the key!"], [API_KEY, ""]])
def test_empty_or_short_api_keys_fail_the_config_check(tmp_path: Path, keys: list[str]) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(json.dumps({"api": {"api_keys": keys}}))
    with pytest.raises(ConfigError) as failure:
        load_settings(path)
    text = str(failure.value)
    assert "api.api_keys" in text and ("too short" in text or "empty" in text
                                       or "whitespace" in text)
    assert API_KEY not in text


def test_api_keys_from_an_unset_variable_fail_loudly(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBAN_MONITOR_API__API_KEYS", '[""]')
    with pytest.raises(ConfigError, match="empty"):
        load_settings(None)  # config/default.yaml, with the variable on top
