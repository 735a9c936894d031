"""Shared fixtures: repository paths, real data, and the real services.

Kafka and PostgreSQL are real servers. When the test command (docker/test.sh)
has started them it exports their addresses; otherwise the fixtures start them
with the same scripts, so a plain ``pytest tests/integration`` works. A service
that cannot start fails the tests that need it: it is never silently skipped.

Environment:
    URBAN_MONITOR_TEST_KAFKA          bootstrap address, e.g. 127.0.0.1:19092
    URBAN_MONITOR_TEST_DATABASE_URL   SQLAlchemy URL of the test database

Subfolders add their own fixtures in their own ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka.errors import KafkaError

REPO_ROOT = Path(__file__).resolve().parents[1]
KAFKA_ENV = "URBAN_MONITOR_TEST_KAFKA"
DATABASE_ENV = "URBAN_MONITOR_TEST_DATABASE_URL"
SERVICE_START_TIMEOUT_S = 300
TOPIC_READY_TIMEOUT_S = 30.0

NewTopicFactory = Callable[..., str]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration/ talks to real services: mark it so
    # `-m "not integration"` gives a quick offline run.
    integration_dir = REPO_ROOT / "tests" / "integration"
    for item in items:
        if integration_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def start_service(script: str, service: str) -> str:
    """Run ``docker/<script> start`` and return the address it prints last.

    Fails the calling test (not skips) with the script's own explanation when
    the service cannot start.
    """
    command = ["bash", str(REPO_ROOT / "docker" / script), "start"]
    try:
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=SERVICE_START_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{service} did not start: `{' '.join(command)}` ran longer than "
            f"{SERVICE_START_TIMEOUT_S}s; run it by hand to see why.",
            pytrace=False,
        )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        details = "\n".join(completed.stderr.strip().splitlines()[-60:])
        pytest.fail(
            f"{service} did not start: `{' '.join(command)}` exited with "
            f"{completed.returncode}. Its output:\n{details}",
            pytrace=False,
        )
    return lines[-1].strip()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (the folder holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data(repo_root: Path) -> Path:
    """The real data folder ``../shared/data`` next to the repository."""
    path = (repo_root / ".." / "shared" / "data").resolve()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent; these tests read real files from it")
    return path


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap address of a real Kafka broker (started on demand)."""
    return os.environ.get(KAFKA_ENV) or start_service("kafka.sh", "Kafka")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """SQLAlchemy URL (psycopg 3) of a real PostgreSQL database (started on demand)."""
    return os.environ.get(DATABASE_ENV) or start_service("postgres.sh", "PostgreSQL")


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[object]:
    """A kafka-python ``KafkaAdminClient`` connected to the test broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=kafka_bootstrap,
        client_id="urban-monitor-tests",
        request_timeout_ms=30_000,
    )
    try:
        yield admin
    finally:
        admin.close()


def wait_for_topic(admin: object, name: str, partitions: int, timeout_s: float) -> None:
    """Block until every partition of ``name`` has a leader in the metadata."""
    deadline = time.monotonic() + timeout_s
    last_seen: object = None
    while time.monotonic() < deadline:
        try:
            described = admin.describe_topics([name])  # type: ignore[attr-defined]
        except KafkaError as error:  # the topic may not be known yet
            last_seen = error
        else:
            last_seen = described
            if described and described[0].get("error_code") == 0:
                leaders = [
                    p.get("leader_id", p.get("leader", -1))
                    for p in described[0].get("partitions", [])
                ]
                if len(leaders) == partitions and all(leader >= 0 for leader in leaders):
                    return
        time.sleep(0.1)
    raise TimeoutError(
        f"topic {name!r} has no leader for all {partitions} partitions after {timeout_s}s "
        f"(last metadata: {last_seen!r}); check the broker log var/services/kafka/logs/broker.log"
    )


@pytest.fixture
def new_topic(kafka_admin: object) -> Iterator[NewTopicFactory]:
    """Factory ``new_topic(prefix="test", partitions=1) -> name`` of fresh topics.

    Each call creates a uniquely named topic (uuid suffix), waits until its
    metadata is visible and deletes it when the test ends.
    """
    from kafka.admin import NewTopic

    created: list[str] = []

    def create(prefix: str = "test", partitions: int = 1) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        kafka_admin.create_topics(  # type: ignore[attr-defined]
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)]
        )
        created.append(name)
        wait_for_topic(kafka_admin, name, partitions, TOPIC_READY_TIMEOUT_S)
        return name

    yield create
    if created:
        # Cleanup only: a leftover uniquely named test topic harms nothing.
        with contextlib.suppress(KafkaError):
            kafka_admin.delete_topics(created)  # type: ignore[attr-defined]
