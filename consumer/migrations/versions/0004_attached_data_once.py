"""attached data stored once: the JSONB copy beside the verbatim text is dropped

Every read renders a task from `attached_data_text` (key order and number spelling kept), and
no query or index ever used the `attached_data` JSONB copy; yet every start paid for it: its
JSON parsed again into JSONB and the attached data written twice (bench/README.md, "session 8":
~4 us of PostgreSQL CPU per start, a fifth of the database's work). `apply_task_changes` is
redefined without the copy: an extension update replaces the member in the text, as it did.
A query on attached data would index an expression of the text (`CAST(attached_data_text AS
jsonb)`) rather than keep a second copy of every task's data.

Downgrading adds the column back, filled from the text, and restores 0003's function; where
the consumer runs as a role of its own (docs/least-privilege.sql), grant it INSERT and UPDATE on
the column again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from consumer.migrations.earlier import revision_module

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_CREATE = "CREATE FUNCTION apply_task_changes("


def _lifecycle_function() -> str:
    """0003's `apply_task_changes`, as a CREATE OR REPLACE (this migration edits it rather than
    repeat its 150 lines)."""
    function = str(revision_module("0003_lifecycle.py")._APPLY_FUNCTION)
    if function.count(_CREATE) != 1:
        raise RuntimeError("0003's apply_task_changes is not the text this migration edits")
    return function.replace(_CREATE, "CREATE OR REPLACE FUNCTION apply_task_changes(")


_COPY_UPDATED = """\
                attached_data = CASE WHEN u.kind = 'extension'
                    THEN x.attached_data || jsonb_build_object(u.extension, CAST(u.value AS jsonb))
                    ELSE x.attached_data END,
"""
_COPY_LEFT_OUT = " - 'attached_data'"
"""How 0003's function kept the copy out of the task rows it returns."""


def _without_copy(function: str) -> str:
    edited = function.replace(_COPY_UPDATED, "").replace(_COPY_LEFT_OUT, "")
    if _COPY_UPDATED in function and function.count(_COPY_LEFT_OUT) == 2:
        return edited
    raise RuntimeError("0003's apply_task_changes is not the text this migration edits")


def upgrade() -> None:
    op.execute(_without_copy(_lifecycle_function()))
    op.drop_column("tasks", "attached_data")


def downgrade() -> None:
    op.add_column("tasks", sa.Column("attached_data", JSONB))
    op.execute("UPDATE tasks SET attached_data = CAST(attached_data_text AS jsonb)")
    op.alter_column("tasks", "attached_data", nullable=False)
    op.execute(_lifecycle_function())
