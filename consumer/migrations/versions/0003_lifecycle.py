"""the task lifecycle and tenants: completion, tenant columns, task_changes, Query Tasks indexes

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-27

Adds to `tasks` the tenant and group, the completion (end timestamp, duration, disposition, the
end event as stored and its identity) and `updated_at`; `rejected_events.task_id`; the table
`task_changes` (the identity of every applied end or extension event: a replay answers what is
stored); the indexes of Query Tasks (one service's and tenant's tasks in id order, per filter);
and `apply_task_changes(json)`, which applies a batch of changes in order in one call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCOPE = ["service_id", "tenant"]
_INDEXES: tuple[tuple[str, list[str], str | None], ...] = (
    ("tasks_scope_idx", [*_SCOPE, "task_id"], None),
    ("tasks_active_idx", [*_SCOPE, "task_id"], "completed_at IS NULL"),
    ("tasks_completed_idx", [*_SCOPE, "task_id"], "completed_at IS NOT NULL"),
    ("tasks_state_idx", [*_SCOPE, "state_id", "task_id"], "state_id IS NOT NULL"),
    ("tasks_task_type_id_idx", [*_SCOPE, "task_type_id", "task_id"], "task_type_id IS NOT NULL"),
    (
        "tasks_task_type_name_idx",
        [*_SCOPE, "task_type_name", "task_id"],
        "task_type_name IS NOT NULL",
    ),
)

# One call applies a batch of end and extension changes IN ORDER (one database round trip per
# batch) and returns one row per change: its outcome, the change as recorded, and the task after
# it (JSON of the row without the JSONB copy of the attached data) or the stored rejection.
# Input: a JSON array of objects (see consumer/db/changes.py). Outcomes: applied, replayed (the
# identity is a recorded change), stored_start / stored_rejection (the identity is a stored
# start / rejection), not_found, already_completed, end_before_start.
_APPLY_TASK_CHANGES = r"""
CREATE FUNCTION apply_task_changes(changes json)
RETURNS TABLE (
    change_ord bigint, outcome text, change_task_id integer, change_kind text,
    change_extension text, change_value text, task_row text, rejection_row text
)
LANGUAGE plpgsql
AS $fn$
DECLARE
    c record;
    t tasks%ROWTYPE;
    s task_changes%ROWTYPE;
    -- Server-set times to the millisecond, the precision the contract renders.
    now_ms timestamptz := date_trunc('milliseconds', now());
    end_at timestamptz;
    head text;
    attached text;
    new_text text;
    has_key boolean;
BEGIN
    FOR c IN
        SELECT * FROM ROWS FROM (json_to_recordset(changes) AS (
            kind text, event_source text, event_id text, service_id bigint, task_id bigint,
            tenant text, at text, head json, attached json, disposition_id bigint,
            disposition_name text, disposition_desc text, extension text, value json
        )) WITH ORDINALITY AS i(
            kind, event_source, event_id, service_id, task_id, tenant, at, head, attached,
            disposition_id, disposition_name, disposition_desc, extension, value, ord
        )
        ORDER BY ord
    LOOP
        change_ord := c.ord;
        outcome := NULL; change_task_id := NULL; change_kind := NULL; change_extension := NULL;
        change_value := NULL; task_row := NULL; rejection_row := NULL;
        t := NULL; s := NULL;
        <<decide>>
        BEGIN
            -- A stored identity answers what is stored for it, whatever its kind.
            SELECT * INTO s FROM task_changes x
             WHERE x.event_source = c.event_source AND x.event_id = c.event_id;
            IF FOUND THEN outcome := 'replayed'; EXIT decide; END IF;
            SELECT * INTO t FROM tasks x
             WHERE x.event_source = c.event_source AND x.event_id = c.event_id;
            IF FOUND THEN outcome := 'stored_start'; EXIT decide; END IF;
            SELECT CAST(to_jsonb(x) AS text) INTO rejection_row FROM rejected_events x
             WHERE x.event_source = c.event_source AND x.event_id = c.event_id;
            IF FOUND THEN outcome := 'stored_rejection'; EXIT decide; END IF;

            -- The task, locked until commit: racing consumers change it one after the other.
            -- Another service's or another tenant's task is exactly like an unknown one.
            SELECT * INTO t FROM tasks x WHERE x.task_id = c.task_id FOR UPDATE;
            IF NOT FOUND OR t.service_id <> c.service_id
               OR t.tenant IS DISTINCT FROM c.tenant THEN
                t := NULL; outcome := 'not_found'; EXIT decide;
            END IF;
            IF c.kind = 'end' THEN
                IF t.completed_at IS NOT NULL THEN
                    IF t.end_event_source = c.event_source AND t.end_event_id = c.event_id THEN
                        -- completed by this very event, committed while we waited for the lock
                        SELECT * INTO s FROM task_changes x
                         WHERE x.event_source = c.event_source AND x.event_id = c.event_id;
                        outcome := 'replayed';
                    ELSE
                        outcome := 'already_completed';
                    END IF;
                    EXIT decide;
                END IF;
                end_at := COALESCE(CAST(c.at AS timestamptz), now_ms);
                IF end_at < t.started_at THEN outcome := 'end_before_start'; EXIT decide; END IF;
            END IF;

            -- Claim the identity: if a racing consumer committed it first, theirs stands.
            INSERT INTO task_changes AS x (event_source, event_id, task_id, kind, extension, value)
            VALUES (c.event_source, c.event_id, t.task_id, c.kind, c.extension,
                    CAST(c.value AS text))
            ON CONFLICT ON CONSTRAINT task_changes_pkey DO NOTHING
            RETURNING * INTO s;
            IF NOT FOUND THEN
                SELECT * INTO s FROM task_changes x
                 WHERE x.event_source = c.event_source AND x.event_id = c.event_id;
                t := NULL; outcome := 'replayed'; EXIT decide;
            END IF;
            outcome := 'applied';

            IF c.kind = 'end' THEN
                -- The end event as stored: its standard fields, the timestamp (always set),
                -- then its attached data, each part's text as the caller rendered it.
                head := substr(CAST(c.head AS text), 2, length(CAST(c.head AS text)) - 2);
                attached := substr(CAST(c.attached AS text), 2,
                                   length(CAST(c.attached AS text)) - 2);
                UPDATE tasks x SET
                    completed_at = end_at,
                    duration_ms = CAST(
                        (extract(epoch FROM end_at) - extract(epoch FROM x.started_at)) * 1000
                        AS bigint),
                    disposition_id = c.disposition_id,
                    disposition_name = c.disposition_name,
                    disposition_desc = c.disposition_desc,
                    completed_text = '{' || concat_ws(',', NULLIF(head, ''),
                        '"timestamp":' || CAST(to_json(COALESCE(c.at, to_char(
                            end_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))) AS text),
                        NULLIF(attached, '')) || '}',
                    end_event_source = c.event_source,
                    end_event_id = c.event_id,
                    updated_at = now_ms
                WHERE x.task_id = t.task_id
                RETURNING * INTO t;
            ELSE
                -- Replace one key's whole value (or add it at the end); every other key keeps
                -- its place and its text (json_each of `json` yields each value's own text,
                -- and to_json writes a key as orjson, which wrote the stored text, does).
                SELECT '{' || string_agg(
                           CAST(to_json(e.key) AS text) || ':' || CASE WHEN e.key = c.extension
                               THEN CAST(c.value AS text) ELSE CAST(e.value AS text) END,
                           ',' ORDER BY e.n) || '}',
                       COALESCE(bool_or(e.key = c.extension), false)
                  INTO new_text, has_key
                  FROM json_each(CAST(t.attached_data_text AS json)) WITH ORDINALITY
                       AS e(key, value, n);
                IF NOT has_key THEN
                    new_text := COALESCE(left(new_text, -1) || ',', '{')
                        || CAST(to_json(c.extension) AS text) || ':' || CAST(c.value AS text)
                        || '}';
                END IF;
                UPDATE tasks x SET
                    attached_data_text = new_text,
                    attached_data = x.attached_data
                        || jsonb_build_object(c.extension, CAST(c.value AS jsonb)),
                    updated_at = now_ms
                WHERE x.task_id = t.task_id
                RETURNING * INTO t;
            END IF;
        END decide;

        IF outcome IN ('applied', 'replayed') AND s.event_id IS NOT NULL THEN
            change_task_id := s.task_id; change_kind := s.kind;
            change_extension := s.extension; change_value := s.value;
            IF outcome = 'replayed' THEN
                SELECT * INTO t FROM tasks x WHERE x.task_id = s.task_id;
            END IF;
        ELSIF outcome = 'replayed' THEN
            -- completed by this end event, recorded on the task only (e.g. restored by rebuild)
            change_task_id := t.task_id; change_kind := 'end';
        END IF;
        IF t.task_id IS NOT NULL THEN
            task_row := CAST(to_jsonb(t) - 'attached_data' AS text);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$
"""


def upgrade() -> None:
    op.add_column("tasks", sa.Column("tenant", sa.Text))
    op.add_column("tasks", sa.Column("tenant_group", sa.Text))
    op.add_column("tasks", sa.Column("completed_at", sa.DateTime(timezone=True)))
    op.add_column("tasks", sa.Column("duration_ms", sa.BigInteger))
    op.add_column("tasks", sa.Column("disposition_id", sa.BigInteger))
    op.add_column("tasks", sa.Column("disposition_name", sa.Text))
    op.add_column("tasks", sa.Column("disposition_desc", sa.Text))
    op.add_column("tasks", sa.Column("completed_text", sa.Text))
    op.add_column("tasks", sa.Column("end_event_source", sa.Text))
    op.add_column("tasks", sa.Column("end_event_id", sa.Text))
    op.add_column("tasks", sa.Column("updated_at", sa.DateTime(timezone=True)))
    op.create_check_constraint(
        "tasks_disposition_one_of", "tasks", "disposition_id IS NULL OR disposition_name IS NULL"
    )
    op.create_check_constraint(
        "tasks_completion_whole",
        "tasks",
        "completed_at IS NULL OR (duration_ms IS NOT NULL AND completed_text IS NOT NULL"
        " AND end_event_source IS NOT NULL AND end_event_id IS NOT NULL)",
    )
    op.add_column("rejected_events", sa.Column("task_id", sa.Integer))
    op.create_table(
        "task_changes",
        sa.Column("event_source", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("task_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("extension", sa.Text),
        sa.Column("value", sa.Text),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("event_source", "event_id", name="task_changes_pkey"),
        sa.CheckConstraint(
            "(kind = 'end' AND extension IS NULL AND value IS NULL)"
            " OR (kind = 'extension' AND extension IS NOT NULL AND value IS NOT NULL)",
            name="task_changes_kind_fields",
        ),
    )
    # tasks_scope_idx leads with the same column and serves what this one did.
    op.drop_index("tasks_service_id_idx", "tasks")
    for name, columns, where in _INDEXES:
        op.create_index(
            name, "tasks", columns, postgresql_where=None if where is None else sa.text(where)
        )
    op.execute(_APPLY_TASK_CHANGES)


def downgrade() -> None:
    op.execute("DROP FUNCTION apply_task_changes(json)")
    for name, _, _ in reversed(_INDEXES):
        op.drop_index(name, "tasks")
    op.create_index("tasks_service_id_idx", "tasks", ["service_id", "task_id"])
    op.drop_table("task_changes")
    op.drop_column("rejected_events", "task_id")
    op.drop_constraint("tasks_completion_whole", "tasks", type_="check")
    op.drop_constraint("tasks_disposition_one_of", "tasks", type_="check")
    for column in (
        "updated_at",
        "end_event_id",
        "end_event_source",
        "completed_text",
        "disposition_desc",
        "disposition_name",
        "disposition_id",
        "duration_ms",
        "completed_at",
        "tenant_group",
        "tenant",
    ):
        op.drop_column("tasks", column)
