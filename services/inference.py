"""An inference worker process: consumes SceneEvents, updates city states, emits
ChangeEvents (``monitor.pipeline.inference``, wired by ``monitor.pipeline.runtime``).

    python -m services.inference [--config FILE]      # or: urban-monitor serve inference

Run as many as the scenes topic has partitions; Kafka's consumer group gives each city
(one partition) one owner at a time. SIGTERM/SIGINT stop it after the scene in hand.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.cli import role_main


def main(argv: Sequence[str] | None = None) -> int:
    return role_main("inference", argv)


if __name__ == "__main__":
    raise SystemExit(main())
