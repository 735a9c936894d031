"""Two small local HTTP endpoints the fault suite controls.

- :class:`FaultyProxy` sits in front of the real STAC API (``rustac serve``) and can be
  ``down`` (connections are dropped without an answer), ``slow`` (every answer is held
  back ``delay_s``) or ``garbage`` (200 OK with a body that is not JSON), and can drop
  chosen items from every answer (``drop``: item ids), as a catalogue that silently lost
  scenes does;
- :class:`WebhookReceiver` is a subscriber's webhook target that records every delivery's
  event id and can be taken down (its port then refuses connections) and brought back.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from monitor.adapters.stac_server import free_port
from monitor.adapters.webhooks import EVENT_ID_HEADER

log = logging.getLogger(__name__)

MODES = ("ok", "down", "slow", "garbage")


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug(format, *args)


class FaultyProxy:
    """``with FaultyProxy(upstream_url) as proxy: ... proxy.mode = "down" ...``"""

    def __init__(self, upstream: str, *, delay_s: float = 2.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "ok"
        self.delay_s = delay_s
        self.port = free_port()
        self.requests = 0
        self.faulted = 0
        self.drop: set[str] = set()  # item ids left out of every answer (silently)
        self.dropped = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(_Quiet):
            def _forward(self) -> None:
                proxy.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                if mode != "ok":
                    proxy.faulted += 1
                if mode == "down":
                    self.close_connection = True
                    self.connection.close()  # no answer at all, as a dead load balancer
                    return
                if mode == "garbage":
                    payload = b"<html><body>502 upstream confused {\"type\": \"Featu"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if mode == "slow":
                    time.sleep(proxy.delay_s)
                # Links in STAC answers name the upstream: rewrite them to the proxy.
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "accept")}
                try:
                    answer = httpx.request(self.command, proxy.upstream + self.path,
                                           content=body, headers=headers, timeout=30)
                except httpx.HTTPError as exc:
                    self.send_error(502, f"upstream: {exc}")
                    return
                content = answer.content.replace(proxy.upstream.encode(),
                                                 proxy.url.rstrip("/").encode())
                if proxy.drop:
                    content = proxy._without_dropped(content)
                try:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type",
                                     answer.headers.get("content-type", "application/json"))
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except OSError:
                    pass  # the client gave up (timeout) while we were slow: fine

            do_GET = _forward  # noqa: N815 - the stdlib names the handlers so
            do_POST = _forward  # noqa: N815

        return Handler

    def _without_dropped(self, content: bytes) -> bytes:
        """The answer without the items in ``drop`` (a FeatureCollection page; anything
        else passes unchanged). ``numberMatched`` stays: catalogues that lose scenes say
        nothing either."""
        import json

        try:
            page = json.loads(content)
        except ValueError:
            return content
        if not isinstance(page, dict) or not isinstance(page.get("features"), list):
            return content
        kept = [f for f in page["features"]
                if not (isinstance(f, dict) and f.get("id") in self.drop)]
        self.dropped += len(page["features"]) - len(kept)
        page["features"] = kept
        return json.dumps(page).encode()

    def start(self) -> FaultyProxy:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="faulty-stac-proxy")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class WebhookReceiver:
    """A webhook target: records (event id, delivery id) of each POST it accepts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[str] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def up(self) -> bool:
        return self._server is not None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(_Quiet):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(self.headers.get(EVENT_ID_HEADER, ""))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler

    def start(self) -> WebhookReceiver:
        """Listen (again) on the same port."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
            self._server.daemon_threads = True
            threading.Thread(target=self._server.serve_forever, daemon=True,
                             name="webhook-receiver").start()
        return self

    def stop(self) -> None:
        """Close the port: deliveries now get 'connection refused'."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
