"""Reading a range of a topic: `--from/--to` as offsets or timestamps, per partition or all.

Ranges are half-open, `[from, to)`, per partition: `--from` is the first offset, or the first
record whose timestamp is at or after the time; `--to` is the first offset left out, or the first
record whose timestamp is at or after that time. The end of each partition is taken when the run
starts, so records appended meanwhile (say, by the replay itself) are not read.

Brokers are not trusted to be exact: the end offset is checked by reading the last batch (tansu
0.6 answers the last batch's base offset + 1 instead of the last offset + 1), and timestamps are
checked record by record (`offsets_for_times` only says where to start looking).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from producer_tools.tools._progress import EXIT_BROKER, EXIT_USAGE, ToolError
from producer_tools.tools._sending import start_client
from producer_tools.tools.settings import ToolsConfig

FETCH_MAX_BYTES: Final = 32 * 1024 * 1024
STALL_TIMEOUT_S: Final = 30.0
"""Give up when a partition yields nothing for this long although its end is not reached."""
PROBE_TIMEOUT_S: Final = 10.0
CLOSE_TIMEOUT_S: Final = 5.0
FETCH_MAX_WAIT_MS: Final = 50
"""A fetch that finds nothing returns this soon: the tools read ranges, they do not wait."""
_MAX_RECORDS = 5000
_POLL_MS = 100


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: an offset, or a time in milliseconds since the epoch."""

    offset: int | None = None
    timestamp_ms: int | None = None

    @classmethod
    def parse(cls, text: str | None, option: str) -> Bound | None:
        """`42` (an offset) or an ISO 8601 time with an offset (`2026-01-31T12:00:00Z`)."""
        if text is None or text == "":
            return None
        if text.isdigit():
            return cls(offset=int(text))
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ToolError(
                f"{option} must be an offset (a whole number) or an ISO 8601 time with an "
                f"explicit offset such as 2026-01-31T12:00:00Z, got {text!r}"
            ) from None
        if when.tzinfo is None:
            raise ToolError(f"{option} {text!r} has no UTC offset: add Z or +hh:mm")
        return cls(timestamp_ms=int(when.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets `[start, end)` of one partition, narrowed by record times when given."""

    partition: TopicPartition
    start: int
    end: int
    from_ms: int | None = None
    """Skip records before the first one at or after this time."""
    to_ms: int | None = None
    """Stop at the first record at or after this time."""

    @property
    def size(self) -> int:
        """How many offsets the range spans (an upper bound of the records read)."""
        return max(0, self.end - self.start)


def build_reader(settings: ToolsConfig) -> AIOKafkaConsumer:
    """A group-less consumer: partitions are assigned by hand, nothing is committed."""
    return AIOKafkaConsumer(
        **settings.kafka.client_options(),
        client_id="ucs-tasks-tools",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=settings.contract.max_reply_record_bytes,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


async def open_reader(settings: ToolsConfig) -> AIOKafkaConsumer:
    """A started reader, or a ToolError (exit 3) when the broker cannot be reached."""
    reader = build_reader(settings)
    await start_client(reader, "reader", settings.kafka.bootstrap_servers)
    return reader


async def close_reader(reader: AIOKafkaConsumer) -> None:
    """Stop a reader; give up after a few seconds (aiokafka's fetcher can hang on stop when the
    assignment changed just before, and the process is about to end anyway)."""
    with contextlib.suppress(TimeoutError, KafkaError):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await reader.stop()


async def partitions_of(reader: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, or a ToolError when it does not exist.

    The reader learns every topic's partitions when it starts; a topic created later is not
    followed (the tools start their reader right before they use it).
    """
    numbers = reader.partitions_for_topic(topic)
    if not numbers:
        try:
            exists = topic in await reader.topics()
        except KafkaError as exc:
            raise ToolError(f"cannot read the topics: {exc!r}", EXIT_BROKER) from exc
        state = "was created after this run started: run again" if exists else "does not exist"
        raise ToolError(f"topic {topic!r} {state}", EXIT_USAGE)
    return [TopicPartition(topic, p) for p in sorted(numbers)]


async def end_offsets(
    reader: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition, checked by reading the last batch.

    A partition is done once a poll has delivered its last batch whole (a poll that returned
    fewer records than it may: nothing it fetched was held back), or found nothing more: on a
    topic being written, what came after the listing does not keep the probe reading."""
    firsts = await reader.beginning_offsets(list(tps))
    ends: dict[TopicPartition, int] = dict(await reader.end_offsets(list(tps)))
    probe = [tp for tp in tps if ends[tp] > firsts[tp]]
    if not probe:
        return ends
    reader.assign(probe)
    for tp in probe:
        reader.seek(tp, ends[tp] - 1)
    todo = set(probe)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            while todo:
                batch = await reader.getmany(*todo, timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
                whole = sum(map(len, batch.values())) < _MAX_RECORDS
                for tp, records in batch.items():
                    if records:
                        ends[tp] = max(ends[tp], records[-1].offset + 1)
                        if whole:  # the batch at the listed end, and whatever followed it, read
                            todo.discard(tp)
                for tp in list(todo):
                    if tp not in batch and await reader.position(tp) >= ends[tp]:
                        todo.discard(tp)  # read up to the end: nothing follows
    except TimeoutError:
        left = ", ".join(f"{tp.topic}:{tp.partition}" for tp in sorted(todo))
        raise ToolError(
            f"the broker did not deliver the last records of {left} within "
            f"{PROBE_TIMEOUT_S:g} s (their end offsets could not be checked)",
            EXIT_BROKER,
        ) from None
    # The probe's assignment stays until the next assign(): unassigning right before stop()
    # can hang aiokafka's fetcher (it swallows its own cancellation while dropping fetches).
    return ends


async def _first_at(
    reader: AIOKafkaConsumer, tps: Sequence[TopicPartition], when_ms: int, ends: dict[Any, int]
) -> dict[TopicPartition, int]:
    """Where to start looking for the first record at or after `when_ms` (at or before it)."""
    found = await reader.offsets_for_times(dict.fromkeys(tps, when_ms))
    result = {}
    for tp in tps:
        hit = found.get(tp)
        # No record at or after the time: Kafka answers None; tansu answers timestamp -1.
        result[tp] = ends[tp] if hit is None or hit.timestamp < 0 else hit.offset
    return result


async def resolve(
    reader: AIOKafkaConsumer,
    topic: str,
    partitions: Sequence[int] | None,
    start: Bound | None,
    end: Bound | None,
) -> list[PartitionRange]:
    """The offsets to read in each selected partition."""
    every = await partitions_of(reader, topic)
    if partitions:
        unknown = sorted(set(partitions) - {tp.partition for tp in every})
        if unknown:
            raise ToolError(f"topic {topic!r} has no partition {unknown} (it has {len(every)})")
        every = [tp for tp in every if tp.partition in set(partitions)]
    try:
        firsts = await reader.beginning_offsets(every)
        ends = await end_offsets(reader, every)
        starts = dict(firsts)
        stops = dict(ends)
        if start is not None and start.offset is not None:
            starts = {tp: max(firsts[tp], start.offset) for tp in every}
        elif start is not None and start.timestamp_ms is not None:
            starts = await _first_at(reader, every, start.timestamp_ms, ends)
        if end is not None and end.offset is not None:
            stops = {tp: min(ends[tp], end.offset) for tp in every}
    except KafkaError as exc:
        raise ToolError(f"cannot list the offsets of {topic!r}: {exc!r}", EXIT_BROKER) from exc
    from_ms = start.timestamp_ms if start is not None else None
    to_ms = end.timestamp_ms if end is not None else None
    return [
        PartitionRange(tp, starts[tp], max(starts[tp], stops[tp]), from_ms, to_ms) for tp in every
    ]


class _Cursor:
    """Per-partition filtering: offsets below `end`, times within `[from_ms, to_ms)`."""

    def __init__(self, r: PartitionRange) -> None:
        self.range = r
        self.found_start = r.from_ms is None
        self.done = False

    def keep(self, records: Sequence[Any]) -> list[Any]:
        kept = []
        for record in records:
            if record.offset >= self.range.end:
                self.done = True
                break
            if not self.found_start:
                if record.timestamp < (self.range.from_ms or 0):
                    continue
                self.found_start = True
            if self.range.to_ms is not None and record.timestamp >= self.range.to_ms:
                self.done = True
                break
            kept.append(record)
        return kept


async def read_ranges(
    reader: AIOKafkaConsumer,
    ranges: Sequence[PartitionRange],
    stopping: asyncio.Event | None = None,
) -> AsyncIterator[list[Any]]:
    """Yield the records of the ranges in chunks (each partition in offset order)."""
    cursors = {r.partition: _Cursor(r) for r in ranges if r.size > 0}
    if not cursors:
        return
    reader.assign(list(cursors))
    for tp, cursor in cursors.items():
        reader.seek(tp, cursor.range.start)
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while cursors and not (stopping is not None and stopping.is_set()):
        batch = await reader.getmany(*cursors, timeout_ms=500, max_records=_MAX_RECORDS)
        chunk = [r for tp, records in batch.items() for r in cursors[tp].keep(records)]
        if batch:
            last_progress = loop.time()
        if chunk:
            yield chunk
        for tp, cursor in list(cursors.items()):
            if cursor.done or await reader.position(tp) >= cursor.range.end:
                del cursors[tp]
                reader.pause(tp)
        if cursors and loop.time() - last_progress > STALL_TIMEOUT_S:
            stuck = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in cursors)
            raise ToolError(f"no records from {stuck} for {STALL_TIMEOUT_S:g}s", EXIT_BROKER)


def topic_named(settings: ToolsConfig, name: str | None, default: str) -> str:
    """`requests`, `created`, `rejected` and `dead-letter` name the topics of the settings;
    anything else is a topic name as is."""
    aliases = {
        "requests": settings.topics.requests,
        "created": settings.topics.created,
        "rejected": settings.topics.rejected,
        "dead-letter": settings.topics.dead_letter,
    }
    chosen = name or default
    return aliases.get(chosen, chosen)


def position_of(record: Any) -> str:
    """`topic:partition:offset` of a consumed record (where summaries point)."""
    return f"{record.topic}:{record.partition}:{record.offset}"


@dataclass(frozen=True, slots=True)
class RangeSpec:
    """A topic range as the command line gives it (`--topic`, `--partition`, `--from`, `--to`)."""

    topic: str | None = None
    partitions: tuple[int, ...] = ()
    start: str | None = None
    end: str | None = None


@contextlib.asynccontextmanager
async def open_range(
    settings: ToolsConfig, spec: RangeSpec, default_topic: str
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[PartitionRange]]]:
    """A started reader and the ranges `spec` selects, for the block: `async with
    open_range(...) as (reader, ranges)`; the reader is stopped when the block ends."""
    start = Bound.parse(spec.start, "--from")
    end = Bound.parse(spec.end, "--to")
    topic = topic_named(settings, spec.topic, default_topic)
    reader = await open_reader(settings)
    try:
        yield reader, await resolve(reader, topic, spec.partitions or None, start, end)
    finally:
        await close_reader(reader)
