"""An inference worker process with fault hooks (for the fault-injection suite).

    python -m tools.reliability.worker --config FILE --name w1 --status-dir DIR
        [--fail-write 3:version,7:pointer] [--hang-after-save N]

It is the production worker (``monitor.pipeline.runtime.build_worker`` and
``build_inference_loop``) with
three additions the suite needs to aim its faults:

- ``DIR/<name>.busy`` holds the scene event id in hand while a scene is handled and
  ``DIR/<name>.done`` gets one line per finished scene, so a kill -9 lands mid-scene;
- ``--fail-write``: the state store's filesystem fails the Nth write of a state version
  (``version``) or the Nth move of the pointer (``pointer``) with an ``OSError``, as a
  full disk or a flaky object store would;
- ``--hang-after-save N``: after the Nth successful state save the worker stops (before it
  publishes the ChangeEvent and before the offset is committed) and writes
  ``DIR/<name>.saved``: the suite kills it there.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from monitor.adapters.state_store import POINTER, StateStore
from monitor.domain.events import CloudEvent
from monitor.ports import Message

log = logging.getLogger(__name__)


class FlakyFileSystem(LocalFileSystem):
    """A local filesystem that fails chosen writes: ``plan`` maps "version"/"pointer" to
    the 1-based attempt numbers that raise ``OSError``."""

    cachable = False  # fsspec would otherwise hand this instance to every LocalFileSystem()

    def __init__(self, plan: dict[str, set[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.attempts = {"version": 0, "pointer": 0}
        self.injected: list[str] = []

    def _maybe_fail(self, kind: str, path: str) -> None:
        self.attempts[kind] += 1
        if self.attempts[kind] in self.plan.get(kind, set()):
            what = f"injected failure of {kind} write #{self.attempts[kind]} ({path})"
            self.injected.append(what)
            log.warning("%s", what)
            raise OSError(what)

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and ".tmp-" in path and not path.endswith(POINTER):
            self._maybe_fail("version", path)
        return super()._open(path, mode, *args, **kwargs)

    def mv(self, path1: str, path2: str, *args: Any, **kwargs: Any) -> Any:
        if str(path2).endswith(POINTER):
            self._maybe_fail("pointer", str(path2))
        return super().mv(path1, path2, *args, **kwargs)


class HangingStateStore(StateStore):
    """Stops the process's handling for good after its Nth successful save, unless another
    worker of the run (same status folder) has already done so."""

    def __init__(self, *args: Any, hang_after: int, marker: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hang_after = hang_after
        self.marker = marker
        self.saves = 0

    def save(self, city_id: str, state: Any) -> int:
        version = super().save(city_id, state)
        self.saves += 1
        # Once per run: the first worker to get there hangs, the others (which take its
        # partition over) must not.
        if self.saves == self.hang_after and not any(self.marker.parent.glob("*.saved")):
            self.marker.write_text(f"{city_id} {version} {state.last_scene_id}\n")
            log.warning("saved version %d of %s; now hanging until killed", version, city_id)
            while True:  # the suite kills -9 this process here
                time.sleep(60)
        return version


def parse_fail_plan(spec: str | None) -> dict[str, set[int]]:
    """"3:version,7:pointer" -> {"version": {3}, "pointer": {7}}."""
    plan: dict[str, set[int]] = {}
    for part in filter(None, (spec or "").split(",")):
        number, _, kind = part.partition(":")
        if kind not in ("version", "pointer") or not number.isdigit():
            raise SystemExit(f"--fail-write: '{part}' is not N:version or N:pointer")
        plan.setdefault(kind, set()).add(int(number))
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    from monitor.cli import configure_logging
    from monitor.pipeline.runtime import (
        build_inference_loop,
        build_runtime,
        build_worker,
        install_stop_handlers,
    )
    from monitor.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m tools.reliability.worker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--status-dir", required=True, type=Path)
    parser.add_argument("--fail-write", default=None)
    parser.add_argument("--hang-after-save", type=int, default=0)
    args = parser.parse_args(argv)

    settings = load_settings(args.config)
    configure_logging(settings.logging.level)
    stop = threading.Event()
    install_stop_handlers(stop, "the scene in hand")
    args.status_dir.mkdir(parents=True, exist_ok=True)
    busy = args.status_dir / f"{args.name}.busy"
    done = args.status_dir / f"{args.name}.done"
    (args.status_dir / f"{args.name}.pid").write_text(str(os.getpid()))

    plan = parse_fail_plan(args.fail_write)
    filesystem = FlakyFileSystem(plan) if plan else None
    store: StateStore | None = None
    if args.hang_after_save:
        store = HangingStateStore(settings.state.url, filesystem=filesystem,
                                  hang_after=args.hang_after_save,
                                  marker=args.status_dir / f"{args.name}.saved")
    elif filesystem is not None:
        store = StateStore(settings.state.url, filesystem=filesystem)
    runtime = build_runtime(settings)
    worker = build_worker(runtime, store=store)
    loop = build_inference_loop(runtime, worker, client_id=f"reliability-{args.name}")
    handler = loop.handler

    def traced(event: CloudEvent, message: Message) -> None:
        busy.write_text(event.id)
        try:
            handler(event, message)
        finally:
            busy.unlink(missing_ok=True)
        with done.open("a") as f:
            f.write(f"{event.id}\n")

    loop.handler = traced
    log.info("reliability worker %s (pid %d) consuming", args.name, os.getpid())
    try:
        loop.run(stop, timeout_s=0.5)
    finally:
        loop.consumer.close()
        runtime.close()
        log.info("reliability worker %s stopped: %s", args.name, loop.stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
