"""`ucs-tasks status`: how the service is doing, read from Kafka and the database.

Per partition of the requests topic: the log end, the consumer group's committed offset and the
lag between them; the dead letters held; the task id space used and left; the newest task.
Exit codes: 0 read, 3 the broker cannot be reached, 4 the database cannot be reached.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from consumer.admin import ConsumerSettings, StorageUnavailableError, read_database_report
from producer_tools.tools._progress import EXIT_BROKER, EXIT_DATABASE, EXIT_OK, ToolError
from producer_tools.tools._ranges import close_reader, end_offsets, open_reader, partitions_of
from producer_tools.tools.settings import ToolsConfig


@dataclass
class Status:
    """Everything `status` prints (also its --json document)."""

    group: str
    topic: str
    partitions: list[dict[str, Any]] = field(default_factory=list)
    lag: int = 0
    dead_letters: int = 0
    ids_used: int = 0
    ids_left: int = 0
    tasks: int = 0
    rejected: int = 0
    last_task: dict[str, Any] | None = None


async def _kafka(settings: ToolsConfig, status: Status) -> None:
    reader = await open_reader(settings)
    try:
        # Both before reading offsets: an assignment narrows what the reader's metadata follows.
        requests = await partitions_of(reader, settings.topics.requests)
        dlq = await partitions_of(reader, settings.topics.dead_letter)
        ends = await end_offsets(reader, requests)
        firsts = await reader.beginning_offsets(dlq)
        dlq_ends = await end_offsets(reader, dlq)
        status.dead_letters = sum(dlq_ends[tp] - firsts[tp] for tp in dlq)
    finally:
        await close_reader(reader)
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        # The partitions must be named: tansu cannot answer a request for all of them.
        committed = await admin.list_consumer_group_offsets(status.group, partitions=requests)
    finally:
        await admin.close()
    for tp in sorted(requests, key=lambda t: t.partition):
        done = committed.get(tp)
        offset = done.offset if done is not None and done.offset >= 0 else None
        lag = max(0, ends[tp] - (offset or 0))
        status.lag += lag
        status.partitions.append(
            {"partition": tp.partition, "end": ends[tp], "committed": offset, "lag": lag}
        )


async def read(settings: ToolsConfig, group: str) -> Status:
    """The status; ToolError (exit 3 or 4) when the broker or the database cannot be reached."""
    status = Status(group=group, topic=settings.topics.requests)
    try:
        await _kafka(settings, status)
    except KafkaError as exc:
        where = settings.kafka.bootstrap_servers
        raise ToolError(f"cannot reach the Kafka broker at {where}: {exc}", EXIT_BROKER) from exc
    try:
        report = await read_database_report(settings.database)
    except StorageUnavailableError as exc:
        shown = settings.database.display_url
        raise ToolError(f"cannot read the database at {shown}: {exc}", EXIT_DATABASE) from exc
    status.ids_used, status.ids_left = report.ids_used, report.ids_left
    status.tasks, status.rejected = report.tasks, report.rejected
    if report.last_task is not None:
        task = report.last_task
        status.last_task = {
            "task_id": task.task_id,
            "service_id": task.service_id,
            "started": task.timestamp,
            "received_at": task.received_at,
            "completed": None if task.completed is None else task.completed.get("timestamp"),
        }
    return status


def _print(status: Status, out: Console) -> None:
    table = Table(title=f"{status.topic} (group {status.group})")
    for column in ("partition", "log end", "committed", "lag"):
        table.add_column(column, justify="right")
    for p in status.partitions:
        committed = "-" if p["committed"] is None else f"{p['committed']:,}"
        table.add_row(str(p["partition"]), f"{p['end']:,}", committed, f"{p['lag']:,}")
    out.print(table)
    share = status.ids_used / (status.ids_used + status.ids_left)
    out.print(f"lag: {status.lag:,} records   dead letters: {status.dead_letters:,}")
    out.print(
        f"task ids: {status.ids_used:,} used, {status.ids_left:,} left ({share:.4%} used)   "
        f"tasks: {status.tasks:,}   rejected events: {status.rejected:,}"
    )
    last = status.last_task
    if last is None:
        out.print("last task: none yet")
    else:
        done = f", completed {last['completed']}" if last["completed"] else ""
        out.print(
            f"last task: {last['task_id']} (service {last['service_id']}, started "
            f"{last['started']}, received {last['received_at']}{done})"
        )


def run(settings: ToolsConfig, json: bool, out: TextIO | None = None) -> int:
    """The command: prints the status (to `out`, else the standard output of the moment: a
    default of `sys.stdout` would be the one of the import); exit 0, or 3/4 with one line on
    stderr."""
    out = sys.stdout if out is None else out
    group = ConsumerSettings().consumer_group
    try:
        status = asyncio.run(read(settings, group))
    except ToolError as exc:
        print(f"ucs-tasks status: {exc}", file=sys.stderr)
        return exc.exit_code
    if json:
        out.write(orjson.dumps(asdict(status)).decode() + "\n")
    else:
        _print(status, Console(file=out, highlight=False))
    return EXIT_OK
