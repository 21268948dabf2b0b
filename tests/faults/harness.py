"""The fault suite's machinery: consumer processes to kill, a fast feed of task-start records that
remembers where each landed, and a log of every reply (the checks are in `checks.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas import wire
from tests import servers
from tests.processes import ChildProcess, start_consumer
from tests.servers import StackSettings

if TYPE_CHECKING:
    from tests.faults import checks

SEED_ENV = "UCS_FAULTS_SEED"
SOURCE = "urn:ucs-tasks:faults"

Header = tuple[str, bytes | None]
Record = tuple[bytes | None, bytes | None, list[Header]]
"""(key, value, headers) of one record to publish; a header value may be None (null)."""


def fault_settings(kafka_bootstrap: str, database_url: str, **overrides: object) -> StackSettings:
    """Random topics and group, a short session (a killed member is noticed in 1.5 s and a join
    takes about half that on the embedded broker) and fast retries (outages end within 0.5 s
    of the server coming back)."""
    base = servers.make_settings(kafka_bootstrap, database_url)
    tuning: dict[str, object] = {
        "consumer_session_timeout_ms": 1500,
        "consumer_heartbeat_interval_ms": 250,
        "retry_backoff_initial_ms": 50,
        "retry_backoff_max_ms": 500,
    }
    return base.with_(**tuning | overrides)


@dataclass
class Report:
    """Summary lines of the run, printed after the tests (see conftest.pytest_terminal_summary)."""

    seed: int
    lines: list[str] = field(default_factory=list)
    ids_used: int = 0
    tasks: int = 0
    databases: int = 0

    def add(self, line: str) -> None:
        print(line)  # shown with -s, and in a failing test's captured output
        self.lines.append(line)

    def count_ids(self, rows: checks.Rows) -> None:
        """Add a test's database (its sequence started at 1) to the suite-wide id figure."""
        self.ids_used += rows.next_task_id - 1
        self.tasks += rows.span()[2]
        self.databases += 1

    def ids_line(self) -> str | None:
        if not self.tasks:
            return None
        return (
            f"faults: ids-per-task suite={self.ids_used / self.tasks:.3f}"
            f" ({self.ids_used} ids handed out for {self.tasks} tasks on {self.databases}"
            " test databases)"
        )


def task_record(service_id: int, event_id: str, body: bytes, source: str = SOURCE) -> Record:
    """A binary-mode task-start record whose event id is also its correlation id."""
    key, value, headers = wire.encode_request_binary(
        service_id=service_id, body=body, event_id=event_id, source=source, correlation_id=event_id
    )
    return key, value, list(headers)


def valid_records(prefix: str, count: int, services: int = 53) -> list[Record]:
    """`count` valid events `<prefix>-<i>`, spread over `services` service ids (so partitions)."""
    return [
        task_record(1000 + i % services, f"{prefix}-{i}", b'{"state_id": %d, "n": "%d"}' % (i, i))
        for i in range(count)
    ]


def event_id_of(record: Record) -> str:
    """The `ce_id` of a binary-mode record built by `task_record`."""
    return next(v for k, v in record[2] if k == "ce_id" and v is not None).decode()


# --- processes -----------------------------------------------------------------------------


class ConsumerProcess(ChildProcess):
    """One `python -m consumer` child: start, SIGKILL, SIGTERM (finish the batch in hand),
    resident memory, its log."""

    name = "consumer"

    def __init__(self, settings: StackSettings, log_path: Path, **overrides: object) -> None:
        super().__init__(settings, log_path)
        self._overrides = overrides
        self.starts = 0
        self._life_starts_at = 0

    def start(self) -> None:
        if self.alive:
            raise RuntimeError("consumer already running")
        self._life_starts_at = len(self.log_text())
        self._proc = start_consumer(self.settings, self.log_path, **self._overrides)
        self.starts += 1

    def log_count(self, fragment: str) -> int:
        return self.log_text().count(fragment)

    async def stacks(self) -> str:
        """The process's Python stacks, as `kill -USR1` (its threads) and `kill -USR2` (its
        asyncio tasks, each down to the future it awaits) make it write them to its log."""
        before = len(self.log_text())
        if self.alive:
            os.kill(self.pid, signal.SIGUSR1)
            os.kill(self.pid, signal.SIGUSR2)
            await asyncio.sleep(0.5)
        return self.log_text()[before:]

    @property
    def consuming(self) -> bool:
        """Whether this life of the process has joined its group and started consuming (its
        signal handlers are in place long before: a SIGTERM now is a graceful stop)."""
        return "consuming" in self.log_text()[self._life_starts_at :]


# --- publishing ----------------------------------------------------------------------------


class Feed:
    """Publishes records fast (one record batch per partition, as the tools do) and tells where
    each one landed, so offsets can be checked against what the consumer committed."""

    def __init__(self, settings: StackSettings, max_request_bytes: int = 1 << 20) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            **settings.kafka.client_options(),
            acks="all",
            enable_idempotence=False,
            linger_ms=5,
            max_batch_size=256 * 1024,
            max_request_size=max_request_bytes,
        )
        self._partitioner = DefaultPartitioner()

    async def __aenter__(self) -> Feed:
        await self._producer.start()
        return self

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer (for records no `publish` can build: tests/kafka_poison.py)."""
        return self._producer

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def publish(
        self, records: Sequence[Record], topic: str | None = None
    ) -> list[tuple[int, int]]:
        """Publish and wait for every ack; returns (partition, offset) of each record, in order.
        A keyless record goes round-robin; the others where aiokafka's partitioner puts them."""
        topic = topic or self._settings.topics.requests
        partitions = sorted(await self._producer.partitions_for(topic))
        by_partition: dict[int, list[int]] = {}
        for index, (key, _, _) in enumerate(records):
            partition = (
                partitions[index % len(partitions)]
                if key is None
                else self._partitioner(key, partitions, partitions)
            )
            by_partition.setdefault(partition, []).append(index)
        sent: list[tuple[asyncio.Future[Any], int, list[int]]] = []
        for partition, indices in by_partition.items():
            batch, members = self._producer.create_batch(), list[int]()
            for index in indices:
                key, value, headers = records[index]
                if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    future = await self._producer.send_batch(batch, topic, partition=partition)
                    sent.append((future, partition, members))
                    batch, members = self._producer.create_batch(), list[int]()
                    batch.append(key=key, value=value, timestamp=None, headers=headers)
                members.append(index)
            sent.append((await self._producer.send_batch(batch, topic, partition=partition),
                         partition, members))  # fmt: skip
        positions: list[tuple[int, int]] = [(-1, -1)] * len(records)
        for future, partition, members in sent:
            base = (await future).offset
            for n, index in enumerate(members):
                positions[index] = (partition, base + n)
        return positions

    async def paced(
        self,
        records: Sequence[Record],
        chunk: Callable[[], int],
        pause_s: Callable[[], float],
        positions: dict[str, tuple[int, int]],
    ) -> None:
        """Publish in chunks with pauses (the flow), filling `positions` by event id."""
        start = 0
        while start < len(records):
            part = records[start : start + chunk()]
            for record, position in zip(part, await self.publish(part), strict=True):
                positions[event_id_of(record)] = position
            start += len(part)
            await asyncio.sleep(pause_s())


# --- replies -------------------------------------------------------------------------------


@dataclass
class ReplyLog:
    """Reads the created, rejected and dead-letter topics from their start (no group)."""

    settings: StackSettings
    created: dict[str, list[int]] = field(default_factory=dict)
    """Event id -> the task id of every task-created reply (re-sent ones included)."""
    rejected: dict[str, list[str]] = field(default_factory=dict)
    """Event id -> the code of every task-rejected reply."""
    completed: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    """End event id -> (task id, `completed` timestamp / duration) of every task-completed reply."""
    dead_letters: dict[tuple[int, int], str] = field(default_factory=dict)
    """(partition, offset) of the request -> the dead letter's error header."""
    dead_letter_records: dict[tuple[int, int], list[Any]] = field(default_factory=dict)
    """(partition, offset) of the request -> every dead letter written for it."""
    replies: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ReplyLog:
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            **s.kafka.client_options(),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=16 << 20,
            fetch_max_bytes=64 << 20,
        )
        await self._consumer.start()
        topics = (s.topics.created, s.topics.rejected, s.topics.dead_letter)
        self._consumer.assign([
            TopicPartition(topic, p)
            for topic in topics
            for p in self._consumer.partitions_for_topic(topic) or ()
        ])  # fmt: skip
        self._task = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _listen(self) -> None:
        assert self._consumer is not None
        s = self.settings
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    self._take(s, record)

    def _take(self, s: StackSettings, record: Any) -> None:
        if record.topic == s.topics.dead_letter:
            headers = {k: v for k, v in record.headers if v is not None}
            where = (int(headers[wire.DLQ_PARTITION]), int(headers[wire.DLQ_OFFSET]))
            self.dead_letters[where] = headers[wire.DLQ_ERROR].decode("utf-8", "replace")
            self.dead_letter_records.setdefault(where, []).append(record)
            return
        self.replies += 1
        payload = orjson.loads(record.value)
        event_id = payload["event"]["id"]
        if payload["kind"] == "task.created":
            self.created.setdefault(event_id, []).append(payload["task_id"])
        elif payload["kind"] == "task.completed":
            task = payload["task"]
            completion = f"{task['completed']['timestamp']}/{task['duration']}"
            self.completed.setdefault(event_id, []).append((payload["task_id"], completion))
        else:
            self.rejected.setdefault(event_id, []).append(payload["code"])

    @property
    def answered(self) -> int:
        """Distinct events answered, either way."""
        return len(self.created) + len(self.rejected.keys() - self.created.keys())

    async def settled(self, quiet_s: float = 0.3, timeout_s: float = 30.0) -> None:
        """Wait until every reply topic is read up to its high watermark and nothing new came
        for `quiet_s` (call once nothing produces replies any more). The watermark is the one
        fetches report: the embedded broker's ListOffsets answers the last batch's base offset
        + 1, not the end of the log."""
        assert self._consumer is not None
        consumer = self._consumer
        async with asyncio.timeout(timeout_s):
            while True:
                seen = self.replies + len(self.dead_letters)
                await asyncio.sleep(quiet_s)
                behind = False
                for tp in consumer.assignment():
                    highwater = consumer.highwater(tp)
                    behind |= highwater is None or await consumer.position(tp) < highwater
                if not behind and seen == self.replies + len(self.dead_letters):
                    return

    async def wait_until(
        self, condition: Callable[[], bool], timeout_s: float, why: Callable[[], str]
    ) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout_s}s: {why()}") from None


# --- helpers ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def background(work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    """Run `work` as a task for the block; cancelled if still running when the block ends."""
    task = asyncio.create_task(work)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], timeout_s: float, why: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s: {why}")
        await asyncio.sleep(0.02)
