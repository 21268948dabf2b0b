"""apply_task_changes parses its batch's JSON once

`apply_task_changes(changes json)` parsed the batch three times. `apply_task_changes_input`
parses it into rows (with each change's round). The function then wrote each round back to JSON
(`json_agg`), and parsed that JSON twice per round: once for the task ids it locks, once for
the decision. Of a batch of 2,000 ends, the parsing and re-encoding took about half of the
input's handling (bench/README.md, consumer.py, "session 10": 47-52 ms against 22-23 ms
without them).

The rows are now kept as they were parsed: one array of `task_change_input` values, ordered
by round and then by position in the batch, and the number of changes in each round. Each
round is a slice of that array, read with `unnest` by the lock and by the decision. The same
rows are found, and the same outcomes and rows are returned: each change's `value`, `head` and
`attached` are the same `json` values (their text as given) that the JSON round trip passed on.

Downgrading restores 0006's function and drops the type. Where the service runs with roles of
its own (docs/least-privilege.sql), the operator role owns the type as it owns the functions:
the script gives it the type, and a migration the operator runs creates it as its own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

from consumer.migrations.earlier import revision_module

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _function_of_0006() -> str:
    """0006's `apply_task_changes`, as a CREATE OR REPLACE (built there from 0004's text)."""
    module = revision_module("0006_lookups_per_change.py")
    return str(module._probing(module._function_of_0004()))


_TYPE = """
CREATE TYPE task_change_input AS (
    ord bigint, round bigint, kind text, event_source text, event_id text, service_id bigint,
    task_id bigint, tenant text, at text, head json, attached json, disposition_id bigint,
    disposition_name text, disposition_desc text, extension text, value json
)
"""
"""One change of a batch as `apply_task_changes_input` parsed it (its repeat count aside)."""

# (0006's text, this migration's text): each must be found exactly once.
_EDITS = (
    (
        """\
    rounds json[];
    batch json;
""",
        """\
    -- the batch's changes as parsed, by round then position, and each round's size
    inputs task_change_input[];
    sizes bigint[];
    batch task_change_input[];
    lo integer := 1;
""",
    ),
    (
        """\
    SELECT array_agg(g.items ORDER BY g.round), max(g.repeats) INTO rounds, repeats
      FROM (SELECT i.round, json_agg(i ORDER BY i.ord) AS items, max(i.repeat) AS repeats
              FROM apply_task_changes_input(changes) i GROUP BY i.round) g;
""",
        """\
    SELECT array_agg(CAST(ROW(i.ord, i.round, i.kind, i.event_source, i.event_id,
                              i.service_id, i.task_id, i.tenant, i.at, i.head, i.attached,
                              i.disposition_id, i.disposition_name, i.disposition_desc,
                              i.extension, i.value) AS task_change_input)
                     ORDER BY i.round, i.ord),
           max(i.repeat)
      INTO inputs, repeats
      FROM apply_task_changes_input(changes) i;
    SELECT array_agg(g.size ORDER BY g.round) INTO sizes
      FROM (SELECT x.round, count(*) AS size FROM unnest(inputs) x GROUP BY x.round) g;
""",
    ),
    (
        """\
    FOR k IN 1 .. COALESCE(array_length(rounds, 1), 0) LOOP
        batch := rounds[k];
""",
        """\
    FOR k IN 1 .. COALESCE(array_length(sizes, 1), 0) LOOP
        -- rounds are numbered 1, 2, ... with no gap: round k is the k-th slice
        batch := inputs[lo : lo + sizes[k] - 1];
        lo := lo + sizes[k];
""",
    ),
    (
        "SELECT i.task_id FROM json_to_recordset(batch) AS i(task_id bigint)))",
        "SELECT i.task_id FROM unnest(batch) AS i))",
    ),
    (
        """\
                FROM (SELECT * FROM json_to_recordset(batch) AS i(
                    ord bigint, kind text, event_source text, event_id text, service_id bigint,
                    task_id bigint, tenant text, at text, head json, attached json,
                    disposition_id bigint, disposition_name text, disposition_desc text,
                    extension text, value json)) AS i
""",
        """\
                FROM unnest(batch) AS i
""",
    ),
)


def _parsed_once(function: str) -> str:
    for before, after in _EDITS:
        if function.count(before) != 1:
            raise RuntimeError("0006's apply_task_changes is not the text this migration edits")
        function = function.replace(before, after)
    if "json_to_recordset" in function or "json_agg" in function:
        raise RuntimeError("apply_task_changes still parses or writes its batch as JSON")
    return function


def upgrade() -> None:
    op.execute(_TYPE)
    op.execute(_parsed_once(_function_of_0006()))


def downgrade() -> None:
    op.execute(_function_of_0006())
    op.execute("DROP TYPE task_change_input")
