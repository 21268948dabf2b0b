"""A change reads the rows it needs and no others, whatever the statistics said when planned.

`apply_task_changes` plans each statement once per session. On a scratch database whose tables
were analyzed while empty (statistics that say "no rows"), a session applies its first changes
while the tables are empty or nearly so, the tables then grow on another connection, and the
same session applies one more end and one more extension: PostgreSQL's own counters of this
transaction (index entries read, table rows scanned) must show a few index
entries read per change, not the thousands recorded since (migration 0006).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from tests import servers

SOURCE = "urn:plans"
SERVICE = 7
GROWN = 3000
"""Tasks, recorded changes and rejections added after the plans were made."""

_START = text(
    "INSERT INTO tasks (service_id, started_at, attached_data_text, event_source, event_id,"
    " source_topic, source_partition, source_offset)"
    " SELECT CAST(:service AS bigint), now() - interval '1 hour', '{}', CAST(:source AS text),"
    " 'start-' || n, 't', 0, n"
    " FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n RETURNING task_id"
)
_CHANGES = text(
    "INSERT INTO task_changes (event_source, event_id, task_id, kind, extension, value)"
    " SELECT CAST(:source AS text), 'change-' || task_id, task_id, 'extension', 'x', '1'"
    " FROM tasks WHERE event_id <> 'start-0'"
)
_REJECTIONS = text(
    "INSERT INTO rejected_events (event_source, event_id, service_id, status, code, error,"
    " source_topic, source_partition, source_offset)"
    " SELECT CAST(:source AS text), 'rejected-' || n, CAST(:service AS bigint), 400, 'invalid',"
    " '{}', 't', 0, n"
    " FROM generate_series(1, CAST(:count AS integer)) AS n"
)
_APPLY = text("SELECT outcome FROM apply_task_changes(CAST(:changes AS json)) ORDER BY change_ord")
_READ = text(
    "SELECT i.relname, pg_stat_get_xact_tuples_returned(i.oid) FROM pg_index x"
    " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
    " WHERE t.relname IN ('tasks', 'task_changes', 'rejected_events')"
)
_SCANNED = text(
    "SELECT sum(seq_tup_read) FROM pg_stat_xact_user_tables"
    " WHERE relname IN ('tasks', 'task_changes', 'rejected_events')"
)


def _end(task_id: int, event_id: str) -> dict[str, Any]:
    return {
        "kind": "end", "event_source": SOURCE, "event_id": event_id, "service_id": SERVICE,
        "task_id": task_id, "head": {}, "attached": {},
    }  # fmt: skip


def _extension(task_id: int, event_id: str) -> dict[str, Any]:
    return {
        "kind": "extension", "extension": "y", "value": 2, "event_source": SOURCE,
        "event_id": event_id, "service_id": SERVICE, "task_id": task_id,
    }  # fmt: skip


async def _apply(conn: AsyncConnection, *changes: dict[str, Any]) -> list[str]:
    result = await conn.execute(_APPLY, {"changes": orjson.dumps(changes).decode()})
    return list(result.scalars())


async def test_changes_probe_their_rows_when_planned_on_tables_analyzed_empty(
    postgres_server_url: str,
) -> None:
    database = await servers.create_session_database(postgres_server_url)
    if not database.created:
        pytest.skip("the server does not let this role create a scratch database")
    engine = build_engine(database.url)
    try:
        await asyncio.to_thread(upgrade, database.url)
        async with engine.connect() as other, engine.connect() as session:
            for table in ("tasks", "task_changes", "rejected_events"):
                await other.execute(text(f"ANALYZE {table}"))
            await other.commit()
            # The session plans while the tables are (nearly) empty: an end of an unknown task,
            # then one task's start and end (the statements that record and update, too).
            assert await _apply(session, _end(1, "early-unknown")) == ["not_found"]
            await session.commit()
            [first] = (await other.execute(_START, _grown(0, 0))).scalars()
            await other.commit()
            assert await _apply(session, _end(first, "early-end")) == ["applied"]
            await session.commit()

            # The tables grow; nothing analyzes them.
            tasks = list((await other.execute(_START, _grown(1, GROWN))).scalars())
            await other.execute(_CHANGES, {"source": SOURCE})
            await other.execute(_REJECTIONS, {"source": SOURCE, "service": SERVICE, "count": GROWN})
            await other.commit()

            outcomes = await _apply(
                session,
                _end(tasks[-1], "late-end"),
                _extension(tasks[-2], "late-extension"),
                _extension(tasks[-3], "change-" + str(tasks[-3])),  # a replay
                _end(tasks[-4], "rejected-5"),  # a stored rejection's identity
            )
            assert outcomes == ["applied", "applied", "replayed", "stored_rejection"]
            read: dict[str, int] = dict((await session.execute(_READ)).all())
            scanned = await session.scalar(_SCANNED)
            await session.rollback()
    finally:
        await engine.dispose()
        await servers.drop_session_database(database)
    assert scanned == 0
    # Per index, a few entries per change (a probe each, and the lock's and the update's: 14 of
    # tasks_pkey for these four), never a pass over the thousands of rows added since the plans
    # were made (0005's function read 3,001 entries of task_changes_pkey here).
    assert {"tasks_pkey", "task_changes_pkey", "rejected_events_identity_key"} <= set(read)
    assert max(read.values()) <= 5 * 4, read


def _grown(first: int, last: int) -> dict[str, Any]:
    return {"service": SERVICE, "source": SOURCE, "first": first, "last": last}
