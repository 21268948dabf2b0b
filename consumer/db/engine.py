"""The async engine factory (built by the composition root, disposed on shutdown)."""

from __future__ import annotations

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def build_engine(database_url: str, pool_size: int = 5) -> AsyncEngine:
    """An asyncpg engine; connections are checked before use so a restarted server is survived."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
        connect_args={"timeout": 5, "command_timeout": 60},
    )
