"""A real STAC API server for tests and demos: `rustac serve` with its in-memory backend.

rustac's memory backend does not accept transactions (``POST /collections/{id}/items``
answers 405 Method Not Allowed, checked with rustac 0.2.18), so items that "appear" between
two polls are published by ``restart_with``/``add_items``: the server is restarted on the
same port with the larger item set, which takes well under a second.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from monitor.errors import ServiceError

log = logging.getLogger(__name__)

ItemLike = Mapping[str, Any] | Path | str


def find_rustac() -> str:
    """The `rustac` executable: next to the running Python first (a venv), then on PATH."""
    beside = Path(sys.executable).parent / "rustac"
    if beside.exists():
        return str(beside)
    found = shutil.which("rustac")
    if found is None:
        raise ServiceError("the `rustac` executable was not found",
                           "install it into the environment: pip install rustac")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _load_items(items: Iterable[ItemLike]) -> list[dict[str, Any]]:
    """Item dicts from dicts, item JSON files or FeatureCollection JSON files."""
    out: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(dict(item))
            continue
        data = json.loads(Path(item).read_text())
        if data.get("type") == "FeatureCollection":
            out.extend(data["features"])
        else:
            out.append(data)
    return out


class StacServer:
    """``with StacServer(collections, items) as server: Client.open(server.url)``.

    ``collections`` are collection JSON files; ``items`` are item dicts, item JSON files or
    FeatureCollection files (each item names its collection).
    """

    def __init__(self, collections: Sequence[Path | str], items: Iterable[ItemLike] = (),
                 *, host: str = "127.0.0.1", port: int | None = None,
                 startup_timeout_s: float = 30.0, rustac: str | None = None) -> None:
        # rustac refuses ".." in paths: hand it absolute, normalised ones.
        self.collections = [Path(c).resolve() for c in collections]
        for path in self.collections:
            if not path.exists():
                raise ServiceError(f"STAC collection file {path} does not exist",
                                   "generate the archive first, or pass the right path")
        self._items = _load_items(items)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout_s = startup_timeout_s
        self._rustac = rustac
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log_file: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def items(self) -> list[dict[str, Any]]:
        """The items being served now."""
        return list(self._items)

    def __enter__(self) -> StacServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _log_tail(self, n_chars: int = 2000) -> str:
        if self._workdir is None:
            return ""
        try:
            return (self._workdir / "rustac.log").read_text(errors="replace")[-n_chars:]
        except OSError:
            return ""

    def start(self) -> None:
        """Start `rustac serve` and wait until its landing page answers."""
        if self._proc is not None:
            return
        rustac = self._rustac or find_rustac()
        self._workdir = Path(tempfile.mkdtemp(prefix="stac-server-"))
        items_file = self._workdir / "items.json"
        items_file.write_text(json.dumps({"type": "FeatureCollection", "features": self._items}))
        hrefs = [str(p) for p in self.collections]
        if self._items:
            hrefs.append(str(items_file))
        cmd = [rustac, "serve", "--addr", f"{self.host}:{self.port}", *hrefs]
        self._log_file = open(self._workdir / "rustac.log", "wb")  # noqa: SIM115 (closed in stop)
        try:
            self._proc = subprocess.Popen(cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            self._cleanup()
            raise ServiceError(f"could not run {rustac}: {exc}",
                               "check that rustac is installed and executable") from exc
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail()
                code = self._proc.returncode
                self._cleanup()
                raise ServiceError(
                    f"STAC server (rustac serve on {self.host}:{self.port}) exited with code "
                    f"{code} while starting; log tail:\n{tail}",
                    "check the collection/item files and that the port is free")
            try:
                if httpx.get(self.url, timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = self._log_tail()
                self.stop()
                raise ServiceError(
                    f"STAC server at {self.url} did not answer within "
                    f"{self.startup_timeout_s:.0f} s; log tail:\n{tail}",
                    "raise startup_timeout_s or check the machine's load")
            time.sleep(0.05)
        log.info("STAC server %s serving %d collections, %d items",
                 self.url, len(self.collections), len(self._items))

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 5 s) and remove its files."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._cleanup()

    def _cleanup(self) -> None:
        self._proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def restart_with(self, items: Iterable[ItemLike]) -> None:
        """Serve exactly ``items`` from now on (same URL); rustac has no transactions."""
        self._items = _load_items(items)
        was_running = self._proc is not None
        self.stop()
        if was_running:
            # The port was just released; the OS lets us bind it again at once on Linux,
            # but retry briefly in case another process grabbed it in between.
            for attempt in range(3):
                try:
                    self.start()
                    return
                except ServiceError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)

    def add_items(self, items: Iterable[ItemLike]) -> None:
        """Publish more items (replacing any with the same collection and id)."""
        new = _load_items(items)
        keys = {(it.get("collection"), it["id"]) for it in new}
        kept = [it for it in self._items if (it.get("collection"), it["id"]) not in keys]
        self.restart_with([*kept, *new])


def serve_forever(server: StacServer) -> None:
    """Block until Ctrl-C (or SIGTERM), then stop the server."""

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Without this, SIGTERM would end Python before `stop()` and orphan rustac.
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        _serve_until_interrupted(server)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve_until_interrupted(server: StacServer) -> None:
    with server:
        print(f"STAC API at {server.url} (Ctrl-C to stop)", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    if not server.running:
        log.info("STAC server stopped")
