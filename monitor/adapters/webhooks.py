"""Webhook delivery over HTTP (httpx), signed with HMAC-SHA256.

Each delivery is a POST of the AlertEvent (CloudEvents 1.0 structured JSON) with headers:

- ``Content-Type: application/cloudevents+json``
- ``X-Urban-Monitor-Event-Id``: the CloudEvent id (deterministic: de-duplicate on it)
- ``X-Urban-Monitor-Delivery``: the outbox row id (differs per subscription)
- ``X-Urban-Monitor-Timestamp``: Unix seconds when this attempt was signed
- ``X-Urban-Monitor-Signature``: ``sha256=<hex>``, the HMAC-SHA256, keyed with the
  subscription's secret, of ``<timestamp>.<raw body>`` (the timestamp, a dot, the exact
  body bytes)

How a subscriber verifies a delivery (any language; Python shown, or import
:func:`verify_signature`)::

    import hashlib, hmac, time
    ts = request.headers["X-Urban-Monitor-Timestamp"]
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + raw_body,
                                    hashlib.sha256).hexdigest()
    ok = (hmac.compare_digest(expected, request.headers["X-Urban-Monitor-Signature"])
          and abs(time.time() - int(ts)) <= 300)          # refuse replays of old requests

Compute the HMAC over the raw bytes as received (before any JSON parsing), compare in
constant time, and reject timestamps older than a few minutes. Any 2xx answer counts as
delivered; anything else (or no answer within the timeout) is retried with backoff.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Urban-Monitor-Signature"
TIMESTAMP_HEADER = "X-Urban-Monitor-Timestamp"
EVENT_ID_HEADER = "X-Urban-Monitor-Event-Id"
DELIVERY_HEADER = "X-Urban-Monitor-Delivery"
USER_AGENT = "urban-monitor-webhooks/1"


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), str(int(timestamp)).encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None,
                     *, now: float, tolerance_s: float = 300.0) -> bool:
    """True when ``signature`` is valid for ``body`` and ``timestamp`` is recent enough."""
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_payload(secret, ts, body), signature)


def redact_url(url: str) -> str:
    """``url`` without the user:password part, for logs and error texts."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<unparsable url>"
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """A subscriber URL may carry basic-auth credentials (``https://user:pw@host/``): send
    them as an Authorization header, so that the URL httpx logs holds no password."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    return str(parsed.copy_with(userinfo=b"")), httpx.BasicAuth(parsed.username,
                                                                   parsed.password)


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Sends signed POSTs; never raises for network or HTTP failures (they are outcomes)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})

    def send(self, url: str, body: bytes, *, secret: str, event_id: str, delivery_id: int,
             timestamp: int) -> DeliveryOutcome:
        headers = {
            "Content-Type": "application/cloudevents+json",
            EVENT_ID_HEADER: event_id,
            DELIVERY_HEADER: str(delivery_id),
            TIMESTAMP_HEADER: str(int(timestamp)),
            SIGNATURE_HEADER: sign_payload(secret, timestamp, body),
        }
        try:
            target, auth = _split_credentials(url)
            response = self._client.post(target, content=body, headers=headers,
                                         auth=auth or httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            return DeliveryOutcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status_code < 300:
            return DeliveryOutcome(True, response.status_code)
        return DeliveryOutcome(False, response.status_code,
                               f"HTTP {response.status_code}: {response.text[:200]}")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
