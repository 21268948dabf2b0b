"""The narrow operator entry: what the tools and the bridge need of the consumer beyond reads.

- `upgrade_database`: apply the Alembic migrations (`ucs-tasks db upgrade`, the dev stack);
- `create_service_topics` / `check_service_topics`: the service topics with the settings the
  guarantees need (`ucs-tasks topics create|check`, the dev stack, the tests), and
  `create_topics` for other topics (the bridge's reply topic); from `consumer.kafka.topics`;
- `install_no_topic_auto_creation`: the process's Kafka clients ask brokers not to create the
  topics they look up (the bridge, as the consumer), and `install_closed_connection_errors`: a
  request written to a connection that has just closed fails as a lost connection under uvloop
  too; from `consumer.kafka.aiokafka_internals`;
- `TaskRestorer`: the write side of `ucs-tasks rebuild` (tasks and the identities of their
  changes, `ChangeRow`), one transaction that holds off other writers.

Database failures surface as `StorageUnavailableError` (message without server text).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NamedTuple

from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.contract import stored_task
from consumer.db import migrate, rebuild
from consumer.db.engine import EngineScope, build_engine
from consumer.db.rebuild import ChangeRow
from consumer.db.status import read_status
from consumer.kafka.aiokafka_internals import (
    install_closed_connection_errors,
    install_no_topic_auto_creation,
)
from consumer.kafka.topic_rules import Finding, Severity, TopicReport
from consumer.kafka.topics import (
    TopicSetupError,
    check_service_topics,
    create_service_topics,
    create_topics,
)
from consumer.settings import ConsumerSettings, DatabaseSettings
from schemas.errors import StorageUnavailableError
from schemas.replies import StoredTask

__all__ = [
    "ChangeRow",
    "ConsumerSettings",
    "DatabaseReport",
    "Finding",
    "RestoreTransaction",
    "Severity",
    "StorageUnavailableError",
    "TaskRestorer",
    "TopicReport",
    "TopicSetupError",
    "check_service_topics",
    "create_service_topics",
    "create_topics",
    "install_closed_connection_errors",
    "install_no_topic_auto_creation",
    "read_database_report",
    "upgrade_database",
]


def upgrade_database(settings: DatabaseSettings, revision: str = "head") -> None:
    """Migrate the tasks database to `revision` (safe inside a running event loop).

    Raises StorageUnavailableError when the database cannot be reached or refuses a step, and
    ValueError for a revision the migrations do not know; neither message holds the URL.
    """
    try:
        migrate.upgrade(settings.dsn, revision)
    except CommandError as exc:
        raise ValueError(f"cannot migrate to {revision!r}: {exc}") from None
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: Exception) -> StorageUnavailableError:
    orig = getattr(exc, "orig", None) or exc
    return StorageUnavailableError(
        f"database error ({type(orig).__name__}): {orig}".splitlines()[0]
    )


class RestoreTransaction:
    """Inside `TaskRestorer.transaction()`: the tasks and task_changes tables, locked against
    other writers."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def task_count(self) -> int:
        """How many tasks the database holds now."""
        return await rebuild.task_count(self._conn)

    async def insert(self, tasks: Sequence[StoredTask]) -> list[int]:
        """Insert with their own ids and times; ids or identities already present are skipped."""
        return await rebuild.insert_tasks(self._conn, tasks)

    async def delete(self, task_ids: Sequence[int]) -> int:
        """Delete tasks by id (a newer life of the log, or a newer state, supersedes them)."""
        return await rebuild.delete_tasks(self._conn, task_ids)

    async def insert_changes(self, changes: Sequence[ChangeRow]) -> list[tuple[str, str]]:
        """Record applied changes; identities already recorded are skipped. The identities
        inserted."""
        return await rebuild.insert_changes(self._conn, changes)

    async def delete_changes(self, identities: Sequence[tuple[str, str]]) -> int:
        """Delete recorded changes by identity (a newer life of the log supersedes their task)."""
        return await rebuild.delete_changes(self._conn, identities)

    async def advance_task_ids(self) -> int:
        """Move the id sequence past the highest stored id (never back); the next id."""
        return await rebuild.advance_task_ids(self._conn)


class TaskRestorer(EngineScope):
    """The write side of rebuild: `async with TaskRestorer(settings) as restorer`."""

    def __init__(self, settings: DatabaseSettings) -> None:
        super().__init__(settings.dsn, 1)

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


class DatabaseReport(NamedTuple):
    """The database's part of `ucs-tasks status`."""

    ids_used: int
    ids_left: int
    tasks: int
    rejected: int
    last_task: StoredTask | None


async def read_database_report(settings: DatabaseSettings) -> DatabaseReport:
    """The id space, the counts and the newest task; StorageUnavailableError if unreachable."""
    engine = build_engine(settings.dsn, 1)
    try:
        async with engine.connect() as conn:
            found = await read_status(conn)
    except (DBAPIError, SQLAlchemyError, OSError) as exc:
        raise _unavailable(exc) from exc
    finally:
        await engine.dispose()
    last = None if found.last_task is None else stored_task(found.last_task)
    return DatabaseReport(found.ids_used, found.ids_left, found.tasks, found.rejected, last)
