"""the task lifecycle and tenants: completion, tenant columns, task_changes, Query Tasks indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27

Adds to `tasks` the tenant and group, the completion (end timestamp, duration, disposition, the
end event as stored and its identity) and `updated_at`; `rejected_events.task_id`; the table
`task_changes` (the identity of every applied end or extension event: a replay answers what is
stored); the indexes of Query Tasks (one service's and tenant's tasks in id order, per filter);
and `apply_task_changes(json)` (with its helpers), which applies a batch of changes in order in
one call.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
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

# The input of apply_task_changes: a JSON array of change objects (consumer/db/changes.py
# builds them), each with its place in the batch (`ord`), its round (round k holds the k-th
# change of each task, so the changes of one round touch distinct tasks) and how many times its
# identity came before (`repeat`, 1 the first time).
_INPUT_FUNCTION = """
CREATE FUNCTION apply_task_changes_input(changes json)
RETURNS TABLE (
    ord bigint, round bigint, repeat bigint, kind text, event_source text, event_id text,
    service_id bigint, task_id bigint, tenant text, at text, head json, attached json,
    disposition_id bigint, disposition_name text, disposition_desc text, extension text,
    value json
)
LANGUAGE sql STABLE
AS $fn$
    SELECT i.ord, row_number() OVER (PARTITION BY i.task_id ORDER BY i.ord),
           row_number() OVER (PARTITION BY i.event_source, i.event_id ORDER BY i.ord), i.kind,
           i.event_source, i.event_id, i.service_id, i.task_id, i.tenant, i.at, i.head,
           i.attached, i.disposition_id, i.disposition_name, i.disposition_desc, i.extension,
           i.value
    FROM ROWS FROM (json_to_recordset(changes) AS (
        kind text, event_source text, event_id text, service_id bigint, task_id bigint,
        tenant text, at text, head json, attached json, disposition_id bigint,
        disposition_name text, disposition_desc text, extension text, value json
    )) WITH ORDINALITY AS i(
        kind, event_source, event_id, service_id, task_id, tenant, at, head, attached,
        disposition_id, disposition_name, disposition_desc, extension, value, ord
    )
$fn$
"""

# `doc` (a JSON object's text) with `member` set to `member_json` (JSON text): a present member
# keeps its place, a new one goes at the end; every other value keeps its text (json_each of
# `json` yields each value's own text; keys are written by to_json, as orjson, which wrote the
# stored text, writes them).
_MEMBER_FUNCTION = """
CREATE FUNCTION json_member_replaced(doc text, member text, member_json text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN bool_or(e.key = member) THEN '{' || string_agg(
            CAST(to_json(e.key) AS text) || ':'
                || CASE WHEN e.key = member THEN member_json ELSE CAST(e.value AS text) END,
            ',' ORDER BY e.n) || '}'
        WHEN count(*) = 0 THEN '{' || CAST(to_json(member) AS text) || ':' || member_json || '}'
        ELSE left(rtrim(doc), -1) || ',' || CAST(to_json(member) AS text) || ':' || member_json
            || '}'
    END
    FROM json_each(CAST(doc AS json)) WITH ORDINALITY AS e(key, value, n)
$fn$
"""

# The Task End Event as stored: its standard fields (`head`), the timestamp (always set), then
# its attached data, each part's text as the caller rendered it.
_END_TEXT_FUNCTION = """
CREATE FUNCTION task_end_text(head json, at text, attached json) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT '{' || concat_ws(',',
        NULLIF(substr(CAST(head AS text), 2, length(CAST(head AS text)) - 2), ''),
        '"timestamp":' || CAST(to_json(at) AS text),
        NULLIF(substr(CAST(attached AS text), 2, length(CAST(attached AS text)) - 2), '')
    ) || '}'
$fn$
"""

# One call applies a batch of end and extension changes in record order (one database round
# trip per batch) and returns one row per change: its outcome, the change as recorded, and the
# task after it (JSON of the row without the JSONB copy of the attached data) or the stored
# rejection. Outcomes: applied, replayed (the identity is a recorded change), stored_start /
# stored_rejection (the identity is a stored start / rejection), not_found, already_completed,
# end_before_start.
#
# Set-based, four statements per round whatever its size (changes to distinct tasks commute; a
# task's changes apply in record order, one per round): lock the round's tasks in task id order
# (racing consumers take turns, and what follows sees their latest committed state), decide
# each change with index lookups, record the identities of the applicable ones, update their
# tasks; values travel between the statements in arrays. Each identity at most once per call
# (the caller answers repeats). An identity another transaction records for another task between
# our decision and our insert (a client reusing an identity, racing itself) fails the call as a
# serialization failure: retried, the identity is then a replay.
_APPLY_FUNCTION = """
CREATE FUNCTION apply_task_changes(changes json)
RETURNS TABLE (
    change_ord bigint, outcome text, change_task_id integer, change_kind text,
    change_extension text, change_value text, task_row text, rejection_row text
)
LANGUAGE plpgsql
-- Every join here is an index lookup from the batch's side, the right plan for any batch and
-- any table: say so (no sequential scans, hash or merge joins), and plan each statement once
-- per session (the service's connections force custom plans, which would plan every round
-- again). Without this, a plan made while statistics were stale or the table small hashed
-- whole tables for a round of one change. Never JIT-compile (milliseconds per statement, where
-- a round takes a fraction of one).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET jit = off
AS $fn$
DECLARE
    -- Server-set times to the millisecond, the precision the contract renders.
    now_ms timestamptz := date_trunc('milliseconds', now());
    rounds json[];
    batch json;
    r record;
    -- the round's applicable changes, one array per field
    a_ord bigint[]; a_source text[]; a_id text[]; a_task bigint[]; a_kind text[];
    a_extension text[]; a_value text[]; a_end_at timestamptz[]; a_duration bigint[];
    a_end_text text[]; a_disposition_id bigint[]; a_disposition_name text[];
    a_disposition_desc text[];
    repeats bigint;
    inserted bigint;
BEGIN
    SELECT array_agg(g.items ORDER BY g.round), max(g.repeats) INTO rounds, repeats
      FROM (SELECT i.round, json_agg(i ORDER BY i.ord) AS items, max(i.repeat) AS repeats
              FROM apply_task_changes_input(changes) i GROUP BY i.round) g;
    IF repeats > 1 THEN
        RAISE EXCEPTION 'apply_task_changes: an event identity is given more than once'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR k IN 1 .. COALESCE(array_length(rounds, 1), 0) LOOP
        batch := rounds[k];
        PERFORM 1 FROM tasks x
         WHERE x.task_id = ANY (ARRAY(
             SELECT i.task_id FROM json_to_recordset(batch) AS i(task_id bigint)))
         ORDER BY x.task_id FOR UPDATE;

        a_ord := '{}'; a_source := '{}'; a_id := '{}'; a_task := '{}'; a_kind := '{}';
        a_extension := '{}'; a_value := '{}'; a_end_at := '{}'; a_duration := '{}';
        a_end_text := '{}'; a_disposition_id := '{}'; a_disposition_name := '{}';
        a_disposition_desc := '{}';
        FOR r IN
            SELECT v.*, CASE WHEN v.verdict IN ('applied', 'stored_rejection') THEN NULL
                    ELSE CAST(to_jsonb(v.shown) - 'attached_data' AS text) END AS shown_row
            FROM (
                SELECT i.ord, i.kind, i.event_source, i.event_id, i.task_id, i.extension,
                       CAST(i.value AS text) AS value, i.disposition_id, i.disposition_name,
                       i.disposition_desc, i.head, i.at, i.attached,
                       COALESCE(CAST(i.at AS timestamptz), now_ms) AS end_at,
                       t.started_at, c AS recorded_change, rj AS rejection,
                       CASE
                           WHEN c.event_id IS NOT NULL THEN ct
                           WHEN s0.task_id IS NOT NULL THEN s0
                           ELSE t END AS shown,
                       CASE
                           WHEN c.event_id IS NOT NULL THEN 'replayed'
                           WHEN s0.task_id IS NOT NULL THEN 'stored_start'
                           WHEN rj.rejection_id IS NOT NULL THEN 'stored_rejection'
                           WHEN t.task_id IS NULL THEN 'not_found'
                           WHEN i.kind = 'end' AND t.completed_at IS NOT NULL THEN
                               CASE WHEN t.end_event_source = i.event_source
                                         AND t.end_event_id = i.event_id
                                    -- completed by this end, recorded on the task only
                                    -- (e.g. restored by a rebuild)
                                    THEN 'replayed_end' ELSE 'already_completed' END
                           WHEN i.kind = 'end'
                                AND COALESCE(CAST(i.at AS timestamptz), now_ms) < t.started_at
                               THEN 'end_before_start'
                           ELSE 'applied' END AS verdict
                FROM (SELECT * FROM json_to_recordset(batch) AS i(
                    ord bigint, kind text, event_source text, event_id text, service_id bigint,
                    task_id bigint, tenant text, at text, head json, attached json,
                    disposition_id bigint, disposition_name text, disposition_desc text,
                    extension text, value json)) AS i
                LEFT JOIN task_changes c
                       ON c.event_source = i.event_source AND c.event_id = i.event_id
                LEFT JOIN tasks ct ON ct.task_id = c.task_id
                LEFT JOIN tasks s0
                       ON s0.event_source = i.event_source AND s0.event_id = i.event_id
                LEFT JOIN rejected_events rj
                       ON rj.event_source = i.event_source AND rj.event_id = i.event_id
                -- another service's or another tenant's task is exactly like an unknown one
                LEFT JOIN tasks t ON t.task_id = i.task_id AND t.service_id = i.service_id
                                 AND t.tenant IS NOT DISTINCT FROM i.tenant
            ) AS v
        LOOP
            IF r.verdict = 'applied' THEN
                a_ord := a_ord || r.ord; a_source := a_source || r.event_source;
                a_id := a_id || r.event_id; a_task := a_task || r.task_id;
                a_kind := a_kind || r.kind; a_extension := a_extension || r.extension;
                a_value := a_value || r.value; a_end_at := a_end_at || r.end_at;
                a_duration := a_duration || CAST(
                    (extract(epoch FROM r.end_at) - extract(epoch FROM r.started_at)) * 1000
                    AS bigint);
                a_end_text := a_end_text || CASE WHEN r.kind = 'end' THEN task_end_text(
                    r.head,
                    COALESCE(r.at, to_char(r.end_at AT TIME ZONE 'UTC',
                                           'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
                    r.attached) END;
                a_disposition_id := a_disposition_id || r.disposition_id;
                a_disposition_name := a_disposition_name || r.disposition_name;
                a_disposition_desc := a_disposition_desc || r.disposition_desc;
                CONTINUE;
            END IF;
            change_ord := r.ord; outcome := r.verdict; task_row := r.shown_row;
            change_task_id := NULL; change_kind := NULL; change_extension := NULL;
            change_value := NULL; rejection_row := NULL;
            IF r.verdict = 'replayed' THEN
                change_task_id := (r.recorded_change).task_id;
                change_kind := (r.recorded_change).kind;
                change_extension := (r.recorded_change).extension;
                change_value := (r.recorded_change).value;
            ELSIF r.verdict = 'replayed_end' THEN
                outcome := 'replayed'; change_task_id := r.task_id; change_kind := 'end';
            ELSIF r.verdict = 'stored_rejection' THEN
                rejection_row := CAST(to_jsonb(r.rejection) AS text);
            END IF;
            RETURN NEXT;
        END LOOP;
        CONTINUE WHEN cardinality(a_ord) = 0;

        INSERT INTO task_changes AS x (event_source, event_id, task_id, kind, extension, value)
        SELECT u.source, u.id, u.task, u.kind, u.extension, u.value
          FROM unnest(a_source, a_id, a_task, a_kind, a_extension, a_value)
               AS u(source, id, task, kind, extension, value)
        ON CONFLICT ON CONSTRAINT task_changes_pkey DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted < cardinality(a_ord) THEN
            RAISE EXCEPTION 'apply_task_changes: an event identity was recorded concurrently'
                USING ERRCODE = 'serialization_failure';
        END IF;

        RETURN QUERY
        WITH u AS (
            SELECT * FROM unnest(a_ord, a_task, a_kind, a_source, a_id, a_extension, a_value,
                                 a_end_at, a_duration, a_end_text, a_disposition_id,
                                 a_disposition_name, a_disposition_desc)
                AS u(ord, task, kind, source, id, extension, value, end_at, duration, end_text,
                     disposition_id, disposition_name, disposition_desc)
        ), upd AS (
            UPDATE tasks x SET
                completed_at = CASE WHEN u.kind = 'end' THEN u.end_at ELSE x.completed_at END,
                duration_ms = CASE WHEN u.kind = 'end' THEN u.duration ELSE x.duration_ms END,
                disposition_id = CASE WHEN u.kind = 'end' THEN u.disposition_id
                                      ELSE x.disposition_id END,
                disposition_name = CASE WHEN u.kind = 'end' THEN u.disposition_name
                                        ELSE x.disposition_name END,
                disposition_desc = CASE WHEN u.kind = 'end' THEN u.disposition_desc
                                        ELSE x.disposition_desc END,
                completed_text = CASE WHEN u.kind = 'end' THEN u.end_text
                                      ELSE x.completed_text END,
                end_event_source = CASE WHEN u.kind = 'end' THEN u.source
                                        ELSE x.end_event_source END,
                end_event_id = CASE WHEN u.kind = 'end' THEN u.id ELSE x.end_event_id END,
                attached_data_text = CASE WHEN u.kind = 'extension'
                    THEN json_member_replaced(x.attached_data_text, u.extension, u.value)
                    ELSE x.attached_data_text END,
                attached_data = CASE WHEN u.kind = 'extension'
                    THEN x.attached_data || jsonb_build_object(u.extension, CAST(u.value AS jsonb))
                    ELSE x.attached_data END,
                updated_at = now_ms
            FROM u WHERE x.task_id = u.task
            RETURNING u.ord, u.task, u.kind, u.extension, u.value,
                      CAST(to_jsonb(x) - 'attached_data' AS text) AS task_json
        )
        SELECT upd.ord, 'applied', CAST(upd.task AS integer), upd.kind, upd.extension,
               upd.value, upd.task_json, CAST(NULL AS text)
          FROM upd;
    END LOOP;
END
$fn$
"""

_FUNCTIONS = (
    ("apply_task_changes_input(json)", _INPUT_FUNCTION),
    ("json_member_replaced(text, text, text)", _MEMBER_FUNCTION),
    ("task_end_text(json, text, json)", _END_TEXT_FUNCTION),
    ("apply_task_changes(json)", _APPLY_FUNCTION),
)


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
    for _, definition in _FUNCTIONS:
        op.execute(definition)


def downgrade() -> None:
    for signature, _ in reversed(_FUNCTIONS):
        op.execute(f"DROP FUNCTION {signature}")
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
