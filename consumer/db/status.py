"""What `ucs-tasks status` reads of the database: the id space and the last task."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.reads import SELECT_LIST, row_to_task
from consumer.domain import TASK_ID_MAX, Task

_IDS = text(
    "SELECT COALESCE(pg_sequence_last_value("
    "CAST(pg_get_serial_sequence('tasks', 'task_id') AS regclass)), 0) AS used,"
    " (SELECT count(*) FROM tasks) AS tasks,"
    " (SELECT count(*) FROM rejected_events) AS rejected"
)
_LAST = text(f"SELECT {SELECT_LIST} FROM tasks ORDER BY task_id DESC LIMIT 1")  # noqa: S608 - fixed columns


class DatabaseStatus(NamedTuple):
    """How much of the id space is used, how many tasks and rejections, the newest task."""

    ids_used: int
    """Ids handed out so far (rolled-back inserts burn theirs too)."""
    ids_left: int
    tasks: int
    rejected: int
    last_task: Task | None


async def read_status(conn: AsyncConnection) -> DatabaseStatus:
    """The database's part of `ucs-tasks status`."""
    row = (await conn.execute(_IDS)).mappings().one()
    last = (await conn.execute(_LAST)).mappings().first()
    used = int(row["used"])
    return DatabaseStatus(
        ids_used=used,
        ids_left=TASK_ID_MAX - used,
        tasks=int(row["tasks"]),
        rejected=int(row["rejected"]),
        last_task=None if last is None else row_to_task(last),
    )
