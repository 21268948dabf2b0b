"""Query Tasks: one service's (and tenant's) tasks, filtered, in task id order, a page at a time.

Every filter is served by an index in task id order (migrations 0003 and 0005), so a page reads
about `limit` index entries however many tasks the table holds (bench/query_plans.py shows the
plans): the partial indexes `(service_id, tenant, task_id)` of active and of completed tasks
(all tasks: a page of each, merged), `(service_id, tenant, state_id, task_id)` for a state, the
type indexes for task types. A list of task types is read one type at a time (each branch an
index range in id order, at most `limit` rows) and the branches merged: a plain `task_type_id =
ANY(...)` would read every task of those types and sort them. Filters together walk one of
these indexes and check the others on the way: the cost of a page then grows with how rare the
matches are in that walk, not with the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from consumer.db.reads import SELECT_LIST, row_to_task
from consumer.domain import TASK_ID_MAX, Task

QUERY_LIMIT_DEFAULT: Final = 100
"""Tasks per page when the caller names no limit."""
QUERY_LIMIT_MAX: Final = 1000
"""The largest page."""


class TaskState(StrEnum):
    """Which tasks a query lists (the three Query Tasks paths)."""

    ALL = "all"
    ACTIVE = "active"
    """Not completed yet."""
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """What Query Tasks asks for; invalid values are a ValueError naming the field."""

    service_id: int
    tenant: str | None = None
    """The caller's tenant; None (single-tenant mode) matches tasks stored without one."""
    state: TaskState = TaskState.ALL
    state_id: int | None = None
    task_types: tuple[int | str, ...] = ()
    """Task types to match: an int matches a type id, a str a type name (any of them)."""
    limit: int = QUERY_LIMIT_DEFAULT
    after: int | None = None
    """The last task id of the previous page: only tasks with a greater id are listed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", TaskState(self.state))
        if not 1 <= self.limit <= QUERY_LIMIT_MAX:
            raise ValueError(f"limit must be 1 .. {QUERY_LIMIT_MAX}, got {self.limit}")
        if self.after is not None and not 0 <= self.after <= TASK_ID_MAX:
            raise ValueError(f"after must be a task id 0 .. {TASK_ID_MAX}, got {self.after}")
        object.__setattr__(self, "task_types", tuple(self.task_types))


_COMPLETION = {
    TaskState.ACTIVE: "completed_at IS NULL",
    TaskState.COMPLETED: "completed_at IS NOT NULL",
}
"""The condition of each state but ALL (whose tasks are the active and the completed ones)."""


def _conditions(query: TaskQuery) -> list[str]:
    conditions = ["service_id = :service_id"]
    conditions.append("tenant IS NULL" if query.tenant is None else "tenant = :tenant")
    if query.state in _COMPLETION:
        conditions.append(_COMPLETION[query.state])
    if query.state_id is not None:
        # Active tasks (the ones in flight) are few next to the completed history, and the
        # newest: walked in the order of the state index, a state's active tasks come after
        # all of its completed ones, so an active query filters on the state instead (`+ 0`
        # keeps the planner off the state index): its cost then follows the active tasks,
        # not the history.
        state = "state_id + 0" if query.state is TaskState.ACTIVE else "state_id"
        conditions.append(f"{state} = :state_id")
    if query.after is not None:
        conditions.append("task_id > :after")
    return conditions


# `ORDER BY tenant, task_id` is task id order (the WHERE clause fixes the tenant) written so
# that the planner sees the indexes' order in it: `tenant IS NULL` (single-tenant mode), unlike
# `tenant = :tenant`, does not make the column a constant for ordering, and `ORDER BY task_id`
# alone would then read every matching entry of `(service_id, tenant, task_id)` and sort them.
def _page(where: list[str]) -> str:
    conditions = " AND ".join(where)
    return (
        f"SELECT {SELECT_LIST} FROM tasks WHERE {conditions} ORDER BY tenant, task_id LIMIT :limit"  # noqa: S608 - fixed text, bound values
    )


def _per_type(where: list[str], column: str, values: str, sql_type: str) -> str:
    page = _page([*where, f"{column} = v.value"])
    return (
        f"SELECT p.* FROM unnest(CAST(:{values} AS {sql_type}[])) AS v(value)"  # noqa: S608 - fixed text, bound values
        f" CROSS JOIN LATERAL ({page}) AS p"
    )


def query_sql(query: TaskQuery) -> tuple[str, dict[str, Any]]:
    """The statement and parameters of `query` (also used by the query-plan benchmark)."""
    params: dict[str, Any] = {"service_id": query.service_id, "limit": query.limit}
    for name in ("tenant", "state_id", "after"):
        if getattr(query, name) is not None:
            params[name] = getattr(query, name)
    where = _conditions(query)
    # Each value once: a repeated one would list its tasks twice.
    ids = list(dict.fromkeys(t for t in query.task_types if isinstance(t, int)))
    names = list(dict.fromkeys(t for t in query.task_types if isinstance(t, str)))
    if ids:
        params["type_ids"] = ids
    if names:
        params["type_names"] = names
    if not ids and not names:
        if query.state is not TaskState.ALL or query.state_id is not None:
            return _page(where), params
        # No index holds all of a service's tasks (every start would pay for one more): the
        # active and the completed ones are two index ranges in the page's order, merged.
        halves = (f"({_page([*where, completed])})" for completed in _COMPLETION.values())
        union = " UNION ALL ".join(halves)
        return f"SELECT * FROM ({union}) AS q ORDER BY tenant, task_id LIMIT :limit", params  # noqa: S608 - fixed text, bound values
    if query.state is TaskState.ACTIVE:  # as for a state: walk the active tasks, filter types
        types = [
            *(["task_type_id + 0 = ANY(CAST(:type_ids AS bigint[]))"] if ids else []),
            *(["task_type_name || '' = ANY(CAST(:type_names AS text[]))"] if names else []),
        ]
        return _page([*where, f"({' OR '.join(types)})"]), params
    branches = []
    if ids:
        branches.append(_per_type(where, "task_type_id", "type_ids", "bigint"))
    if names:
        branches.append(_per_type(where, "task_type_name", "type_names", "text"))
    union = " UNION ALL ".join(branches)
    return f"SELECT * FROM ({union}) AS q ORDER BY task_id LIMIT :limit", params  # noqa: S608 - fixed text, bound values


async def query_tasks(conn: AsyncConnection, query: TaskQuery) -> list[Task]:
    """One page of the tasks `query` matches, in task id order."""
    statement, params = query_sql(query)
    rows = (await conn.execute(text(statement), params)).mappings().all()
    return [row_to_task(row) for row in rows]
