"""Serving the API: a socket bound before anything else (a taken port is an error at
once, not a log line), and uvicorn with bounds: at most ``api.max_connections`` open
connections and tasks (more get 503), idle keep-alive connections closed after
``api.timeout_keep_alive_s``, and a connection whose request headers have not all
arrived within ``api.timeout_request_s`` closed (slow-header clients hold no slot).
Request bodies are timed by ``services.api.errors.BodyLimit`` (408)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from monitor.errors import UrbanMonitorError
from monitor.settings import Settings


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; :class:`UrbanMonitorError` at once
    when it cannot be bound (taken port, unknown address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise UrbanMonitorError(f"the API cannot listen on {host}:{port}: {exc}",
                                "set api.host to an address of this machine") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UrbanMonitorError(
            f"the API cannot listen on {host}:{port}: {exc.strerror or exc}",
            "another process holds the port (a second `serve api`?): stop it, or set "
            "api.port / URBAN_MONITOR_API__PORT") from None
    sock.set_inheritable(True)
    return sock


class HeaderTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, closing connections that have not sent complete request
    headers within ``header_timeout_s`` of opening (or of the previous response)."""

    header_timeout_s = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self.transport.is_closing():
            self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


def make_server(app: Any, settings: Settings) -> Any:
    """A ``uvicorn.Server`` for ``app`` with the settings' bounds (run it with
    ``server.run(sockets=[bind_socket(...)])``)."""
    import uvicorn

    from monitor.redact import install_log_redaction

    api = settings.api
    protocol = type("BoundedH11", (HeaderTimeoutH11,), {"header_timeout_s": api.timeout_request_s})
    config = uvicorn.Config(app, log_level=settings.logging.level.lower(),
                            http=protocol, limit_concurrency=api.max_connections,
                            timeout_keep_alive=int(max(1, api.timeout_keep_alive_s)),
                            server_header=False)
    install_log_redaction()  # uvicorn's loggers (request lines carry query strings)
    server = uvicorn.Server(config)
    return server
