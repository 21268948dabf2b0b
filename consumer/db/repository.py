"""The batched task repository: one INSERT ... SELECT FROM unnest(...) round trip per batch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.reads import READ_COLUMNS, SELECT_LIST, get_tasks_by_identity, row_to_task
from consumer.db.tables import LONG_OR_STRING_FIELDS
from consumer.domain import (
    EventIdentity,
    IdSpaceExhaustedError,
    Rejection,
    StartCommand,
    StorageUnavailableError,
    Task,
    UnstorableEventError,
)

# (column, SQL array type) of each input array, in unnest order.
_INPUT: tuple[tuple[str, str], ...] = (
    ("service_id", "bigint"),
    ("state_id", "int"),
    ("session_id", "text"),
    ("interaction_id", "text"),
    ("application_id", "int"),
    ("resource_id", "int"),
    ("est_duration", "int"),
    *(
        (f"{name}_{kind}", sql)
        for name in LONG_OR_STRING_FIELDS
        for kind, sql in (("id", "bigint"), ("name", "text"))
    ),
    ("started_at", "timestamptz"),
    ("attached_data_text", "text"),
    ("event_source", "text"),
    ("event_id", "text"),
    ("source_topic", "text"),
    ("source_partition", "int"),
    ("source_offset", "bigint"),
)
_NAMES = [name for name, _ in _INPUT]
_INSERT_COLUMNS = [*_NAMES, "attached_data"]
_SELECTED = ["COALESCE(started_at, now())" if n == "started_at" else n for n in _NAMES] + [
    "CAST(attached_data_text AS jsonb)"
]

# Built from fixed column names only; every value is a bound parameter.
_UNNEST = ", ".join(f"CAST(:{name} AS {sql}[])" for name, sql in _INPUT)
_ADD_OR_GET = text(
    f"WITH input AS (SELECT * FROM unnest({_UNNEST})"  # noqa: S608
    f" WITH ORDINALITY AS i({', '.join(_NAMES)}, ord)),"
    " fresh AS (SELECT * FROM input i WHERE NOT EXISTS ("
    "  SELECT 1 FROM tasks t"
    "  WHERE t.event_source = i.event_source AND t.event_id = i.event_id)),"
    f" inserted AS (INSERT INTO tasks ({', '.join(_INSERT_COLUMNS)})"
    f"  SELECT {', '.join(_SELECTED)} FROM fresh ORDER BY ord"
    "  ON CONFLICT ON CONSTRAINT tasks_event_identity_key DO NOTHING"
    f"  RETURNING {SELECT_LIST})"
    f" SELECT true AS created, {SELECT_LIST} FROM inserted"
    f" UNION ALL SELECT false AS created, {', '.join('t.' + c for c in READ_COLUMNS)}"
    " FROM tasks t JOIN input i ON t.event_source = i.event_source AND t.event_id = i.event_id"
)

_RECORD_REJECTIONS = text(
    "INSERT INTO rejected_events (event_source, event_id, service_id, status, code, error,"
    " source_topic, source_partition, source_offset)"
    " SELECT s, i, sid, st, c, CAST(e AS jsonb), tp, p, o FROM unnest("
    "CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:service_ids AS bigint[]),"
    " CAST(:statuses AS int[]), CAST(:codes AS text[]), CAST(:errors AS text[]),"
    " CAST(:topics AS text[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[]))"
    " AS r(s, i, sid, st, c, e, tp, p, o)"
    " ON CONFLICT ON CONSTRAINT rejected_events_identity_key DO NOTHING"
)

_SEQUENCE_EXHAUSTED = "2200H"
_DATA_ERROR_CLASSES = ("22", "23", "54")
"""SQLSTATE classes meaning 'this data cannot be stored' (retrying cannot help)."""


@contextmanager
def translate_errors() -> Iterator[None]:
    """Database errors -> domain errors: exhausted ids, unstorable data, or retriable outage."""
    try:
        yield
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        if sqlstate == _SEQUENCE_EXHAUSTED:
            raise IdSpaceExhaustedError(str(exc.orig)) from exc
        if sqlstate[:2] in _DATA_ERROR_CLASSES and not exc.connection_invalidated:
            raise UnstorableEventError(str(exc.orig).splitlines()[0]) from exc
        raise StorageUnavailableError(f"database error: {exc.orig}") from exc
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise StorageUnavailableError(f"database unavailable: {exc}") from exc


def _columns(commands: Sequence[StartCommand]) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {name: [] for name in _NAMES}
    for c in commands:
        f = c.fields
        for name in ("state_id", "session_id", "interaction_id"):
            arrays[name].append(f.get(name))
        for name in ("application_id", "resource_id", "est_duration"):
            arrays[name].append(f.get(name))
        for name in LONG_OR_STRING_FIELDS:
            value = f.get(name)
            arrays[f"{name}_id"].append(value if isinstance(value, int) else None)
            arrays[f"{name}_name"].append(value if isinstance(value, str) else None)
        arrays["service_id"].append(c.service_id)
        arrays["started_at"].append(f.get("timestamp"))
        arrays["attached_data_text"].append(orjson.dumps(c.attached_data).decode())
        arrays["event_source"].append(c.identity.source)
        arrays["event_id"].append(c.identity.id)
        arrays["source_topic"].append(c.position.topic)
        arrays["source_partition"].append(c.position.partition)
        arrays["source_offset"].append(c.position.offset)
    return arrays


class SqlTaskRepository:
    """TaskRepository over one open transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_or_get(
        self, commands: Sequence[StartCommand]
    ) -> dict[EventIdentity, tuple[Task, bool]]:
        with translate_errors():
            result = await self._conn.execute(_ADD_OR_GET, _columns(commands))
            rows = result.mappings().all()
        found = {}
        for row in rows:
            task = row_to_task(row)
            found[task.identity] = (task, bool(row["created"]))
        missing = [c.identity for c in commands if c.identity not in found]
        if missing:  # another consumer inserted them after our snapshot was taken
            raced = await self.get_by_identity(missing)
            found.update((identity, (task, False)) for identity, task in raced.items())
        return found

    async def get_by_identity(
        self, identities: Sequence[EventIdentity]
    ) -> dict[EventIdentity, Task]:
        with translate_errors():
            return await get_tasks_by_identity(self._conn, identities)

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        params = {
            "sources": [r.identity.source for r in rejections],
            "ids": [r.identity.id for r in rejections],
            "service_ids": [r.service_id for r in rejections],
            "statuses": [r.status for r in rejections],
            "codes": [r.code for r in rejections],
            "errors": [orjson.dumps(r.body).decode() for r in rejections],
            "topics": [r.position.topic for r in rejections],
            "partitions": [r.position.partition for r in rejections],
            "offsets": [r.position.offset for r in rejections],
        }
        with translate_errors():
            await self._conn.execute(_RECORD_REJECTIONS, params)
