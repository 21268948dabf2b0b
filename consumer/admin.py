"""The narrow operator entry: what the tools and the bridge need of the consumer beyond reads.

- `upgrade_database`: apply the Alembic migrations (`ucs-tasks db upgrade`, the dev stack);
- `create_topics`: create the service's topics (`ucs-tasks dev`, the bridge's reply topic);
- `TaskRestorer`: the write side of `ucs-tasks rebuild`, one transaction that holds off other
  writers.

Database failures surface as `StorageUnavailableError` (message without server text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumer.db import migrate, rebuild
from consumer.db.engine import build_engine
from consumer.settings import DatabaseSettings
from schemas.errors import StorageUnavailableError
from schemas.replies import StoredTask
from schemas.settings import KafkaSettings, TopicSettings

__all__ = ["StorageUnavailableError", "TaskRestorer", "create_topics", "upgrade_database"]


def upgrade_database(settings: DatabaseSettings, revision: str = "head") -> None:
    """Migrate the tasks database to `revision` (safe inside a running event loop)."""
    migrate.upgrade(settings.dsn, revision)


async def create_topics(
    kafka: KafkaSettings,
    names: Sequence[str],
    partitions: int,
    configs: dict[str, str] | None = None,
    request_timeout_ms: int = 40_000,
) -> dict[str, list[int]]:
    """Create these topics (ones that exist are left as they are); each one's partitions."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        brokers = (await admin.describe_cluster())["brokers"]
        replicas = max(1, min(3, len(brokers)))
        unique = list(dict.fromkeys(names))
        topics = [
            NewTopic(name, partitions, replicas, topic_configs=dict(configs or {}))
            for name in unique
        ]
        response = await admin.create_topics(topics)
        # aiokafka reports per-topic errors in the response instead of raising them.
        for topic, code, message in response.topic_errors:
            if code != 0 and for_code(code) is not TopicAlreadyExistsError:
                raise for_code(code)(f"cannot create topic {topic}: {message}")
        described = await admin.describe_topics(unique)
    finally:
        await admin.close()
    found: dict[str, list[int]] = {}
    for topic in described:
        if topic["error_code"] != 0:
            raise for_code(topic["error_code"])(f"cannot describe topic {topic['topic']}")
        found[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
    return found


async def create_service_topics(kafka: KafkaSettings, topics: TopicSettings) -> None:
    """Create the service's four topics (requests, created, rejected, dead letter)."""
    await create_topics(kafka, topics.service_topics(), topics.partitions)


def _unavailable(exc: Exception) -> StorageUnavailableError:
    orig = getattr(exc, "orig", None) or exc
    return StorageUnavailableError(
        f"database error ({type(orig).__name__}): {orig}".splitlines()[0]
    )


class RestoreTransaction:
    """Inside `TaskRestorer.transaction()`: the tasks table, locked against other writers."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def task_count(self) -> int:
        """How many tasks the database holds now."""
        return await rebuild.task_count(self._conn)

    async def insert(self, tasks: Sequence[StoredTask]) -> list[int]:
        """Insert with their own ids and times; ids or identities already present are skipped."""
        return await rebuild.insert_tasks(self._conn, tasks)

    async def delete(self, task_ids: Sequence[int]) -> int:
        """Delete tasks by id (a newer life of the log supersedes them)."""
        return await rebuild.delete_tasks(self._conn, task_ids)

    async def advance_task_ids(self) -> int:
        """Move the id sequence past the highest stored id (never back); the next id."""
        return await rebuild.advance_task_ids(self._conn)


class TaskRestorer:
    """The write side of rebuild: `async with TaskRestorer(settings) as restorer`."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> Self:
        self._engine = build_engine(self._settings.dsn, 1)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    def _require(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("TaskRestorer used outside `async with`")
        return self._engine

    async def task_count(self) -> int:
        """How many tasks the database holds."""
        try:
            async with self._require().connect() as conn:
                return await rebuild.task_count(conn)
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[RestoreTransaction]:
        """One transaction holding the tasks table: committed if the block ends normally."""
        try:
            async with self._require().begin() as conn:
                await rebuild.lock_tasks(conn)
                yield RestoreTransaction(conn)
        except (DBAPIError, SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from exc
