"""`ucs-tasks rebuild`: restore the tasks table from the created-events topic.

Every task-created reply carries the whole persisted task, so the table comes back with the same
task ids, event identities, start and receive times and attached data (byte for byte); the id
sequence then moves past the highest id. All in one transaction, holding off other writers: a
failed rebuild leaves the database as it was.

The log may hold a task several times (replies are published again on redelivery and replay):
it is restored once. If the log spans several lives of the database (it was reset and ids were
given again), a task id or event identity met with different tasks keeps the most recently
received one; the others are counted as superseded.

Refuses a database that holds tasks unless `--force` (then tasks whose id or identity is already
present are left alone). Refuses a log that no longer starts at its beginning (a partition whose
first offset is above 0: records were deleted, by retention or by hand, and tasks stored from
them would be missing) unless `--allow-partial-log`; the summary then names what is missing,
and the id sequence still moves past the highest id restored. Exit codes: 0 restored, 1 some
records skipped (not task-created replies), 2 usage error, non-empty database or partial log,
3 broker unreachable, 4 database unreachable or refusing, 130 interrupted (nothing written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from consumer.admin import RestoreTransaction, StorageUnavailableError, TaskRestorer
from producer_tools.tools._events import is_created_reply
from producer_tools.tools._progress import (
    EXIT_BROKER,
    EXIT_DATABASE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Reporter,
    Summary,
    ToolError,
    run_until_interrupted,
)
from producer_tools.tools._ranges import (
    PartitionRange,
    RangeSpec,
    close_reader,
    open_range,
    position_of,
    read_ranges,
)
from producer_tools.tools.settings import ToolsConfig
from schemas.replies import StoredTask

Identity = tuple[str, str]


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    """Where from, and how."""

    topic: str | None = None
    """The created-events topic (default: the one of the settings)."""
    force: bool = False
    """Also into a database that already holds tasks."""
    dry_run: bool = False
    """Read and check the log, write nothing."""
    allow_partial_log: bool = False
    """Restore from a log that no longer starts at its beginning (tasks may be missing)."""
    batch_size: int = 2000
    """Rows per INSERT round trip."""


async def log_start_offsets(
    reader: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
) -> dict[int, int]:
    """The first offset each partition of the log still holds (0 unless records were deleted)."""
    try:
        found = await reader.beginning_offsets(list(partitions))
    except KafkaError as exc:
        raise ToolError(f"cannot list where the log starts: {exc!r}", EXIT_BROKER) from exc
    return {tp.partition: int(offset) for tp, offset in found.items()}


def truncated(starts: dict[int, int]) -> list[tuple[int, int]]:
    """(partition, first offset present) of each partition that no longer starts at 0."""
    return [(partition, first) for partition, first in sorted(starts.items()) if first > 0]


def describe_missing(topic: str, gaps: Sequence[tuple[int, int]]) -> str:
    """What a partial log lacks: `partition 0 before offset 1200, partition 3 before 57`."""
    where = ", ".join(f"partition {p} before offset {first:,}" for p, first in gaps)
    return f"{topic} no longer holds {where}"


class _InterruptedError(Exception):
    """Ctrl-C during the rebuild: the transaction is rolled back."""


@dataclass(slots=True)
class _Seen:
    identity: Identity
    received_at: str
    where: str


@dataclass
class TaskLog:
    """The latest task for each task id and event identity, as the log is read in any order."""

    by_id: dict[int, _Seen] = field(default_factory=dict)
    by_identity: dict[Identity, int] = field(default_factory=dict)

    def offer(
        self, task: StoredTask, where: str
    ) -> tuple[Literal["new", "duplicate", "stale"], list[int], str]:
        """Decide on one task: `new` (keep it; the listed ids it supersedes go), `duplicate`
        (already kept; the last value says where) or `stale` (a newer task holds its id or
        identity)."""
        identity = (task.event.source, task.event.id)
        held = self.by_id.get(task.task_id)
        if held is not None and held.identity == identity:
            return "duplicate", [], held.where
        rivals = {task.task_id} if held is not None else set()
        if (other := self.by_identity.get(identity)) is not None:
            rivals.add(other)
        if any(self.by_id[r].received_at >= task.received_at for r in rivals):
            return "stale", [], ""
        for rival in rivals:
            del self.by_identity[self.by_id.pop(rival).identity]
        self.by_id[task.task_id] = _Seen(identity, task.received_at, where)
        self.by_identity[identity] = task.task_id
        return "new", sorted(rivals), ""


def _task_of(record: Any) -> StoredTask:
    if not is_created_reply(record.headers):
        raise ValueError("not a task-created reply")
    try:
        return StoredTask.model_validate(orjson.loads(record.value or b"")["task"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValidationError) as exc:
        raise ValueError(f"a task-created reply without a valid task: {exc}") from None


class _Writer:
    """Batches rows for one transaction; superseded rows go before new ones are inserted."""

    def __init__(self, conn: RestoreTransaction | None, batch_size: int) -> None:
        self.conn = conn
        self.batch_size = batch_size
        self.pending: dict[int, StoredTask] = {}
        self.deletes: list[int] = []
        self.inserted: set[int] = set()
        self.offered = 0
        self.inserted_total = 0

    async def add(self, task: StoredTask, superseded: Sequence[int]) -> None:
        for task_id in superseded:
            if self.pending.pop(task_id, None) is None and task_id in self.inserted:
                self.deletes.append(task_id)
        self.pending[task.task_id] = task
        if len(self.pending) >= self.batch_size:
            await self.flush()

    async def flush(self) -> None:
        if self.conn is None:
            self.pending.clear()
            return
        await self.conn.delete(self.deletes)
        self.inserted.difference_update(self.deletes)
        self.deletes.clear()
        self.offered += len(self.pending)
        ids = await self.conn.insert(list(self.pending.values()))
        self.inserted.update(ids)
        self.inserted_total += len(ids)
        self.pending.clear()


class _Run:
    def __init__(
        self,
        settings: ToolsConfig,
        options: RebuildOptions,
        reporter: Reporter,
        stopping: asyncio.Event | None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.reporter = reporter
        self.stopping = stopping
        self.summary = Summary("rebuild", dry_run=options.dry_run)
        self.log = TaskLog()
        self.superseded = 0
        self.stale = 0

    def check_empty(self, count: int) -> None:
        if count and not self.options.force:
            raise ToolError(
                f"the database already holds {count:,} tasks: rebuild restores into an empty "
                "database (--force adds the missing tasks to it)",
                EXIT_USAGE,
            )

    async def check_log_start(
        self, reader: AIOKafkaConsumer, ranges: list[PartitionRange], topic: str
    ) -> None:
        """Refuse a log that lost its beginning, unless allowed (then say what is missing)."""
        gaps = truncated(await log_start_offsets(reader, [r.partition for r in ranges]))
        if not gaps:
            return
        missing = describe_missing(topic, gaps)
        if not self.options.allow_partial_log:
            raise ToolError(
                f"the created-events log no longer starts at its beginning: {missing} "
                "(deleted by retention or by hand): tasks stored from those records would be "
                "missing and a replay of one would get a new id. Keep the log forever "
                "(`ucs-tasks topics check`); --allow-partial-log restores what is left",
                EXIT_USAGE,
            )
        self.summary.counts["partial_log"] = f"{missing}: tasks may be missing"
        self.reporter.note(f"[yellow]warning:[/] {missing}: tasks may be missing")

    async def restore(
        self,
        reader: AIOKafkaConsumer,
        ranges: list[PartitionRange],
        conn: RestoreTransaction | None,
    ) -> _Writer:
        writer = _Writer(conn, self.options.batch_size)
        with self.reporter.track("reading the log", sum(r.size for r in ranges)) as bar:
            async for chunk in read_ranges(reader, ranges, self.stopping):
                for record in chunk:
                    await self._one(record, writer)
                bar.advance(len(chunk), f"tasks {len(self.log.by_id):,}")
        if self.stopping is not None and self.stopping.is_set():
            raise _InterruptedError
        await writer.flush()
        return writer

    async def _one(self, record: Any, writer: _Writer) -> None:
        self.summary.read += 1
        where = position_of(record)
        try:
            task = _task_of(record)
        except ValueError as exc:
            self.summary.skip(where, str(exc))
            return
        verdict, superseded, first = self.log.offer(task, where)
        if verdict == "duplicate":
            self.summary.duplicate(where, first)
        elif verdict == "stale":
            self.stale += 1
        else:
            self.superseded += len(superseded)
            await writer.add(task, superseded)

    async def _restore_all(
        self, restorer: TaskRestorer, reader: AIOKafkaConsumer, ranges: list[PartitionRange]
    ) -> None:
        if self.options.dry_run:
            await self.restore(reader, ranges, None)
            self.summary.would_send = len(self.log.by_id)
            return
        async with restorer.transaction() as tx:
            self.check_empty(await tx.task_count())  # again, no one else writes now
            writer = await self.restore(reader, ranges, tx)
            self.summary.counts["next_task_id"] = await tx.advance_task_ids()
        self.summary.sent = len(writer.inserted)
        self.summary.counts["already_present"] = writer.offered - writer.inserted_total

    async def run(self) -> Summary:
        try:
            async with TaskRestorer(self.settings.database) as restorer:
                self.check_empty(await restorer.task_count())
                topic = self.options.topic or self.settings.topics.created
                self.summary.counts["topic"] = topic
                reader, ranges = await open_range(self.settings, RangeSpec(topic=topic), topic)
                try:
                    await self.check_log_start(reader, ranges, topic)
                    await self._restore_all(restorer, reader, ranges)
                finally:
                    await close_reader(reader)
        except _InterruptedError:
            self.summary.fail("interrupted: nothing was written", EXIT_INTERRUPTED)
        except ToolError as exc:
            self.summary.fail(str(exc), exc.exit_code)
        except StorageUnavailableError as exc:
            where = self.settings.database.display_url  # its password masked
            self.summary.fail(f"{where}: {exc}", EXIT_DATABASE)
        self.summary.counts["superseded"] = self.superseded + self.stale
        return self.summary


async def rebuild(
    settings: ToolsConfig,
    options: RebuildOptions = RebuildOptions(),
    reporter: Reporter | None = None,
    stopping: asyncio.Event | None = None,
) -> Summary:
    """Restore the tasks table from the created-events topic; returns the summary."""
    return await _Run(settings, options, reporter or Reporter(json_mode=True), stopping).run()


def run(settings: ToolsConfig, options: RebuildOptions, reporter: Reporter) -> int:
    """The command: rebuild, print the summary, return the exit code."""

    async def main(stopping: asyncio.Event) -> int:
        return reporter.summary(await rebuild(settings, options, reporter, stopping))

    return run_until_interrupted(main)
