"""The alerting process: consumes ChangeEvents, records alerts, notifies subscribers
(``monitor.pipeline.alerting`` and ``outbox``, wired by ``monitor.pipeline.runtime``:
the consume loop in one thread, the webhook dispatcher in another).

    python -m services.alerting [--config FILE]       # or: urban-monitor serve alerting

SIGTERM/SIGINT stop it after the event in hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.cli import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("alerting", argv)


if __name__ == "__main__":
    raise SystemExit(main())
