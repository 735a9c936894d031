"""`urban-monitor serve ...`: run one process of the system (or all of them, embedded)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable

from monitor.pipeline.runtime import Runtime
from monitor.settings import load_settings

log = logging.getLogger(__name__)

ROLES = ("scheduler", "inference", "alerting", "api", "all")


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``: loops finish the record in hand, commit, and exit."""

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: stopping after the work in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_api(runtime: Runtime, stop: threading.Event) -> None:
    """The API (uvicorn) until ``stop`` is set."""
    import uvicorn

    from monitor.adapters.state_store import StateStore
    from services.api import create_app

    settings = runtime.settings
    app = create_app(settings, runtime.db, StateStore(settings.state.url))
    server = uvicorn.Server(uvicorn.Config(app, host=settings.api.host, port=settings.api.port,
                                           log_level=settings.logging.level.lower()))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours stop it
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    stop.wait()
    server.should_exit = True
    thread.join(timeout=10)


def _role_runner(role: str) -> Callable[[Runtime, threading.Event], object]:
    if role == "scheduler":
        from services.scheduler import run_scheduler

        return lambda rt, stop: run_scheduler(rt.settings, rt.bus, rt.db, stop,
                                              install_signals=False)
    if role == "inference":
        from services.inference import run_inference

        return run_inference
    if role == "alerting":
        from services.alerting import run_alerting

        return lambda rt, stop: run_alerting(rt.settings, rt.bus, rt.db, stop)
    return run_api


def _cmd_serve(args: argparse.Namespace) -> int:
    from monitor.pipeline.runtime import build_runtime

    settings = load_settings(args.config)
    if args.role == "all" and settings.bus.kind != "embedded":
        log.info("serve all with bus=%s: every role in this process", settings.bus.kind)
    runtime = build_runtime(settings)
    stop = threading.Event()
    install_stop_handlers(stop)
    roles = ["scheduler", "inference", "alerting", "api"] if args.role == "all" else [args.role]
    threads = []
    for role in roles:
        runner = _role_runner(role)
        thread = threading.Thread(target=runner, args=(runtime, stop), name=role, daemon=True)
        thread.start()
        threads.append(thread)
        log.info("%s started", role)
    try:
        while not stop.is_set() and any(t.is_alive() for t in threads):
            stop.wait(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        runtime.close()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve", help="run a service: scheduler, inference, alerting, api, or all",
        description="Run one process of the system. In distributed mode (bus.kind=kafka) "
                    "start each role as its own process and as many inference workers as "
                    "the scenes topic has partitions; in embedded mode use 'all'. "
                    "SIGTERM/Ctrl-C stops after the work in hand (offsets are committed "
                    "only after processing, so nothing is lost).")
    serve.add_argument("role", choices=ROLES)
    serve.set_defaults(func=_cmd_serve)
