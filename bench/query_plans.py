"""Query Tasks on a big table: the plan and timing of every variant, from the read side's own SQL.

    .venv/bin/python bench/query_plans.py [--rows 2000000] [--plans] [--url postgresql://...]

Starts an embedded PostgreSQL (fsync off) unless `--url` names an empty database, applies the
migrations, and loads `--rows` tasks with one `INSERT ... SELECT FROM generate_series` (the
query indexes dropped during the load and rebuilt after it, then VACUUM ANALYZE). Half of the
rows belong to service 1, the rest to 997 small services; a fifth of service 1's tasks belong
to tenant `acme`, the others to no tenant; 95% of the tasks are completed (all but the newest
5% and every 101st); 50 states; task types as ids (a third, 7 values) or names (13 values).

Then, for each Query Tasks variant, the statement `consumer.db.query.query_sql` builds (the very
SQL TaskReader.query runs, on an engine from `consumer.db.engine.build_engine`) is run once to
warm the cache and then under EXPLAIN (ANALYZE, BUFFERS): one line per variant with its
execution time, rows, buffers and the indexes it used (`--plans` prints each plan in full).
Exits 1 if a variant reads the tasks table sequentially.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from consumer.db.query import TaskQuery, TaskState, query_sql
from producer_tools.devstack.embedded import EmbeddedPostgres
from tests.reference import REFERENCE_ATTACHED

BIG_SERVICE = 1
_ATTACHED = orjson.dumps(REFERENCE_ATTACHED).decode()

_LOAD = (
    "INSERT INTO tasks (service_id, tenant, state_id, task_type_id, task_type_name, started_at,"
    " attached_data_text, event_source, event_id, source_topic, source_partition,"
    " source_offset, received_at, completed_at, duration_ms, disposition_name,"
    " completed_text, end_event_source, end_event_id, updated_at)"
    " SELECT s.service_id, s.tenant, s.i % 50,"
    "  CASE WHEN s.i % 3 = 0 THEN s.i % 7 END,"
    "  CASE WHEN s.i % 3 <> 0 THEN 'type-' || s.i % 13 END,"
    "  s.started, $2, 'urn:bench', 'q-' || s.i,"
    "  'ucs.tasks.start', s.i % 6, s.i, s.started,"
    "  CASE WHEN s.done THEN s.started + interval '5 minutes' END,"
    "  CASE WHEN s.done THEN 300000 END,"
    "  CASE WHEN s.done THEN 'resolved' END,"
    '  CASE WHEN s.done THEN \'{"disposition":"resolved"}\' END,'
    "  CASE WHEN s.done THEN 'urn:bench' END,"
    "  CASE WHEN s.done THEN 'e-' || s.i END,"
    "  CASE WHEN s.done THEN s.started + interval '5 minutes' END"
    " FROM (SELECT i,"
    "  CASE WHEN i % 2 = 0 THEN 1 ELSE 2 + i % 997 END AS service_id,"
    "  CASE WHEN i % 10 = 0 THEN 'acme' END AS tenant,"
    "  timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second' AS started,"
    "  i <= $1 * 0.95 AND i % 101 <> 0 AS done"
    "  FROM generate_series(1, $1) AS i) AS s"
)
_QUERY_INDEXES = (
    "SELECT indexname, indexdef FROM pg_indexes i WHERE tablename = 'tasks'"
    " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
)


def variants(rows: int) -> list[tuple[str, TaskQuery]]:
    """(name, query) of each Query Tasks variant measured (service 1 unless said)."""
    middle = rows // 2
    mixed: tuple[int | str, ...] = (1, 2, "type-3", "type-4")
    return [
        ("all, first page", TaskQuery(BIG_SERVICE)),
        ("all, after the middle", TaskQuery(BIG_SERVICE, after=middle)),
        ("all, page of 1000", TaskQuery(BIG_SERVICE, limit=1000, after=middle)),
        ("active", TaskQuery(BIG_SERVICE, state=TaskState.ACTIVE)),
        ("active, after the middle", TaskQuery(BIG_SERVICE, state=TaskState.ACTIVE, after=middle)),
        ("completed", TaskQuery(BIG_SERVICE, state=TaskState.COMPLETED)),
        ("completed, after", TaskQuery(BIG_SERVICE, state=TaskState.COMPLETED, after=middle)),
        ("state_id", TaskQuery(BIG_SERVICE, state_id=8)),
        ("state_id, after", TaskQuery(BIG_SERVICE, state_id=8, after=middle)),
        ("task_types: one id", TaskQuery(BIG_SERVICE, task_types=(3,))),
        ("task_types: one name", TaskQuery(BIG_SERVICE, task_types=("type-5",))),
        ("task_types: 2 ids + 2 names", TaskQuery(BIG_SERVICE, task_types=mixed)),
        ("task_types, after", TaskQuery(BIG_SERVICE, task_types=mixed, after=middle)),
        (
            "completed + state_id + types",
            TaskQuery(BIG_SERVICE, state=TaskState.COMPLETED, state_id=12, task_types=mixed),
        ),
        ("active + state_id", TaskQuery(BIG_SERVICE, state=TaskState.ACTIVE, state_id=8)),
        (
            "active + types",
            TaskQuery(BIG_SERVICE, state=TaskState.ACTIVE, task_types=mixed),
        ),
        ("tenant acme, all", TaskQuery(BIG_SERVICE, "acme")),
        ("tenant acme, active", TaskQuery(BIG_SERVICE, "acme", state=TaskState.ACTIVE)),
        ("small service, all", TaskQuery(BIG_SERVICE + 1)),
    ]


@contextlib.asynccontextmanager
async def database(url: str | None) -> AsyncIterator[str]:
    """The URL of a database to fill: `url`, or an embedded server's for the run."""
    if url is not None:
        yield url
        return
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-plans-"))
    try:
        async with EmbeddedPostgres(folder / "pg", fsync=False) as pg:
            yield pg.url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def load(url: str, rows: int) -> float:
    """Fill the tasks table; seconds taken (indexes rebuilt and statistics gathered)."""
    began = time.perf_counter()
    # asyncpg itself: the engine's 60 s statement timeout is for the service, not for this.
    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = await conn.fetch(_QUERY_INDEXES)
        async with conn.transaction():
            for index in indexes:
                await conn.execute(f'DROP INDEX "{index["indexname"]}"')
            await conn.execute(_LOAD, rows, _ATTACHED)
            for index in indexes:
                await conn.execute(index["indexdef"])
        await conn.execute("VACUUM (ANALYZE) tasks")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def explain(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[str]:
    """The plan lines of `sql` under EXPLAIN (ANALYZE, BUFFERS), after one warming run."""
    await conn.execute(text(sql), params)
    result = await conn.execute(text(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}"), params)
    return [row[0] for row in result]


def summary(name: str, plan: list[str]) -> tuple[str, float, bool]:
    """One line for `plan`: time, rows, buffers, indexes; and whether it scans sequentially."""
    joined = "\n".join(plan)
    timing = re.search(r"Execution Time: ([\d.]+) ms", joined)
    executed = float(timing.group(1)) if timing else float("nan")
    top_rows = re.search(r"actual time=[\d.]+\.\.[\d.]+ rows=(\d+)", plan[0])
    buffers = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", joined)
    scans = r"(?:Index (?:Only )?Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)"
    used = sorted(set(re.findall(scans, joined)))
    sequential = "Seq Scan on tasks" in joined
    line = (
        f"| {name:<34} | {executed:>8.3f} | {top_rows.group(1) if top_rows else '?':>5} | "
        f"{buffers.group(1) if buffers else '0':>6} | {', '.join(used) or '-'}"
        f"{' SEQ SCAN' if sequential else ''}"
    )
    return line, executed, sequential


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="tasks to load (2,000,000)")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--url", help="an empty PostgreSQL database to use instead")
    args = parser.parse_args()
    async with database(args.url) as url:
        await asyncio.to_thread(upgrade, url)
        engine = build_engine(url)
        try:
            seconds = await load(url, args.rows)
            print(f"loaded {args.rows:,} tasks in {seconds:.1f} s (indexes and VACUUM ANALYZE)")
            print(f"| {'variant':<34} | {'ms':>8} | {'rows':>5} | {'shared':>6} | indexes")
            print(f"|{'-' * 36}|{'-' * 10}|{'-' * 7}|{'-' * 8}|---------")
            plans: list[tuple[str, list[str]]] = []
            worst, sequential = 0.0, []
            async with engine.connect() as conn:
                for name, query in variants(args.rows):
                    plan = await explain(conn, *query_sql(query))
                    line, executed, seq = summary(name, plan)
                    print(line)
                    plans.append((name, plan))
                    worst = max(worst, executed)
                    if seq:
                        sequential.append(name)
        finally:
            await engine.dispose()
    if args.plans:
        for name, plan in plans:
            print(f"\n--- {name}\n" + "\n".join(plan))
    if sequential:
        print(f"query plans: SEQUENTIAL SCANS in {', '.join(sequential)}")
        return 1
    print(f"query plans: every variant on an index, slowest {worst:.2f} ms ({args.rows:,} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
