"""The unit of work: one transaction per poll batch, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumer.db.repository import SqlTaskRepository, translate_errors


class SqlUnitOfWork:
    """UnitOfWork on an AsyncEngine: `async with uow: ...; await uow.commit()`."""

    tasks: SqlTaskRepository

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def __aenter__(self) -> Self:
        with translate_errors():
            self._conn = await self._engine.connect()
            await self._conn.begin()
        self.tasks = SqlTaskRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction():
                await conn.rollback()
        except Exception:  # noqa: BLE001, S110 - the connection is being discarded anyway
            pass
        finally:
            await conn.close()

    def _require(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work used outside `async with`")
        return self._conn

    async def commit(self) -> None:
        conn = self._require()
        with translate_errors():
            await conn.commit()
            await conn.begin()

    async def rollback(self) -> None:
        conn = self._require()
        with translate_errors():
            await conn.rollback()
            await conn.begin()
