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
    # JSONB for queries and indexes; the text keeps key order and number spelling for reads.
    Column("attached_data", JSONB, nullable=False),
    Column("attached_data_text", Text, nullable=False),
    Column("event_source", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("source_topic", Text, nullable=False),
    Column("source_partition", Integer, nullable=False),
    Column("source_offset", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("event_source", "event_id", name="tasks_event_identity_key"),
    CheckConstraint("service_id >= 1", name="tasks_service_id_positive"),
    *(
        CheckConstraint(f"{name}_id IS NULL OR {name}_name IS NULL", name=f"tasks_{name}_one_of")
        for name in LONG_OR_STRING_FIELDS
    ),
)

Index("tasks_service_id_idx", tasks.c.service_id, tasks.c.task_id)

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
    UniqueConstraint("event_source", "event_id", name="rejected_events_identity_key"),
)
