"""The checks every fault test ends with: the group's committed offsets, the tasks table, and
what they must say about a flow of events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import asyncpg
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.faults.harness import SOURCE, ConsumerProcess, ReplyLog
from tests.servers import StackSettings

# --- offsets and rows ----------------------------------------------------------------------


async def committed_offsets(settings: StackSettings, group: str | None = None) -> dict[int, int]:
    """The group's committed offset per partition of the requests topic (absent: none)."""
    partitions = [
        TopicPartition(settings.topics.requests, p) for p in range(settings.topics.partitions)
    ]
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        # Partitions named: the embedded broker cannot answer an "all partitions" fetch.
        offsets = await admin.list_consumer_group_offsets(
            group or settings.consumer.consumer_group, partitions=partitions
        )
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


def log_ends(positions: Mapping[str, tuple[int, int]]) -> dict[int, int]:
    """Per partition, the offset after the last record published (what a full commit reaches)."""
    ends: dict[int, int] = {}
    for partition, offset in positions.values():
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


@dataclass(frozen=True)
class Rows:
    """The tasks table of a test's database, by event id."""

    task_ids: dict[str, list[int]]
    next_task_id: int

    def span(self) -> tuple[int, int, int]:
        """(lowest task id, highest, rows)."""
        ids = [i for found in self.task_ids.values() for i in found]
        return (min(ids), max(ids), len(ids)) if ids else (0, 0, 0)


async def read_rows(database_url: str, source: str = SOURCE) -> Rows:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        found = await conn.fetch(
            "SELECT event_id, array_agg(task_id) AS ids FROM tasks WHERE event_source = $1"
            " GROUP BY event_id",
            source,
        )
        sequence = await conn.fetchrow(
            "SELECT last_value, is_called FROM tasks_task_id_seq"  # the identity's sequence
        )
    finally:
        await conn.close()
    next_id = sequence["last_value"] + 1 if sequence["is_called"] else sequence["last_value"]
    return Rows({r["event_id"]: list(r["ids"]) for r in found}, next_id)


async def rejected_rows(database_url: str, source: str = SOURCE) -> int:
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM rejected_events WHERE event_source = $1", source
        )
    finally:
        await conn.close()
    return count


# --- the checks ----------------------------------------------------------------------------


@dataclass
class FlowCheck:
    """What became of a flow of valid events: each needs one row and consistent replies."""

    events: int
    lost: list[str]
    """No row, or no task-created reply."""
    duplicated: list[str]
    """Several rows, or replies naming different task ids, or a reply not naming the row's id."""
    re_sent: int
    """Events answered more than once (at-least-once replies: allowed, with the same task id)."""

    def problems(self, limit: int = 5) -> str:
        return f"lost {self.lost[:limit]} duplicated {self.duplicated[:limit]}"


def check_flow(event_ids: Iterable[str], rows: Rows, replies: ReplyLog) -> FlowCheck:
    ids = list(event_ids)
    lost, duplicated, re_sent = [], [], 0
    for event_id in ids:
        stored = rows.task_ids.get(event_id, [])
        answered = replies.created.get(event_id, [])
        if not stored or not answered:
            lost.append(event_id)
            continue
        if len(stored) != 1 or set(answered) != set(stored):
            duplicated.append(event_id)
        re_sent += len(answered) > 1
    return FlowCheck(len(ids), lost, duplicated, re_sent)


async def check_acknowledged(
    settings: StackSettings,
    positions: Mapping[str, tuple[int, int]],
    replies: ReplyLog,
    committed_before: dict[int, int] | None = None,
    reply_wait_s: float = 15.0,
) -> dict[int, int]:
    """Every event below the group's committed offsets has its row and its reply (the commit
    came after both), and committed offsets never went back. Returns the offsets read."""
    committed = await committed_offsets(settings)
    promised = [
        event_id
        for event_id, (partition, offset) in positions.items()
        if offset < committed.get(partition, 0)
    ]
    rows = await read_rows(settings.database_url)
    no_row = [e for e in promised if e not in rows.task_ids]
    assert not no_row, f"{len(no_row)} committed events have no row: {no_row[:5]}"
    # Their replies were acknowledged before the commit: the log only has to read them.
    with contextlib.suppress(AssertionError):
        await replies.wait_until(
            lambda: all(e in replies.created for e in promised), reply_wait_s, why=str
        )
    no_reply = [e for e in promised if e not in replies.created]
    assert not no_reply, f"{len(no_reply)} committed events have no reply: {no_reply[:5]}"
    for partition, offset in (committed_before or {}).items():
        assert committed.get(partition, 0) >= offset, f"partition {partition} went back"
    return committed


async def caught_up(
    settings: StackSettings,
    positions: Mapping[str, tuple[int, int]],
    consumer: ConsumerProcess,
    timeout_s: float = 60.0,
) -> dict[int, int]:
    """Wait until the consumer process is consuming and the group's committed offsets reach the
    end of every partition the flow wrote to: all it has to do is done. (Replies alone do not
    say so: records a killed member answered but never committed come back to the survivor,
    which answers them again after the group noticed the death.) Returns the offsets."""
    ends = log_ends(positions)
    committed: dict[int, int] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                assert consumer.alive, f"the consumer died:\n{consumer.log_tail()}"
                committed = await committed_offsets(settings)
                if consumer.consuming and committed == ends:
                    return committed
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(
            f"not caught up after {timeout_s}s: committed {committed}, log ends {ends}"
            f"\n{consumer.log_tail()}"
        ) from None


def ids_per_task(rows: Rows) -> tuple[float, int]:
    """(ids used per task created, ids burned) on a test's own database, whose sequence started
    at 1: every id the sequence handed out, kept or not, over the tasks stored."""
    used = rows.next_task_id - 1
    count = rows.span()[2]
    return (used / count if count else 1.0), used - count
