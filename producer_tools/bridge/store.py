"""The bridge's read side: tasks and request outcomes, over `consumer.db.reads` (defined once).

Database failures become `StorageUnavailableError` (503) here and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumer.db.reads import get_rejection_by_identity, get_task, get_tasks_by_identity
from consumer.domain import EventIdentity, Rejection, Task
from producer_tools.bridge.errors import StorageUnavailableError

CHECK_TIMEOUT_S = 2.0
_MIGRATED = text("SELECT version_num FROM alembic_version")


class TaskStore:
    """Read-only queries of the tasks database (the engine is the lifespan's)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise StorageUnavailableError(
                f"The tasks database is unavailable: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from exc

    async def task(self, service_id: int, task_id: int) -> Task | None:
        """The task with this id, if it belongs to this service."""
        async with self._connection() as conn:
            return await get_task(conn, service_id, task_id)

    async def outcome(self, identity: EventIdentity) -> Task | Rejection | None:
        """What became of a start request: its task, its rejection, or None while pending."""
        async with self._connection() as conn:
            found = await get_tasks_by_identity(conn, [identity])
            if identity in found:
                return found[identity]
            return await get_rejection_by_identity(conn, identity)

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
