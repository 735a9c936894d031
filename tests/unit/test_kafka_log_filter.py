"""kafka-python's harmless close race is logged as one warning line, real errors stay."""

from __future__ import annotations

import io
import logging

import monitor.adapters.bus_kafka  # noqa: F401  (installs the filter)


def _log_through_transport_logger() -> str:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("kafka.net.transport")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        try:
            None.recv(4096)  # type: ignore[attr-defined]  # what kafka-python hits
        except AttributeError:
            logger.exception("%s: Error receiving network data closing socket",
                             "<KafkaTCPTransport [none] (closed)>")
        try:
            raise ValueError("a real failure")
        except ValueError:
            logger.exception("%s: Error receiving network data", "<KafkaTCPTransport [x:1]>")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return buffer.getvalue()


def test_the_close_race_is_a_warning_without_traceback_and_real_errors_keep_theirs() -> None:
    text = _log_through_transport_logger()
    first, rest = text.split("\n", 1)
    assert first.startswith("WARNING kafka.net.transport: <KafkaTCPTransport [none] (closed)>")
    assert "harmless at close" in first
    assert rest.startswith("ERROR kafka.net.transport: <KafkaTCPTransport [x:1]>")
    assert text.count("Traceback") == 1 and "ValueError: a real failure" in text
