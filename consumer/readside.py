"""The read side: tasks and request outcomes in the contract's own models.

The one module of `consumer` the bridge and the tools read through (`consumer.admin` is the
other, narrow, entry: migrations, topics, rebuild's write). A `TaskReader` owns its engine:
built when entered, disposed on exit. Database failures become `StorageUnavailableError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumer.contract import stored_task, task_rejected
from consumer.db import reads
from consumer.db.engine import build_engine
from consumer.domain import EventIdentity
from consumer.settings import DatabaseSettings
from schemas.errors import StorageUnavailableError
from schemas.replies import StoredTask, TaskRejected

__all__ = ["DatabaseSettings", "StorageUnavailableError", "TaskReader"]

CHECK_TIMEOUT_S = 2.0
_MIGRATED = text("SELECT version_num FROM alembic_version")


class TaskReader:
    """Read-only queries of the tasks database: `async with TaskReader(settings) as reader`."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self._settings = settings
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> Self:
        self._engine = build_engine(self._settings.dsn, self._settings.pool_size)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise RuntimeError("TaskReader used outside `async with`")
        try:
            async with self._engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            # The message names the kind of failure only: server text can echo input back.
            raise StorageUnavailableError(
                f"The tasks database is unavailable ({type(exc.orig).__name__})."
            ) from exc
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StorageUnavailableError(
                f"The tasks database is unavailable ({type(exc).__name__})."
            ) from exc

    async def task(self, service_id: int, task_id: int) -> StoredTask | None:
        """The task with this id, if it belongs to this service."""
        async with self._connection() as conn:
            task = await reads.get_task(conn, service_id, task_id)
        return None if task is None else stored_task(task)

    async def outcome(self, source: str, event_id: str) -> StoredTask | TaskRejected | None:
        """What became of a request: its task, its rejection, or None while pending."""
        identity = EventIdentity(source=source, id=event_id)
        async with self._connection() as conn:
            found = await reads.get_tasks_by_identity(conn, [identity])
            if identity in found:
                return stored_task(found[identity])
            rejection = await reads.get_rejection_by_identity(conn, identity)
        return None if rejection is None else task_rejected(rejection)

    async def check(self) -> None:
        """Raise StorageUnavailableError unless the database answers (and is migrated) quickly."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S), self._connection() as conn:
                version = (await conn.execute(_MIGRATED)).scalar()
        except TimeoutError as exc:
            raise StorageUnavailableError(
                f"The tasks database did not answer within {CHECK_TIMEOUT_S:g}s."
            ) from exc
        if version is None:
            raise StorageUnavailableError("The tasks database is not migrated.")
