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
constant time, and reject timestamps older than a few minutes.

Every delivery also carries the **Standard Webhooks** headers (standardwebhooks.com):
``webhook-id`` (the CloudEvent id, the same on every retry), ``webhook-timestamp`` and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, keyed with
the subscription secret's UTF-8 bytes), so a receiver can verify with that library::

    from standardwebhooks import Webhook
    event = Webhook(SECRET.encode()).verify(raw_body, request.headers)  # raises if not valid Any 2xx answer counts as
delivered; anything else (or no answer within the timeout) is retried with backoff.

Targets are checked against server-side request forgery (:class:`TargetPolicy`): a URL is
parsed and normalised when the subscription is created (no whitespace, no numeric host
shorthands such as ``2130706433`` or ``0x7f000001``), and its host is resolved and
refused when any address is loopback, private, link-local, CGNAT, multicast, reserved,
unspecified or an IPv4-mapped/6to4/Teredo IPv6 form, or when the name is ``localhost`` or a
cloud metadata name. Every send resolves again, checks again and connects to the checked
address (the URL's host stays in the Host header and TLS SNI), so a DNS answer that
changes after the subscription was made cannot reach an internal address. Only
``alerting.webhook_allow_private`` (IP addresses, CIDR networks or exact host names)
lifts the check. Redirects are not followed, proxies from the environment are not used,
and the answer's body is never read: only its status code is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Urban-Monitor-Signature"
TIMESTAMP_HEADER = "X-Urban-Monitor-Timestamp"
EVENT_ID_HEADER = "X-Urban-Monitor-Event-Id"
DELIVERY_HEADER = "X-Urban-Monitor-Delivery"
USER_AGENT = "urban-monitor-webhooks/1"
# Standard Webhooks (https://www.standardwebhooks.com/)
STD_ID_HEADER = "webhook-id"
STD_TIMESTAMP_HEADER = "webhook-timestamp"
STD_SIGNATURE_HEADER = "webhook-signature"


def sign_payload(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>." + body)."""
    mac = hmac.new(secret.encode("utf-8"), str(int(timestamp)).encode("ascii") + b"." + body,
                   hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of
    ``"<id>.<timestamp>.<body>"`` keyed with the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode("utf-8"),
                   f"{message_id}.{int(timestamp)}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


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
    """``url`` without user:password, query and fragment (a token often rides in the
    query), for logs and error texts."""
    return display_url(url)


def _split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """A subscriber URL may carry basic-auth credentials (``https://user:pw@host/``): send
    them as an Authorization header, so that the URL httpx logs holds no password."""
    parsed = httpx.URL(url)
    if not parsed.userinfo:
        return url, None
    return str(parsed.copy_with(userinfo=b"")), httpx.BasicAuth(parsed.username,
                                                                   parsed.password)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Names that always mean "this machine" or a cloud metadata service.
_BLOCKED_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback", "metadata", "metadata.google.internal",
                            "metadata.goog", "instance-data", "instance-data.ec2.internal"})
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_DOTTED_QUAD = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
                          r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$")


class UnsafeWebhookTargetError(ValueError):
    """A webhook URL that is malformed or points where the dispatcher must not send."""


def normalise_webhook_url(url: str) -> str:
    """The URL checked for form and normalised (lower-case scheme and host, IDNA, no
    fragment); raises :class:`UnsafeWebhookTargetError` saying what is wrong."""
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise UnsafeWebhookTargetError("the URL is empty")
    if any(ord(c) < 33 or ord(c) == 127 for c in text):
        raise UnsafeWebhookTargetError("the URL contains whitespace or control characters")
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise UnsafeWebhookTargetError(f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeWebhookTargetError("the URL must start with http:// or https://")
    host = parsed.host.lower().rstrip(".")
    if not host:
        raise UnsafeWebhookTargetError("the URL has no host")
    if ":" not in host:
        labels = host.split(".")
        if all(_NUMERIC_LABEL.match(label) for label in labels) and not _DOTTED_QUAD.match(host):
            raise UnsafeWebhookTargetError(
                f"host '{host}' is a numeric address in a non-standard form (decimal, hex, "
                "octal or shortened); write an IPv4 address as a dotted quad, or use a name")
    try:
        port = parsed.port
    except ValueError as exc:  # pragma: no cover - httpx refuses bad ports when parsing
        raise UnsafeWebhookTargetError(f"bad port ({exc})") from None
    if port is not None and not 1 <= port <= 65535:
        raise UnsafeWebhookTargetError(f"port {port} is out of range")
    return str(parsed.copy_with(fragment=None))


def address_problem(ip: IPAddress) -> str | None:
    """Why the dispatcher must not connect to ``ip`` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if ip.sixtofour is not None or ip.teredo is not None or ip in _NAT64:
            return "an IPv6 tunnel address with an embedded IPv4 address"
    checks = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
              ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
              ("carrier-grade NAT (100.64.0.0/10)", ip in _CGNAT),
              ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("not globally routable", not ip.is_global))
    for what, hit in checks:
        if hit:
            return f"a {what} address"
    return None


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class TargetPolicy:
    """Which webhook targets may be reached: public addresses only, plus what ``allow``
    lists (IP addresses or CIDR networks, or exact host names such as ``receiver``)."""

    def __init__(self, allow: Iterable[str] = (), *,
                 resolver: Callable[[str, int], Sequence[str]] = _system_resolve) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in allow:
            entry = entry.strip().lower()
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.rstrip("."))
        self.resolver = resolver

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.networks)

    def check(self, url: str) -> tuple[httpx.URL, list[IPAddress]]:
        """The normalised URL and its checked addresses; :class:`UnsafeWebhookTargetError`
        when the URL is bad or any address (or the name) is refused."""
        parsed = httpx.URL(normalise_webhook_url(url))
        host = parsed.host.lower().rstrip(".")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if host in self.names:
            named_ok = True
        elif host in _BLOCKED_NAMES or host.endswith(".localhost"):
            raise UnsafeWebhookTargetError(f"host '{host}' names this machine or a metadata "
                                      "service; webhooks go to public addresses only")
        else:
            named_ok = False
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                found = [ipaddress.ip_address(a.split("%", 1)[0])
                         for a in self.resolver(host, port)]
            except (OSError, UnicodeError, ValueError) as exc:
                raise UnsafeWebhookTargetError(f"host '{host}' does not resolve ({exc})") from None
            if not found:
                raise UnsafeWebhookTargetError(f"host '{host}' does not resolve")
        if not named_ok:
            for ip in found:
                problem = address_problem(ip)
                if problem and not self._allowed(ip):
                    raise UnsafeWebhookTargetError(
                        f"host '{host}' is {problem} ({ip}); webhooks go to public "
                        "addresses only (alerting.webhook_allow_private lists exceptions)")
        return parsed, found


def display_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: what the API shows of a target."""
    try:
        parsed = httpx.URL(url)
        return str(parsed.copy_with(userinfo=b"", query=None, fragment=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<unparsable url>"


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Sends signed POSTs to targets the :class:`TargetPolicy` accepts (checked at every
    send); never raises: refusals, network and HTTP failures are outcomes."""

    def __init__(self, timeout_s: float = 10.0, *, allow: Iterable[str] = (),
                 policy: TargetPolicy | None = None) -> None:
        self.policy = policy or TargetPolicy(allow)
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False,
                                    trust_env=False, headers={"User-Agent": USER_AGENT})

    def send(self, url: str, body: bytes, *, secret: str, event_id: str, delivery_id: int,
             timestamp: int) -> DeliveryOutcome:
        headers = {
            "Content-Type": "application/cloudevents+json",
            EVENT_ID_HEADER: event_id,
            DELIVERY_HEADER: str(delivery_id),
            TIMESTAMP_HEADER: str(int(timestamp)),
            SIGNATURE_HEADER: sign_payload(secret, timestamp, body),
            STD_ID_HEADER: event_id,
            STD_TIMESTAMP_HEADER: str(int(timestamp)),
            STD_SIGNATURE_HEADER: standard_signature(secret, event_id, timestamp, body),
        }
        try:
            target, auth = _split_credentials(normalise_webhook_url(url))
            parsed, addresses = self.policy.check(target)
            # Connect to the address just checked (no second lookup that DNS could answer
            # differently); the name stays in the Host header and the TLS SNI/check.
            pinned = parsed.copy_with(host=str(addresses[0]))
            headers["Host"] = parsed.netloc.decode("ascii")
            extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
            with self._client.stream("POST", pinned, content=body, headers=headers,
                                     auth=auth or httpx.USE_CLIENT_DEFAULT,
                                     extensions=extensions) as response:
                code = response.status_code  # the body is never read, stored or shown
        except UnsafeWebhookTargetError as exc:
            return DeliveryOutcome(False, None, f"refused: {exc}"[:300])
        except httpx.HTTPError as exc:
            return DeliveryOutcome(False, None, f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop the dispatcher
            log.warning("webhook send to %s raised %s", redact_url(url), type(exc).__name__)
            return DeliveryOutcome(False, None, f"{type(exc).__name__}: {exc}"[:300])
        if 200 <= code < 300:
            return DeliveryOutcome(True, code)
        return DeliveryOutcome(False, code, f"HTTP {code}")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
