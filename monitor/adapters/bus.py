"""Build the bus the settings ask for."""

from __future__ import annotations

from monitor.ports import Bus
from monitor.settings import BusSettings


def create_bus(settings: BusSettings) -> Bus:
    if settings.kind == "kafka":
        from monitor.adapters.bus_kafka import KafkaBus

        return KafkaBus(settings.bootstrap_servers, client_id=settings.client_id)
    from monitor.adapters.bus_embedded import EmbeddedBus

    return EmbeddedBus(default_partitions=settings.partitions)
