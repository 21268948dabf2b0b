"""every lookup of apply_task_changes one index probe per change, whatever the statistics say

`apply_task_changes` decides each change from five lookups: the change's identity among the
recorded changes (and that change's task), among the stored starts and among the stored
rejections, and the task it names. 0003 wrote them as LEFT JOINs, and the function plans each
statement once per session (`force_generic_plan`). Planned while a table is empty and its
statistics say so (an `ANALYZE` or `vacuumdb -Z` on a new database, before any change is
recorded), PostgreSQL judges a pass over the whole table cheaper than a probe per change:
`task_changes` (and `tasks`, when it was empty too) was read in full, then filtered against every
change of the batch, and that plan stayed for the session's life while the table grew
(bench/README.md, "session 9", and bench/stale_stats.py: end batches of 2,000 grew from 166 ms to
7.9 s over 20,000 tasks, and an end alone cost 65 ms of the database's CPU).

Each lookup is now a LATERAL subquery with `LIMIT 1` (a key or a unique identity: at most one row
anyway). The planner cannot merge such a subquery into the join, so its only plan is what the
function means: one index probe per change, made with that change's values. Nothing else in the
function changes: the same rows are found, and the same outcomes and rows are returned.

Downgrading restores 0004's function.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

from consumer.migrations.earlier import revision_module

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _function_of_0004() -> str:
    """0004's `apply_task_changes`, as a CREATE OR REPLACE (built there from 0003's text)."""
    module = revision_module("0004_attached_data_once.py")
    return str(module._without_copy(module._lifecycle_function()))


_JOINED = """\
                       t.started_at, c AS recorded_change, rj AS rejection,
                       CASE
                           WHEN c.event_id IS NOT NULL THEN ct
                           WHEN s0.task_id IS NOT NULL THEN s0
                           ELSE t END AS shown,
"""
_PROBED = """\
                       t.started_at, c.found AS recorded_change, rj.found AS rejection,
                       CASE
                           WHEN c.event_id IS NOT NULL THEN ct.found
                           WHEN s0.task_id IS NOT NULL THEN s0.found
                           ELSE t.found END AS shown,
"""

_JOINS_FROM = "                LEFT JOIN task_changes c\n"
_JOINS_TO = "            ) AS v\n"
"""Where the decision's five joins start, and the line after them (0003's text)."""
# `found` is the whole row (its table's type, as the joins gave it); the other columns are what
# the decision reads. LIMIT 1 keeps each subquery a probe of its own (see the docstring).
_PROBES = """\
                LEFT JOIN LATERAL (
                    SELECT x AS found, x.event_id, x.task_id FROM task_changes x
                     WHERE x.event_source = i.event_source AND x.event_id = i.event_id
                     LIMIT 1) AS c ON true
                LEFT JOIN LATERAL (
                    SELECT x AS found FROM tasks x WHERE x.task_id = c.task_id LIMIT 1
                ) AS ct ON true
                LEFT JOIN LATERAL (
                    SELECT x AS found, x.task_id FROM tasks x
                     WHERE x.event_source = i.event_source AND x.event_id = i.event_id
                     LIMIT 1) AS s0 ON true
                LEFT JOIN LATERAL (
                    SELECT x AS found, x.rejection_id FROM rejected_events x
                     WHERE x.event_source = i.event_source AND x.event_id = i.event_id
                     LIMIT 1) AS rj ON true
                -- another service's or another tenant's task is exactly like an unknown one
                LEFT JOIN LATERAL (
                    SELECT x AS found, x.task_id, x.started_at, x.completed_at,
                           x.end_event_source, x.end_event_id
                      FROM tasks x
                     WHERE x.task_id = i.task_id AND x.service_id = i.service_id
                       AND x.tenant IS NOT DISTINCT FROM i.tenant
                     LIMIT 1) AS t ON true
"""


def _probing(function: str) -> str:
    start = function.find(_JOINS_FROM)
    end = function.find(_JOINS_TO, start)
    joins = function[start:end]
    edits = function.count(_JOINED) == 1 and function.count(_JOINS_FROM) == 1 and end > start
    if not edits or joins.count("LEFT JOIN ") != 5 or "LATERAL" in joins:
        raise RuntimeError("0004's apply_task_changes is not the text this migration edits")
    return function.replace(_JOINED, _PROBED).replace(joins, _PROBES)


def upgrade() -> None:
    op.execute(_probing(_function_of_0004()))


def downgrade() -> None:
    op.execute(_function_of_0004())
