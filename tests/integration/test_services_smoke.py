"""The real services answer: Kafka round-trips messages, PostgreSQL stores rows.

These tests prove the test infrastructure itself (docker/kafka.sh,
docker/postgres.sh, tests/conftest.py) before anything builds on it.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

MESSAGE_COUNT = 100


def test_kafka_round_trips_messages_across_partitions(kafka_bootstrap: str, new_topic) -> None:
    topic = new_topic("smoke", partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    try:
        for index in range(MESSAGE_COUNT):
            # Ten keys: both partitions receive messages, each key keeps its order.
            producer.send(topic, key=f"city-{index % 10}".encode(), value=f"{index}".encode())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"smoke-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20_000,
    )
    received = []
    try:
        for record in consumer:
            received.append(record)
            if len(received) == MESSAGE_COUNT:
                break
    finally:
        consumer.close()

    assert sorted(int(r.value) for r in received) == list(range(MESSAGE_COUNT))
    assert {r.partition for r in received} == {0, 1}
    for key in {r.key for r in received}:
        # Per-key order is what the system relies on (key = city id).
        values = [int(r.value) for r in received if r.key == key]
        assert values == sorted(values), f"messages of key {key!r} arrived out of order"
        assert len({r.partition for r in received if r.key == key}) == 1


def test_postgres_stores_and_returns_a_row(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    table = f"smoke_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {table} (id integer PRIMARY KEY, city text)"))
            connection.execute(
                sa.text(f"INSERT INTO {table} (id, city) VALUES (:id, :city)"),
                {"id": 1, "city": "Stockholm"},
            )
        with engine.connect() as connection:
            rows = connection.execute(sa.text(f"SELECT id, city FROM {table}")).all()
        assert [tuple(row) for row in rows] == [(1, "Stockholm")]
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_postgis_computes_geometry_when_installed(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            installed = connection.execute(
                sa.text("SELECT count(*) FROM pg_extension WHERE extname = 'postgis'")
            ).scalar_one()
            if not installed:
                pytest.skip(
                    "PostGIS is not installed in the test database (see docker/postgres.sh output)"
                )
            version = connection.execute(sa.text("SELECT postgis_version()")).scalar_one()
            area = connection.execute(
                sa.text("SELECT ST_Area(ST_MakeEnvelope(0, 0, 10, 20, 32633))")
            ).scalar_one()
    finally:
        engine.dispose()
    assert version.split()[0].startswith("3.")
    assert area == pytest.approx(200.0)
