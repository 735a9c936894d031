"""The scheduler process: polls every enabled source at its own interval and publishes new
scenes (``monitor.pipeline.scheduling``).

    python -m services.scheduler [--config FILE]      # or: urban-monitor serve scheduler

SIGTERM/SIGINT stop it after the polls in hand finish.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.cli import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("scheduler", argv)


if __name__ == "__main__":
    raise SystemExit(main())
