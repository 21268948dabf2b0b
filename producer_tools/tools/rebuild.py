"""`ucs-tasks rebuild`: restore every task's whole state from the task events log.

The log (`UCS_TOPIC_CREATED`) holds a reply for every accepted request, each carrying the whole
task after it: `task.created`, `task.completed` and `task.extension.updated`. The last state of
each task wins (`producer_tools.tools._tasklog`), so the table comes back with the same task
ids, event identities, tenant and group, start and receive times, completion (end event byte
for byte, duration, disposition, end identity), attached data with its updated extensions (byte
for byte) and `updated_at`; the identities of the ends and extension updates go back into
`task_changes` (so replaying them answers the same and changes nothing). The id sequence then
moves past the highest id. All in one transaction, holding off other writers: a failed rebuild
leaves the database as it was.

The log may hold a reply several times (replies are published again on redelivery and replay):
the copies are counted as duplicates. If the log spans several lives of the database (it was
reset and ids were given again), a task id or start identity met with different tasks keeps the
most recently received one; the others are counted as superseded.

Refuses a database that holds tasks unless `--force` (then tasks whose id or identity is already
present are left alone, with their changes). Refuses a log that no longer starts at its
beginning (a partition whose first offset is above 0: records were deleted, by retention or by
hand, and tasks stored from them would be missing) unless `--allow-partial-log`; the summary
then names what is missing, and the id sequence still moves past the highest id restored. Exit
codes: 0 restored, 1 some records skipped (not records of the task events log), 2 usage error,
non-empty database or partial log, 3 broker unreachable, 4 database unreachable or refusing,
130 interrupted (nothing written).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.admin import ChangeRow, RestoreTransaction, StorageUnavailableError, TaskRestorer
from producer_tools.tools._events import InvalidInputError
from producer_tools.tools._log import LogEntry, log_entry
from producer_tools.tools._progress import (
    EXIT_BROKER,
    EXIT_DATABASE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Reporter,
    Summary,
    ToolError,
    ToolRun,
    run_summarised,
)
from producer_tools.tools._ranges import (
    PartitionRange,
    RangeSpec,
    open_range,
    position_of,
    read_ranges,
)
from producer_tools.tools._tasklog import Identity, TaskLog
from producer_tools.tools.settings import ToolsConfig
from schemas.replies import StoredTask
from schemas.validation import EventKind


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    """Where from, and how."""

    topic: str | None = None
    """The task events log (default: the created-events topic of the settings)."""
    force: bool = False
    """Also into a database that already holds tasks."""
    dry_run: bool = False
    """Read and check the log, write nothing."""
    allow_partial_log: bool = False
    """Restore from a log that no longer starts at its beginning (tasks may be missing)."""
    batch_size: int = 2000
    """Tasks (or changes) per INSERT round trip."""


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


def change_row(entry: LogEntry) -> ChangeRow:
    """The `task_changes` row of an applied end or extension update, from its log record."""
    task = entry.task
    is_end = entry.kind is EventKind.END
    return ChangeRow(
        event_source=entry.event[0],
        event_id=entry.event[1],
        task_id=task.task_id,
        kind="end" if is_end else "extension",
        extension=None if is_end else entry.extension,
        value=None if is_end else orjson.dumps(entry.value).decode(),
        # The change set updated_at; the log renders it to the millisecond.
        recorded_at=task.updated_at or task.received_at,
    )


class _Writer:
    """Batches rows for one transaction: the state kept for each task, and the identities of
    the changes applied to them. A row inserted earlier and superseded since (a newer state,
    or another life of the database) is deleted before the new rows go in."""

    def __init__(self, conn: RestoreTransaction | None, batch_size: int, log: TaskLog) -> None:
        self.conn = conn
        self.batch_size = batch_size
        self.log = log
        self.pending: dict[int, StoredTask] = {}
        self.deletes: set[int] = set()
        self.inserted: set[int] = set()
        self.pending_changes: list[tuple[ChangeRow, Identity]] = []
        self.change_deletes: list[Identity] = []
        self.changes_of: dict[int, list[Identity]] = {}
        """Identities of the changes inserted, by task id (deleted with another life's task)."""
        self.changes = 0

    async def put(self, task: StoredTask, other_lives: Sequence[int]) -> None:
        """Keep this state of the task; the tasks of `other_lives` go, with their changes."""
        for task_id in other_lives:
            self.pending.pop(task_id, None)
            if task_id in self.inserted:
                self.deletes.add(task_id)
            self.change_deletes.extend(self.changes_of.pop(task_id, ()))
        if task.task_id in self.inserted:  # an older state of it is in: replace it
            self.deletes.add(task.task_id)
        self.pending[task.task_id] = task
        if len(self.pending) >= self.batch_size:
            await self.flush()

    async def add_change(self, change: ChangeRow, started_by: Identity) -> None:
        """Record a change of the task started by `started_by` (left out if another life's)."""
        self.pending_changes.append((change, started_by))
        if len(self.pending_changes) >= self.batch_size:
            await self.flush()

    async def flush(self) -> None:
        if self.conn is None:
            self.pending.clear()
            self.pending_changes.clear()
            return
        await self.conn.delete(sorted(self.deletes))
        self.inserted.difference_update(self.deletes)
        self.deletes.clear()
        self.changes -= await self.conn.delete_changes(self.change_deletes)
        self.change_deletes.clear()
        if self.pending:
            self.inserted.update(await self.conn.insert(list(self.pending.values())))
            self.pending.clear()
        # Only changes of tasks this rebuild restored, as the log keeps them: not those of a
        # task already present (--force), nor of a task of another life.
        ready = [
            change
            for change, started_by in self.pending_changes
            if change.task_id in self.inserted and self.log.holds(change.task_id, started_by)
        ]
        self.pending_changes.clear()
        task_of = {(c.event_source, c.event_id): c.task_id for c in ready}
        for identity in await self.conn.insert_changes(ready):
            self.changes_of.setdefault(task_of[identity], []).append(identity)
            self.changes += 1


@dataclass
class _Run(ToolRun[RebuildOptions]):
    """One rebuild: checks the database and the log, restores every task in one transaction."""

    tool: ClassVar[str] = "rebuild"

    log: TaskLog = field(default_factory=TaskLog)
    replies: dict[Identity, str] = field(default_factory=dict)
    """Where the reply to each request identity was first read."""
    superseded: int = 0
    stale: int = 0

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
        writer = _Writer(conn, self.options.batch_size, self.log)
        with self.reporter.track("reading the log", sum(r.size for r in ranges)) as bar:
            async for chunk in read_ranges(reader, ranges, self.stopping):
                for record in chunk:
                    await self._one(record, writer)
                bar.advance(len(chunk), f"tasks {len(self.log.by_id):,}")
        if self.stopping.is_set():
            raise _InterruptedError
        await writer.flush()
        return writer

    async def _one(self, record: Any, writer: _Writer) -> None:
        self.summary.read += 1
        where = position_of(record)
        try:
            entry = log_entry(record.value, record.headers)
        except InvalidInputError as exc:
            self.summary.skip(where, str(exc))
            return
        first = self.replies.setdefault(entry.event, where)
        if first != where:  # a copy of a reply: its state is offered all the same (see TaskLog)
            self.summary.duplicate(where, first)
        task = entry.task
        verdict, other_lives = self.log.offer(task)
        if verdict == "stale":
            self.stale += 1
        elif verdict != "older":
            self.superseded += len(other_lives)
            await writer.put(task, other_lives)
        if entry.kind is not EventKind.START and first == where:
            await writer.add_change(change_row(entry), (task.event.source, task.event.id))

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
        self.summary.counts["changes"] = writer.changes
        self.summary.counts["already_present"] = len(self.log.by_id) - len(writer.inserted)

    async def run(self) -> Summary:
        try:
            async with TaskRestorer(self.settings.database) as restorer:
                self.check_empty(await restorer.task_count())
                topic = self.options.topic or self.settings.topics.created
                self.summary.counts["topic"] = topic
                log_range = open_range(self.settings, RangeSpec(topic=topic), topic)
                async with log_range as (reader, ranges):
                    await self.check_log_start(reader, ranges, topic)
                    await self._restore_all(restorer, reader, ranges)
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
    """Restore every task from the task events log; returns the summary."""
    return await _Run.summarise(settings, options, reporter, stopping)


def run(settings: ToolsConfig, options: RebuildOptions, reporter: Reporter) -> int:
    """The command: rebuild, print the summary, return the exit code."""
    return run_summarised(functools.partial(rebuild, settings, options, reporter), reporter)
