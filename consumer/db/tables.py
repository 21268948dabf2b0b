"""The tables (SQLAlchemy Core). Alembic migrations create them; this is their description."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

from consumer.domain import TASK_ID_MAX, TASK_ID_MIN

metadata = MetaData()

LONG_OR_STRING_FIELDS = ("task_type", "application_type", "media_type", "resource_type")
"""Business-attribute values: stored as `<name>_id` (a 64-bit id) or `<name>_name` (a name)."""
PLAIN_FIELDS = (
    "state_id",
    "session_id",
    "interaction_id",
    "application_id",
    "resource_id",
    "est_duration",
)
"""The start's other standard fields (not its timestamp): each stored in a column of its name."""


EVENT_INPUT: tuple[tuple[str, str], ...] = (
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
)
"""(column, SQL type) of the task's start-event fields, as batched inserts take them."""
ORIGIN_INPUT: tuple[tuple[str, str], ...] = (
    ("event_source", "text"),
    ("event_id", "text"),
    ("source_topic", "text"),
    ("source_partition", "int"),
    ("source_offset", "bigint"),
)
"""(column, SQL type) of the event identity and the record it came from."""
TENANT_INPUT: tuple[tuple[str, str], ...] = (("tenant", "text"), ("tenant_group", "text"))
"""(column, SQL type) of the caller's tenant and group (multi-tenant mode; NULL otherwise)."""


COMPLETION_WHOLE = (
    "completed_at IS NULL OR (duration_ms IS NOT NULL AND completed_text IS NOT NULL"
    " AND end_event_source IS NOT NULL AND end_event_id IS NOT NULL)"
)
"""A completed task has its duration, its end event and the end event's identity."""


def _long_or_string(name: str) -> list[Column[object]]:
    return [Column(f"{name}_id", BigInteger), Column(f"{name}_name", Text)]


tasks = Table(
    "tasks",
    metadata,
    Column(
        "task_id",
        Integer,
        # ALWAYS: no client picks an id (rebuild restores ids with OVERRIDING SYSTEM VALUE).
        Identity(
            always=True, start=TASK_ID_MIN, minvalue=TASK_ID_MIN, maxvalue=TASK_ID_MAX, cycle=False
        ),
        primary_key=True,
    ),
    Column("service_id", BigInteger, nullable=False),
    Column("state_id", Integer),
    *_long_or_string("task_type"),
    Column("session_id", Text),
    Column("interaction_id", Text),
    *_long_or_string("application_type"),
    Column("application_id", Integer),
    *_long_or_string("resource_type"),
    Column("resource_id", Integer),
    *_long_or_string("media_type"),
    Column("est_duration", Integer),
    Column("started_at", DateTime(timezone=True), nullable=False),
    # The attached data as received: key order and number spelling kept (migration 0004 dropped
    # the JSONB copy nothing read; a query on it would index CAST(attached_data_text AS jsonb)).
    Column("attached_data_text", Text, nullable=False),
    Column("event_source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("source_topic", Text, nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Added by migration 0003 (the lifecycle and tenants), in this order.
    Column("tenant", Text),
    Column("tenant_group", Text),
    Column("completed_at", DateTime(timezone=True)),
    Column("duration_ms", BigInteger),
    *_long_or_string("disposition"),
    Column("disposition_desc", Text),
    Column("completed_text", Text),
    Column("end_event_source", Text),
    Column("end_event_id", Text),
    Column("updated_at", DateTime(timezone=True)),
    UniqueConstraint("event_source", "event_id", name="tasks_event_identity_key"),
    CheckConstraint("service_id >= 1", name="tasks_service_id_positive"),
    *(
        CheckConstraint(f"{name}_id IS NULL OR {name}_name IS NULL", name=f"tasks_{name}_one_of")
        for name in (*LONG_OR_STRING_FIELDS, "disposition")
    ),
    CheckConstraint(COMPLETION_WHOLE, name="tasks_completion_whole"),
)

# Query Tasks reads one service's (and tenant's) tasks in task id order, `LIMIT n` after a
# cursor: each filter has an index in that order, so a page costs O(n) index entries however
# many tasks the table holds (all tasks: a page of active and one of completed ones, merged).
# NULL tenants (single-tenant mode) are found by `tenant IS NULL`.
_SCOPE = (tasks.c.service_id, tasks.c.tenant)
Index("tasks_active_idx", *_SCOPE, tasks.c.task_id, postgresql_where=tasks.c.completed_at.is_(None))
Index(
    "tasks_completed_idx",
    *_SCOPE,
    tasks.c.task_id,
    postgresql_where=tasks.c.completed_at.is_not(None),
)
Index(
    "tasks_state_idx",
    *_SCOPE,
    tasks.c.state_id,
    tasks.c.task_id,
    postgresql_where=tasks.c.state_id.is_not(None),
)
Index(
    "tasks_task_type_id_idx",
    *_SCOPE,
    tasks.c.task_type_id,
    tasks.c.task_id,
    postgresql_where=tasks.c.task_type_id.is_not(None),
)
Index(
    "tasks_task_type_name_idx",
    *_SCOPE,
    tasks.c.task_type_name,
    tasks.c.task_id,
    postgresql_where=tasks.c.task_type_name.is_not(None),
)

rejected_events = Table(
    "rejected_events",
    metadata,
    Column("rejection_id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("service_id", BigInteger),
    Column("status", Integer, nullable=False),
    Column("code", Text, nullable=False),
    Column("error", JSONB, nullable=False),
    Column("source_topic", Text, nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("task_id", Integer),  # added by 0003: the task an end or extension event named
    UniqueConstraint("event_source", "event_id", name="rejected_events_identity_key"),
)

task_changes = Table(
    "task_changes",
    metadata,
    # The identity of the end or extension event: a replay finds it here and changes nothing.
    Column("event_source", Text, primary_key=True),
    Column("event_id", Text, primary_key=True),
    Column("task_id", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("extension", Text),
    Column("value", Text),  # the extension's new value as stored (JSON text)
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint(
        "(kind = 'end' AND extension IS NULL AND value IS NULL)"
        " OR (kind = 'extension' AND extension IS NOT NULL AND value IS NOT NULL)",
        name="task_changes_kind_fields",
    ),
)
"""Changes of existing tasks (migration 0003), keyed by their event identity."""

APPLY_CHANGES_FUNCTION = "apply_task_changes"
"""The PL/pgSQL function (migration 0003) applying a batch of changes in order, in one call."""
