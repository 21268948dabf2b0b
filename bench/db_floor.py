"""PostgreSQL's own CPU per stored start: the consumer's batch INSERT against the raw loop's.

    .venv/bin/python bench/db_floor.py [--batches 40] [--batch 2000] [--rounds 5]

No broker: an embedded PostgreSQL (fsync off), migrated. The same start events (the reference
example's body, 50 services, distinct identities) are stored a batch at a time, one transaction
per batch, on two tables side by side:

- ours: `SqlUnitOfWork` -> `add_or_get` -> commit: the consumer's own code and SQL, on its table
  (the indexes Query Tasks needs, the identity's unique key, the checks that keep a replay from
  taking a task id);
- raw: bench/consumer.py's raw loop table and INSERT (a primary key, a unique event id, the
  attached data as one JSONB column), its columns built the way that loop builds them.

The database's CPU (every postgres process, psutil) is read around each side's batches, in
alternated rounds, each on fresh rows after the same number before (tables emptied between
rounds); prints each side's best CPU per start and the ratio. It is the database's share of a
start that the schema decides: the floor under it is the raw loop's.
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
from typing import Any

import asyncpg
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import BODY
from bench.consumer import RAW_INSERT, RAW_TABLE, RawEvent
from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import EventIdentity, Position, StartCommand
from producer_tools.devstack.embedded import EmbeddedPostgres
from schemas.task_start import STANDARD_FIELDS, parse_task_start

SOURCE = "urn:bench:db-floor"


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


def raw_columns(batch: Sequence[StartCommand]) -> list[list[Any]]:
    """The raw loop's seven columns of a batch, built as bench/consumer.py builds them."""
    columns: list[list[Any]] = [[] for _ in range(7)]
    for command in batch:
        event = RawEvent.model_validate(orjson.loads(BODY))
        values = (
            command.service_id,
            command.identity.id,
            event.state_id,
            str(event.task_type),
            event.interaction_id,
            event.est_duration,
            orjson.dumps(event.model_extra).decode(),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40, help="batches per side and round")
    parser.add_argument("--batch", type=int, default=2000, help="starts per batch")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-db-"))
    try:
        async with EmbeddedPostgres(folder / "pg", fsync=False) as pg:
            await asyncio.to_thread(upgrade, pg.url)
            raw = await asyncpg.connect(pg.url.replace("+asyncpg", ""))
            await raw.execute(RAW_TABLE)
            engine = build_engine(pg.url)

            async def ours(batch: Sequence[StartCommand]) -> None:
                async with SqlUnitOfWork(engine) as uow:
                    stored = await uow.tasks.add_or_get(batch)
                    await uow.commit()
                if len(stored) != len(batch):
                    raise RuntimeError(f"{len(stored)} of {len(batch)} starts stored")

            async def raw_loop(batch: Sequence[StartCommand]) -> None:
                columns = raw_columns(batch)
                async with raw.transaction():
                    rows = await raw.fetch(RAW_INSERT, *columns)
                if len(rows) != len(batch):
                    raise RuntimeError(f"{len(rows)} of {len(batch)} starts stored")

            sides: dict[str, Callable[[Sequence[StartCommand]], Awaitable[None]]] = {
                "ucs-tasks (add_or_get)": ours,
                "raw loop (bench/consumer.py)": raw_loop,
            }
            best = dict.fromkeys(sides, float("inf"))
            count = args.batches * args.batch
            print(
                f"{args.rounds} alternated rounds of {args.batches} batches of {args.batch}"
                f" starts per side; PostgreSQL CPU per start, us:"
            )
            for number in range(1, args.rounds + 1):
                await raw.execute("TRUNCATE tasks, raw_tasks")
                await raw.execute("VACUUM ANALYZE")
                order = list(sides) if number % 2 else list(reversed(sides))
                for name in order:
                    starts = commands(count, f"r{number}")
                    batches = [starts[i : i + args.batch] for i in range(0, count, args.batch)]
                    before = database_cpu()
                    for batch in batches:
                        await sides[name](batch)
                    per_start = (database_cpu() - before) / count * 1e6
                    best[name] = min(best[name], per_start)
                    print(f"round {number}  {name:<30} {per_start:6.1f}")
            await engine.dispose()
            await raw.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ours_us, raw_us = best["ucs-tasks (add_or_get)"], best["raw loop (bench/consumer.py)"]
    print(
        f"ratio PostgreSQL CPU per start, ucs-tasks / raw loop: {ours_us / raw_us:.2f}"
        f" ({ours_us:.1f} vs {raw_us:.1f} us, best of {args.rounds})"
    )


if __name__ == "__main__":
    asyncio.run(main())
