"""The read side: tasks and request outcomes in the contract's own models.

The one module of `consumer` the bridge and the tools read through (`consumer.admin` is the
other, narrow, entry: migrations, topics, rebuild's write). A `TaskReader` owns its engine:
built when entered, disposed on exit. Database failures become `StorageUnavailableError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.contract import stored_task, task_rejected
from consumer.db import reads
from consumer.db.engine import EngineScope
from consumer.db.query import (
    QUERY_LIMIT_DEFAULT,
    QUERY_LIMIT_MAX,
    TaskQuery,
    TaskState,
    query_tasks,
)
from consumer.domain import EventIdentity, RecordedChange, Task
from consumer.settings import DatabaseSettings
from schemas.errors import StorageUnavailableError
from schemas.replies import StoredTask, TaskRejected

__all__ = [
    "QUERY_LIMIT_DEFAULT",
    "QUERY_LIMIT_MAX",
    "DatabaseSettings",
    "StorageUnavailableError",
    "StoredChange",
    "TaskReader",
    "TaskState",
]

CHECK_TIMEOUT_S = 2.0
_MIGRATED = text("SELECT version_num FROM alembic_version")


@dataclass(frozen=True, slots=True)
class StoredChange:
    """An applied end or extension request: what it changed, and its task as it is now."""

    kind: str
    """`end` or `extension`."""
    task: StoredTask
    extension: str | None = None
    """The extension's name (extension requests)."""
    value: Any = None
    """The extension's value as the request set it (an object or an array of objects)."""

    @property
    def service_id(self) -> int:
        """The service of the changed task."""
        return self.task.service_id


class TaskReader(EngineScope):
    """Read-only queries of the tasks database: `async with TaskReader(settings) as reader`."""

    def __init__(self, settings: DatabaseSettings) -> None:
        super().__init__(settings.dsn, settings.pool_size)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        engine = self._require()
        try:
            async with engine.connect() as conn:
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

    async def task(
        self, service_id: int, task_id: int, tenant: str | None = None
    ) -> StoredTask | None:
        """The whole task (its completion included), if it belongs to this service and tenant.

        `tenant` is the caller's (None in single-tenant mode, which sees tasks stored without
        one): another service's or another tenant's task is None, exactly like an unknown one.
        """
        async with self._connection() as conn:
            task = await reads.get_task(conn, service_id, task_id, tenant)
        return None if task is None else stored_task(task)

    async def query(
        self,
        service_id: int,
        tenant: str | None = None,
        *,
        state: TaskState | str = TaskState.ALL,
        state_id: int | None = None,
        task_types: Sequence[int | str] = (),
        limit: int = QUERY_LIMIT_DEFAULT,
        after: int | None = None,
    ) -> list[StoredTask]:
        """One page of a service's (and tenant's) tasks in task id order (Query Tasks).

        `state`: all, active or completed; `state_id`: that state only; `task_types`: any of
        these types (an int matches a type id, a str a type name); `limit`: 1 ..
        QUERY_LIMIT_MAX; `after`: the last task id of the previous page. An invalid value is
        a ValueError naming it.
        """
        query = TaskQuery(
            service_id,
            tenant,
            TaskState(state),
            state_id,
            tuple(task_types),
            limit,
            after,
        )
        async with self._connection() as conn:
            tasks = await query_tasks(conn, query)
        return [stored_task(task) for task in tasks]

    async def outcome(self, source: str, event_id: str) -> StoredTask | TaskRejected | None:
        """What became of a START request: its task, its rejection, or None while pending.

        See `request_outcome` for requests of every kind.
        """
        found = await self.request_outcome(source, event_id)
        return None if isinstance(found, StoredChange) else found

    async def request_outcome(
        self, source: str, event_id: str
    ) -> StoredTask | StoredChange | TaskRejected | None:
        """What became of a request of any kind, or None while pending.

        A start: its task. An end or extension update: a StoredChange (None if its task is
        gone). A refused request of any kind: its TaskRejected.
        """
        identity = EventIdentity(source=source, id=event_id)
        async with self._connection() as conn:
            found = await reads.get_tasks_by_identity(conn, [identity])
            if identity in found:
                return stored_task(found[identity])
            change = await reads.get_change_by_identity(conn, identity)
            if change is not None:
                return _stored_change(*change)
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


def _stored_change(change: RecordedChange, task: Task | None) -> StoredChange | None:
    if task is None:
        return None
    value = None if change.value_json is None else orjson.loads(change.value_json)
    return StoredChange(change.kind.value, stored_task(task), change.extension, value)
