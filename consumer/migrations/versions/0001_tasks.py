"""tasks and rejected_events

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LONG_OR_STRING = ("task_type", "application_type", "resource_type", "media_type")


def _long_or_string(name: str) -> list[sa.Column[object]]:
    return [sa.Column(f"{name}_id", sa.BigInteger), sa.Column(f"{name}_name", sa.Text)]


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column(
            "task_id",
            sa.Integer,
            sa.Identity(always=False, start=1, minvalue=1, maxvalue=2147483647, cycle=False),
            primary_key=True,
        ),
        sa.Column("service_id", sa.BigInteger, nullable=False),
        sa.Column("state_id", sa.Integer),
        *_long_or_string("task_type"),
        sa.Column("session_id", sa.Text),
        sa.Column("interaction_id", sa.Text),
        *_long_or_string("application_type"),
        sa.Column("application_id", sa.Integer),
        *_long_or_string("resource_type"),
        sa.Column("resource_id", sa.Integer),
        *_long_or_string("media_type"),
        sa.Column("est_duration", sa.Integer),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attached_data", JSONB, nullable=False),
        sa.Column("attached_data_text", sa.Text, nullable=False),
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("event_source", "event_id", name="tasks_event_identity_key"),
        sa.CheckConstraint("service_id >= 1", name="tasks_service_id_positive"),
        *(
            sa.CheckConstraint(
                f"{name}_id IS NULL OR {name}_name IS NULL", name=f"tasks_{name}_one_of"
            )
            for name in _LONG_OR_STRING
        ),
    )
    op.create_index("tasks_service_id_idx", "tasks", ["service_id", "task_id"])
    op.create_table(
        "rejected_events",
        sa.Column("rejection_id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("service_id", sa.BigInteger),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("error", JSONB, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("event_source", "event_id", name="rejected_events_identity_key"),
    )


def downgrade() -> None:
    op.drop_table("rejected_events")
    op.drop_table("tasks")
