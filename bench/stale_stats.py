"""Completions on tables analyzed while empty, against tables never analyzed.

    .venv/bin/python bench/stale_stats.py [--batches 10] [--batch 2000] [--singles 500]

`apply_task_changes` plans each statement once per session. Statistics that say "no rows" (an
`ANALYZE` or `vacuumdb -Z` on a new database, before any traffic) once made that plan a pass over
whole tables, kept while they grew (migration 0006's docstring). This script runs the same life
on two embedded databases (fsync off), migrated; one of them has its tables analyzed while
empty. Through the consumer's own `SqlUnitOfWork`: the system's first start and end (the plans
are made now, on empty tables), then `--batches` batches of starts, the end of every one of those
tasks in batches of the same size, then `--singles` more ends one at a time (the bridge's case).
Prints each batch's time and PostgreSQL's CPU per completion (every postgres process, psutil),
and the ratio of the two databases (1.0 = what the statistics said when planned does not
matter).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.db_floor import Started, commands, database_cpu, store_ends, store_starts
from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from producer_tools.devstack.embedded import EmbeddedPostgres

NEVER, EMPTY = "never analyzed", "analyzed while empty"
ANALYZED = ("tasks", "task_changes", "rejected_events")


async def one_life(analyze: bool, args: argparse.Namespace) -> dict[str, float]:
    """PostgreSQL's CPU per completion (us) in batches and one at a time; the batches' times."""
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-stats-"))
    try:
        async with EmbeddedPostgres(folder / "pg", fsync=False) as pg:
            await asyncio.to_thread(upgrade, pg.url)
            engine = build_engine(pg.url)
            try:
                if analyze:
                    async with engine.connect() as conn:
                        for table in ANALYZED:
                            await conn.exec_driver_sql(f"ANALYZE {table}")
                await store_ends(engine, await store_starts(engine, commands(1, "first")), "e")
                count = args.batches * args.batch
                starts = commands(count + args.singles, "s")
                tasks: Started = []
                for i in range(0, len(starts), args.batch):
                    tasks += await store_starts(engine, starts[i : i + args.batch])
                times: list[float] = []
                before = database_cpu()
                for i in range(0, count, args.batch):
                    began = time.perf_counter()
                    await store_ends(engine, tasks[i : i + args.batch], "e")
                    times.append((time.perf_counter() - began) * 1000)
                batched = (database_cpu() - before) / count * 1e6
                before = database_cpu()
                for task in tasks[count:]:
                    await store_ends(engine, [task], "e")
                singles = (database_cpu() - before) / args.singles * 1e6
            finally:
                await engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(
        f"{EMPTY if analyze else NEVER:<21} batches of {args.batch} ends, ms:"
        f" {' '.join(f'{t:.0f}' for t in times)}; PostgreSQL CPU per completion:"
        f" {batched:.1f} us in batches, {singles:.0f} us one at a time"
    )
    return {"batched": batched, "singles": singles}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--singles", type=int, default=500)
    args = parser.parse_args()
    never = await one_life(False, args)
    empty = await one_life(True, args)
    print(
        "ratio PostgreSQL CPU per completion, tables analyzed while empty / never analyzed:"
        f" {empty['batched'] / never['batched']:.2f} in batches of {args.batch},"
        f" {empty['singles'] / never['singles']:.2f} one at a time"
    )


if __name__ == "__main__":
    asyncio.run(main())
