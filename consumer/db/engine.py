"""The async engine factory (built by the composition root, disposed on shutdown)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Self

import orjson
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

IDLE_PING_S = 5.0
"""A pooled connection idle for longer than this is pinged before use; a busy one is not.

SQLAlchemy's `pool_pre_ping` pings at every checkout, and with asyncpg a ping is three round
trips (BEGIN, `;`, ROLLBACK): the consumer's batch itself is three (BEGIN, INSERT, COMMIT). Idle
connections are the ones a restarted or idle-closing server has dropped; a connection lost while
busy fails its batch, which is retried like any other outage (the same error path a ping takes).
"""
_LAST_USED = "ucs_last_used"
_SERVER_SETTINGS = {
    # Plan every execution for its own parameters. A prepared statement otherwise switches to a
    # generic plan after five runs, frozen with the statistics of that moment: made while the
    # tasks table was still small, the batch INSERT's identity check hashed the whole table on
    # every batch from then on (a scan growing with the table) instead of probing its index.
    "plan_cache_mode": "force_custom_plan",
}


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def build_engine(database_url: str, pool_size: int = 5) -> AsyncEngine:
    """An asyncpg engine; idle connections are checked before use (survives a server restart)."""
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=10,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": 5,
            "command_timeout": 60,
            "server_settings": _SERVER_SETTINGS,
        },
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "connect")
    @event.listens_for(pool, "checkin")
    def _used(dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _check(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) <= IDLE_PING_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:  # any failure: the pool replaces the connection
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


class EngineScope:
    """An engine that lives for an `async with` block (the read side's and rebuild's entries)."""

    def __init__(self, database_url: str, pool_size: int) -> None:
        self._database_url = database_url
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None

    async def __aenter__(self) -> Self:
        self._engine = build_engine(self._database_url, self._pool_size)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    def _require(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError(f"{type(self).__name__} used outside `async with`")
        return self._engine
