"""one index fewer per task: Query Tasks lists all tasks from the active and completed indexes

`tasks_scope_idx (service_id, tenant, task_id)` served only the unfiltered Query Tasks, which
the partial indexes of active and of completed tasks (same columns) now serve together: a page
of each, merged in id order (consumer/db/query.py). Every start and every completion wrote an
entry into it (bench/README.md, "session 8").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("tasks_scope_idx", "tasks")


def downgrade() -> None:
    op.create_index("tasks_scope_idx", "tasks", ["service_id", "tenant", "task_id"])
