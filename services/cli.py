"""`urban-monitor`: the command-line entry point, and `urban-monitor serve ...`.

``main`` is the library's CLI (``monitor.cli``: config, events, db, discover, backfill,
demo, synthetic, models) plus what only the outer layers provide: ``serve`` (run one
process of the system, or all of them) and the development tools of a source checkout
(``reliability``, from ``tools/``). The per-process mains (``python -m services.<role>``)
and ``serve`` share :func:`serve_roles`: settings -> composition root -> roles until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence

from monitor import cli as library_cli
from monitor.errors import UrbanMonitorError
from monitor.pipeline.runtime import (
    Runtime,
    build_runtime,
    install_stop_handlers,
    run_alerting,
    run_inference,
    state_store,
)
from monitor.pipeline.scheduling import run_scheduler
from monitor.settings import Settings, load_settings
from services import health

log = logging.getLogger(__name__)

ROLES = ("scheduler", "inference", "alerting", "api", "all")
Role = Callable[[Runtime, threading.Event], object]


def run_api(runtime: Runtime, stop: threading.Event, sock: socket.socket | None = None) -> None:
    """The API (uvicorn, bounded: ``services.api.server``) until ``stop`` is set; raises
    when the port cannot be bound or the server stops by itself."""
    from services.api import create_app
    from services.api.server import bind_socket, make_server

    settings = runtime.settings
    if sock is None:
        sock = bind_socket(settings.api.host, settings.api.port)
    app = create_app(settings, runtime.db, state_store(settings))
    server = make_server(app, settings)
    # Our stop event ends it (uvicorn would otherwise take SIGINT/SIGTERM for itself).
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn",
                              daemon=True)
    thread.start()
    announced = False
    try:
        while not stop.is_set():
            if server.started and not announced:
                # uvicorn does not log this for sockets handed to it; scripts wait for it
                log.info("Uvicorn running on http://%s:%d", settings.api.host,
                         sock.getsockname()[1])
                announced = True
            if not thread.is_alive():
                raise UrbanMonitorError(f"the API server on {settings.api.host}:"
                                        f"{settings.api.port} stopped by itself",
                                        "see the log lines above")
            stop.wait(0.05 if not announced else 0.5)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


RUNNERS: dict[str, Role] = {
    "scheduler": lambda rt, stop: run_scheduler(rt.settings, rt.bus, rt.db, stop,
                                                install_signals=False),
    "inference": run_inference,
    "alerting": lambda rt, stop: run_alerting(rt.settings, rt.bus, rt.db, stop),
    "api": run_api,
}


def serve_roles(settings: Settings, roles: Sequence[str]) -> int:
    """Run ``roles`` (each in its own thread, one shared runtime) until SIGTERM/SIGINT or
    until every role has returned. The API's port is bound before anything else (a taken
    port fails at once); a role that raises stops the others and the process exits 2.
    While every role runs, a heartbeat file is written (``services.health``)."""
    from services.api.server import bind_socket

    sock = bind_socket(settings.api.host, settings.api.port) if "api" in roles else None
    try:
        runtime = build_runtime(settings)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    stop = threading.Event()
    install_stop_handlers(stop)
    failures: list[str] = []
    name = "all" if len(roles) > 1 else roles[0]

    def guarded(role: str) -> None:
        try:
            if role == "api":
                run_api(runtime, stop, sock)
            else:
                RUNNERS[role](runtime, stop)
        except Exception as exc:  # noqa: BLE001 - reported, and the process exits non-zero
            failures.append(role)
            log.error("%s failed: %s", role, exc,
                      exc_info=not isinstance(exc, UrbanMonitorError))
            stop.set()

    threads = []
    for role in roles:
        thread = threading.Thread(target=guarded, args=(role,), name=role, daemon=True)
        thread.start()
        threads.append(thread)
        log.info("%s started", role)
    last_beat = 0.0
    try:
        while not stop.is_set() and any(t.is_alive() for t in threads):
            if time.monotonic() - last_beat >= health.BEAT_EVERY_S:
                health.beat(name, {t.name: t.is_alive() for t in threads})
                last_beat = time.monotonic()
            stop.wait(0.5)
    finally:
        stop.set()
        health.clear(name)
        for thread in threads:
            thread.join(timeout=30)
        runtime.close()
    if failures:
        log.error("stopping: %s failed", ", ".join(failures))
        return 2
    return 0


def role_main(role: str, argv: Sequence[str] | None = None) -> int:
    """``python -m services.<role> [--config FILE]``."""
    parser = argparse.ArgumentParser(prog=f"python -m services.{role}",
                                     description=f"Run the {role} process of Urban Monitor.")
    parser.add_argument("--config", default=None, help="settings file (YAML)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    library_cli.configure_logging(settings.logging.level)
    try:
        return serve_roles(settings, [role])
    except UrbanMonitorError as exc:  # e.g. the database or the broker is not there
        log.error("%s", exc)
        return 2


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if args.role == "all" and settings.bus.kind != "embedded":
        log.info("serve all with bus=%s: every role in this process", settings.bus.kind)
    roles = ["scheduler", "inference", "alerting", "api"] if args.role == "all" else [args.role]
    return serve_roles(settings, roles)


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run a service: scheduler, inference, alerting, api, or all",
        description="Run one process of the system. In distributed mode (bus.kind=kafka) "
                    "start each role as its own process and as many inference workers as "
                    "the scenes topic has partitions; in embedded mode use 'all'. "
                    "SIGTERM/Ctrl-C stops after the work in hand (offsets are committed "
                    "only after processing, so nothing is lost).")
    serve.add_argument("role", choices=ROLES)
    serve.set_defaults(func=_cmd_serve)

    check = subparsers.add_parser(
        "health", help="liveness of a served role (for container healthchecks)",
        description="Exit 0 when `serve ROLE` on this machine wrote its heartbeat within "
                    "--max-age seconds and all its roles run; 1 (with the reason) if not.")
    check.add_argument("role", choices=ROLES)
    check.add_argument("--max-age", type=float, default=health.DEFAULT_MAX_AGE_S,
                       help="seconds (default: %(default)s)")
    check.set_defaults(func=_cmd_health)


def _cmd_health(args: argparse.Namespace) -> int:
    ok, why = health.check(args.role, args.max_age)
    print(why, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def register_tools(subparsers: argparse._SubParsersAction) -> None:
    """The development tools of a source checkout (``tools/``: the fault-injection and
    load harness). Without them (an installed wheel) the command says where they are."""
    try:
        from tools.reliability.cli import register as register_reliability
    except ImportError:
        register_reliability = _missing_reliability
    register_reliability(subparsers)


def _missing_reliability(subparsers: argparse._SubParsersAction) -> None:
    def refuse(_: argparse.Namespace) -> int:
        raise UrbanMonitorError(
            "the reliability harness (tools/reliability) is not installed with this copy",
            "run it from a source checkout: pip install -e . in the repository, then "
            "urban-monitor reliability faults")

    tool = subparsers.add_parser("reliability", help="fault injection (source checkout only)")
    tool.add_argument("arguments", nargs=argparse.REMAINDER)
    tool.set_defaults(func=refuse)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``urban-monitor`` command."""
    return library_cli.main(argv, extra_commands=(register, register_tools))


if __name__ == "__main__":
    raise SystemExit(main())
