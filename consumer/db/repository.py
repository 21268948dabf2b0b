"""The batched task repository: one round trip per batch of starts (an INSERT ... SELECT from one
JSON parameter) and one per batch of ends and extension updates (`consumer.db.changes`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.changes import apply_changes
from consumer.db.reads import TASK_FIELDS, get_change_by_identity, get_tasks_by_identity
from consumer.db.tables import (
    EVENT_INPUT,
    LONG_OR_STRING_FIELDS,
    ORIGIN_INPUT,
    PLAIN_FIELDS,
    TENANT_INPUT,
)
from consumer.domain import (
    ChangeCommand,
    ChangeOutcome,
    EventIdentity,
    IdSpaceExhaustedError,
    Rejection,
    StartCommand,
    StorageUnavailableError,
    Task,
    UnstorableEventError,
)

# (column, SQL type) of each input field: the batch travels as ONE json parameter (asyncpg
# encodes a JSON text far faster than two dozen arrays) and json_to_recordset unpacks it.
_INPUT: tuple[tuple[str, str], ...] = (
    *EVENT_INPUT,
    ("attached", "json"),
    *ORIGIN_INPUT,
    *TENANT_INPUT,
)
_NAMES = [name for name, _ in _INPUT]
_COLUMN_OF = {"attached": "attached_data_text"}
_INSERT_COLUMNS = [_COLUMN_OF.get(n, n) for n in _NAMES] + ["received_at"]
# Server-set times are kept to the millisecond, the precision the contract renders (so a database
# rebuilt from the created-events log is identical to the original).
_NOW_MS = "date_trunc('milliseconds', now())"
_SELECTED = [
    {"started_at": f"COALESCE(started_at, {_NOW_MS})", "attached": "CAST(attached AS text)"}.get(
        n, n
    )
    for n in _NAMES
] + [_NOW_MS]
_RECORD_TYPE = ", ".join(f"{name} {sql}" for name, sql in _INPUT)

# Built from fixed column names only; every value is a bound parameter. Rows already stored
# (as a start, or as an end or extension change: an identity is unique across all kinds) are
# filtered out before the INSERT so they take no id from the sequence. `LIMIT :count` (the
# batch's own size, so nothing is cut) tells the planner how many rows come in: it reckons 100
# for any json_to_recordset, and for a small batch then hashes the whole tasks table (a scan per
# batch, growing with the table) instead of probing the identity index once per row.
_ADD_OR_GET = text(
    "WITH input AS (SELECT * FROM ROWS FROM ("  # noqa: S608
    f" json_to_recordset(CAST(:rows AS json)) AS ({_RECORD_TYPE})"
    f") WITH ORDINALITY AS i({', '.join(_NAMES)}, ord) LIMIT :count),"
    " fresh AS (SELECT * FROM input i WHERE NOT EXISTS ("
    "  SELECT 1 FROM tasks t"
    "  WHERE t.event_source = i.event_source AND t.event_id = i.event_id)"
    "  AND NOT EXISTS (SELECT 1 FROM task_changes c"
    "  WHERE c.event_source = i.event_source AND c.event_id = i.event_id)),"
    f" inserted AS (INSERT INTO tasks ({', '.join(_INSERT_COLUMNS)})"
    f"  SELECT {', '.join(_SELECTED)} FROM fresh ORDER BY ord"
    "  ON CONFLICT ON CONSTRAINT tasks_event_identity_key DO NOTHING"
    "  RETURNING event_source, event_id, task_id, started_at, received_at)"
    " SELECT event_source, event_id, task_id, started_at, received_at FROM inserted"
)

_RECORD_REJECTIONS = text(
    "INSERT INTO rejected_events (event_source, event_id, service_id, status, code, error,"
    " source_topic, source_partition, source_offset, task_id)"
    " SELECT s, i, sid, st, c, CAST(e AS jsonb), tp, p, o, tid FROM unnest("
    "CAST(:sources AS text[]), CAST(:ids AS text[]), CAST(:service_ids AS bigint[]),"
    " CAST(:statuses AS int[]), CAST(:codes AS text[]), CAST(:errors AS text[]),"
    " CAST(:topics AS text[]), CAST(:partitions AS int[]), CAST(:offsets AS bigint[]),"
    " CAST(:task_ids AS int[]))"
    " AS r(s, i, sid, st, c, e, tp, p, o, tid)"
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


_PLAIN = frozenset(PLAIN_FIELDS)
_ID_OR_NAME = {name: (f"{name}_id", f"{name}_name") for name in LONG_OR_STRING_FIELDS}


def _input_row(command: StartCommand, attached_text: str) -> dict[str, Any]:
    """One json_to_recordset row; absent fields are simply missing (they read as NULL)."""
    row: dict[str, Any] = {}
    for name, value in command.fields.items():  # only the fields sent (this runs per event)
        if name in _PLAIN:
            row[name] = value
        elif name == "timestamp":
            row["started_at"] = value
        elif value is not None:
            id_column, name_column = _ID_OR_NAME[name]
            row[id_column if isinstance(value, int) else name_column] = value
    identity, position = command.identity, command.position
    row["service_id"] = command.service_id
    row["attached"] = orjson.Fragment(attached_text)  # the very text stored and replied
    row["event_source"] = identity.source
    row["event_id"] = identity.id
    row["source_topic"] = position.topic
    row["source_partition"] = position.partition
    row["source_offset"] = position.offset
    if command.tenant is not None:
        row["tenant"] = command.tenant
    if command.group is not None:
        row["tenant_group"] = command.group
    return row


def _new_task(command: StartCommand, attached_text: str, row: Sequence[Any]) -> Task:
    """The task just stored; `row`: (event_source, event_id, task_id, started_at, received_at)."""
    _, _, task_id, started_at, received_at = row
    fields = dict.fromkeys(TASK_FIELDS)
    fields.update(command.fields)
    fields["timestamp"] = started_at
    return Task(
        task_id,
        command.service_id,
        fields,
        attached_text,
        command.identity,
        received_at,
        command.position,
        command.tenant,
        command.group,
    )


class SqlTaskRepository:
    """TaskRepository over one open transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add_or_get(
        self, commands: Sequence[StartCommand]
    ) -> dict[EventIdentity, tuple[Task, bool]]:
        texts = [orjson.dumps(c.attached_data).decode() for c in commands]
        batch = orjson.dumps([_input_row(c, t) for c, t in zip(commands, texts, strict=True)])
        with translate_errors():
            params = {"rows": batch.decode(), "count": len(commands)}
            result = await self._conn.execute(_ADD_OR_GET, params)
            # By position (event_source, event_id, task_id, started_at, received_at): a row's
            # attribute access costs more, and this runs per event.
            rows = {(r[0], r[1]): r for r in result}
        found: dict[EventIdentity, tuple[Task, bool]] = {}
        known: list[EventIdentity] = []
        for command, attached_text in zip(commands, texts, strict=True):
            identity = command.identity
            row = rows.get((identity.source, identity.id))
            if row is not None:
                found[identity] = (_new_task(command, attached_text, row), True)
            else:  # stored before, or by another consumer after our snapshot was taken
                known.append(identity)
        if known:
            stored = await self.get_by_identity(known)
            found.update((identity, (task, False)) for identity, task in stored.items())
            for identity in known:
                if identity not in stored:  # an end or extension identity: its task as it is
                    changed = await self._changed_task(identity)
                    if changed is not None:
                        found[identity] = (changed, False)
        return found

    async def _changed_task(self, identity: EventIdentity) -> Task | None:
        with translate_errors():
            recorded = await get_change_by_identity(self._conn, identity)
        return None if recorded is None else recorded[1]

    async def apply_changes(self, commands: Sequence[ChangeCommand]) -> list[ChangeOutcome]:
        """Apply end and extension commands IN ORDER, in one round trip; one outcome each.

        See `consumer.domain.ChangeStatus` for the outcomes. Nothing is recorded for the
        refused ones (not found, already completed, end before start): the caller records
        their rejections. An identity repeated in the batch answers what its first occurrence
        got (REPLAYED where that one was APPLIED). Raises UnstorableEventError, or
        StorageUnavailableError (retriable: an outage, a deadlock between racing consumers,
        or an identity recorded concurrently for another task).
        """
        with translate_errors():
            return await apply_changes(self._conn, commands)

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
            "task_ids": [r.task_id for r in rejections],
        }
        with translate_errors():
            await self._conn.execute(_RECORD_REJECTIONS, params)
