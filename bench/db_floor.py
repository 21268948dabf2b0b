"""PostgreSQL's own CPU per stored start and per completion: our SQL against the raw loop's.

    .venv/bin/python bench/db_floor.py [--batches 40] [--batch 2000] [--rounds 5]

No broker: an embedded PostgreSQL (fsync off), migrated. The same events (the reference
example's start, 50 services, distinct identities; then the end of every task started, with
bench/_stack.py's end body) are stored a batch at a time, one transaction per batch, on two
tables side by side:

- ours: `SqlUnitOfWork` -> `add_or_get` (starts) or `apply_changes` (ends) -> commit: the
  consumer's own code and SQL, on its tables (the indexes Query Tasks needs, the identity's
  unique key, the checks that keep a replay from taking a task id, each change recorded);
- raw: bench/consumer.py's raw loop tables and statements (a primary key, a unique event id, the
  attached data as one JSONB column; an end records its identity and sets the completion), their
  columns built the way those loops build them.

The database's CPU (every postgres process, psutil) is read around each side's batches, in
alternated rounds on emptied tables; between the starts and the ends the tasks tables are
analyzed, as autovacuum would have by then. Prints each side's best CPU per event and the
ratios. It is the database's share that the schema decides: the floor under it is the raw
loop's.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import psutil
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import BODY, END_BODY
from bench.consumer import RAW_END, RAW_INSERT, RAW_TABLE, columns_of, raw_end_row, raw_start_row
from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeStatus, EndCommand, EventIdentity, Position, StartCommand
from producer_tools.devstack.embedded import EmbeddedPostgres
from schemas.task_end import END_STANDARD_FIELDS, parse_task_end
from schemas.task_start import STANDARD_FIELDS, parse_task_start

SOURCE = "urn:bench:db-floor"
T = TypeVar("T")


def commands(count: int, prefix: str) -> list[StartCommand]:
    """`count` starts of the reference body, as the codec makes them (50 services)."""
    event = parse_task_start(BODY)
    fields = {name: getattr(event, name) for name in event.model_fields_set & STANDARD_FIELDS}
    fields["timestamp"] = datetime.now(UTC)
    return [
        StartCommand(
            EventIdentity(SOURCE, f"{prefix}-{i}"),
            1000 + i % 50,
            fields,
            event.attached_data,
            Position("bench.start", i % 6, i),
        )
        for i in range(count)
    ]


def database_cpu() -> float:
    """CPU seconds of every PostgreSQL process this script started, so far (the live ones)."""
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            if "postgres" not in process.name():
                continue
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


Started = list[tuple[int, int]]
"""(task id, service id) of each task started."""
Starter = Callable[[Sequence[StartCommand]], Awaitable[Started]]
Ender = Callable[[Started], Awaitable[None]]
OURS, RAW = "ucs-tasks", "raw loop (bench/consumer.py)"


def end_commands(tasks: Started, prefix: str) -> list[EndCommand]:
    """The end of each task, END_BODY's fields, as the codec makes them."""
    end = parse_task_end(END_BODY)
    fields = {name: getattr(end, name) for name in end.model_fields_set & END_STANDARD_FIELDS}
    return [
        EndCommand(
            EventIdentity(SOURCE, f"{prefix}-end-{task_id}"),
            service_id,
            task_id,
            fields,
            end.attached_data,
            Position("bench.start", task_id % 6, task_id),
        )
        for task_id, service_id in tasks
    ]


async def store_starts(engine: AsyncEngine, batch: Sequence[StartCommand]) -> Started:
    """`batch` stored through the consumer's unit of work, as one transaction."""
    async with SqlUnitOfWork(engine) as uow:
        stored = await uow.tasks.add_or_get(batch)
        await uow.commit()
    return [(task.task_id, task.service_id) for task, _ in stored.values()]


async def store_ends(engine: AsyncEngine, tasks: Started, prefix: str) -> None:
    """The end of each of `tasks` applied through the consumer's unit of work, in one
    transaction; raises unless every one was applied."""
    async with SqlUnitOfWork(engine) as uow:
        outcomes = await uow.tasks.apply_changes(end_commands(tasks, prefix))
        await uow.commit()
    applied = sum(o.status is ChangeStatus.APPLIED for o in outcomes)
    if applied != len(tasks):
        raise RuntimeError(f"{applied} of {len(tasks)} ends applied")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per side and round")
    parser.add_argument("--batch", type=int, default=2000, help="events per batch")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-db-"))
    best: dict[tuple[str, str], float] = {}
    try:
        async with EmbeddedPostgres(folder / "pg", fsync=False) as pg:
            await asyncio.to_thread(upgrade, pg.url)
            raw = await asyncpg.connect(pg.url.replace("+asyncpg", ""))
            await raw.execute(RAW_TABLE)
            engine = build_engine(pg.url)
            prefix = ""

            async def our_starts(batch: Sequence[StartCommand]) -> Started:
                return await store_starts(engine, batch)

            async def our_ends(tasks: Started) -> None:
                await store_ends(engine, tasks, prefix)

            async def raw_starts(batch: Sequence[StartCommand]) -> Started:
                starts = [raw_start_row(c.service_id, c.identity.id, BODY) for c in batch]
                async with raw.transaction():
                    rows = await raw.fetch(RAW_INSERT, *columns_of(starts))
                return [(row[0], row[1]) for row in rows]

            async def raw_ends(tasks: Started) -> None:
                ends = [raw_end_row(t, f"{prefix}-end-{t}", END_BODY) for t, _ in tasks]
                async with raw.transaction():
                    rows = await raw.fetch(RAW_END, *columns_of(ends))
                if len(rows) != len(tasks):
                    raise RuntimeError(f"{len(rows)} of {len(tasks)} ends applied")

            sides: dict[str, tuple[Starter, Ender]] = {
                OURS: (our_starts, our_ends),
                RAW: (raw_starts, raw_ends),
            }
            count = args.batches * args.batch
            print(
                f"{args.rounds} alternated rounds of {args.batches} batches of {args.batch}"
                " events per side: the starts, then the end of every task started;"
                " PostgreSQL CPU per event, us:"
            )

            async def timed(work: Awaitable[T]) -> tuple[T, float]:
                """`work`'s result, and PostgreSQL's CPU meanwhile in us per event."""
                before = database_cpu()
                result = await work
                return result, (database_cpu() - before) / count * 1e6

            async def start_all(starter: Starter, starts: list[StartCommand]) -> Started:
                tasks: Started = []
                for i in range(0, count, args.batch):
                    tasks += await starter(starts[i : i + args.batch])
                if len(tasks) != count:
                    raise RuntimeError(f"{len(tasks)} of {count} starts stored")
                return tasks

            async def end_all(ender: Ender, tasks: Started) -> None:
                for i in range(0, count, args.batch):
                    await ender(tasks[i : i + args.batch])

            for number in range(1, args.rounds + 1):
                # TRUNCATE leaves the tables' statistics unknown (the planner then goes by their
                # size as it grows), as on a new database. (Statistics that say "empty" no longer
                # change the ends' plans since migration 0006: bench/stale_stats.py.)
                await raw.execute("TRUNCATE tasks, task_changes, raw_tasks, raw_changes")
                prefix = f"r{number}"
                order = list(sides) if number % 2 else list(reversed(sides))
                figures: dict[str, dict[str, float]] = {name: {} for name in order}
                started: dict[str, Started] = {}
                for name in order:
                    starting = start_all(sides[name][0], commands(count, prefix))
                    started[name], figures[name]["starts"] = await timed(starting)
                # What autovacuum would have done by now: the tasks' statistics current.
                await raw.execute("ANALYZE tasks; ANALYZE raw_tasks")
                for name in order:
                    _, figures[name]["ends"] = await timed(end_all(sides[name][1], started[name]))
                for name in order:
                    for kind, per_event in figures[name].items():
                        best[name, kind] = min(best.get((name, kind), float("inf")), per_event)
                    print(
                        f"round {number}  {name:<30} starts {figures[name]['starts']:6.1f}"
                        f"  ends {figures[name]['ends']:6.1f}"
                    )
            await engine.dispose()
            await raw.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for kind, event in (("starts", "start"), ("ends", "completion")):
        ours_us, raw_us = best[OURS, kind], best[RAW, kind]
        print(
            f"ratio PostgreSQL CPU per {event}, ucs-tasks / raw loop: {ours_us / raw_us:.2f}"
            f" ({ours_us:.1f} vs {raw_us:.1f} us, best of {args.rounds})"
        )


if __name__ == "__main__":
    asyncio.run(main())
