"""Liveness of the long-running processes: ``serve`` writes a heartbeat file every few
seconds while every role thread it started is alive; ``urban-monitor health ROLE``
(what compose's healthchecks run) exits 0 when that file is fresh and says all alive,
1 otherwise, with one line saying why.

The files live in ``$URBAN_MONITOR_HEALTH_DIR`` (default: ``<tmp>/urban-monitor``), one
per served role set (``scheduler``, ``inference``, ``alerting``, ``api``, ``all``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

BEAT_EVERY_S = 5.0
DEFAULT_MAX_AGE_S = 30.0


def health_dir() -> Path:
    return Path(os.environ.get("URBAN_MONITOR_HEALTH_DIR")
                or Path(tempfile.gettempdir()) / "urban-monitor")


def health_file(name: str) -> Path:
    return health_dir() / f"{name}.json"


def beat(name: str, alive: dict[str, bool]) -> None:
    """Write the heartbeat of ``name`` (atomically: a reader never sees half a file)."""
    path = health_file(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"time": time.time(), "pid": os.getpid(), "roles": alive}))
    os.replace(tmp, path)


def clear(name: str) -> None:
    health_file(name).unlink(missing_ok=True)


def check(name: str, max_age_s: float = DEFAULT_MAX_AGE_S) -> tuple[bool, str]:
    """(healthy, why) for the role set ``name``."""
    path = health_file(name)
    try:
        data = json.loads(path.read_text())
        age = time.time() - float(data["time"])
        roles = dict(data["roles"])
    except FileNotFoundError:
        return False, f"{name}: no heartbeat at {path} (not started, or stopped)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"{name}: unreadable heartbeat {path}: {exc}"
    dead = sorted(role for role, ok in roles.items() if not ok)
    if dead:
        return False, f"{name}: role(s) {dead} stopped"
    if age > max_age_s:
        return False, f"{name}: last heartbeat {age:.0f} s ago (more than {max_age_s:g} s)"
    return True, f"{name}: alive ({', '.join(sorted(roles))}), heartbeat {age:.0f} s ago"
