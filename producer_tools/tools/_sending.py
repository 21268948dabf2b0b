"""Fast, acknowledged publishing for the tools: per-partition batches, acks gathered as they come.

aiokafka's `send()` costs a future and an accumulator round per record; building each
partition's batch ourselves and handing it over whole (`send_batch`) is several times faster, and
the broker sees the same records: the partition is chosen by aiokafka's own default partitioner
from the key (the service id), exactly as `send()` would. A full batch is handed over without
waiting for its ack (the accumulator applies back-pressure: one queued batch per partition);
acks are counted by callbacks, and the first failure stops the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from producer_tools.tools._progress import EXIT_BROKER, EXIT_USAGE, ToolError
from producer_tools.tools.settings import ToolsConfig

BATCH_BYTES: Final = 512 * 1024
"""Largest batch per partition; a single larger record still goes (alone in its batch)."""
METADATA_TIMEOUT_S: Final = 15.0
_KEY_CACHE_SIZE = 1_000_000
_RATE_SLACK_S = 0.005  # sleep only when this far ahead of the schedule: sleeps are coarse


def build_producer(settings: ToolsConfig) -> AIOKafkaProducer:
    """The tools' producer: acks from all in-sync replicas, no idempotence (not every
    Kafka-protocol broker supports it; event identities make resends harmless anyway)."""
    return AIOKafkaProducer(
        **settings.kafka.client_options(),
        client_id="ucs-tasks-tools",
        acks="all",
        enable_idempotence=False,
        linger_ms=10,
        max_batch_size=BATCH_BYTES,
        max_request_size=settings.contract.max_request_record_bytes,
    )


async def start_client(client: Any, what: str, bootstrap: str) -> None:
    """Start an aiokafka client, turning 'cannot connect' into a ToolError (exit 3)."""
    try:
        await client.start()
    except (KafkaConnectionError, KafkaError, OSError) as exc:
        with contextlib.suppress(Exception):  # what start() opened (else: "Unclosed ..." at exit)
            await client.stop()
        raise ToolError(
            f"cannot reach the broker at {bootstrap} ({what}): {exc}", EXIT_BROKER
        ) from exc


async def topic_partitions(producer: AIOKafkaProducer, topic: str) -> list[int]:
    """The partitions of an existing topic, or a ToolError naming it.

    A topic the broker did not list when the producer started is refused: asking for its
    metadata would make a broker that auto-creates topics create a misspelled one.
    """
    known = producer.client.cluster.topics()
    if known and topic not in known:
        raise ToolError(f"topic {topic!r} does not exist (the tools never create topics)")
    try:
        async with asyncio.timeout(METADATA_TIMEOUT_S):
            partitions = await producer.partitions_for(topic)
    except (TimeoutError, KafkaError) as exc:
        raise ToolError(f"topic {topic!r} does not exist or has no partitions", EXIT_USAGE) from exc
    return sorted(partitions)


async def open_sender(settings: ToolsConfig, topic: str) -> tuple[AIOKafkaProducer, BatchSender]:
    """A started producer (the caller stops it) and a BatchSender to `topic`, which must exist;
    or a ToolError saying why not (the producer then stopped)."""
    producer = build_producer(settings)
    try:
        await start_client(producer, "producer", settings.kafka.bootstrap_servers)
        partitions = await topic_partitions(producer, topic)
    except BaseException:
        with contextlib.suppress(Exception):  # already failing: stop quietly
            await producer.stop()
        raise
    return producer, BatchSender(producer, topic, partitions)


class BatchSender:
    """Publishes records to one topic in per-partition batches without awaiting each one.

    `send()` appends; a full batch is submitted at once, the others by `submit_all()` or
    `flush()`. `acked` counts acknowledged records; `on_ack(n)` is called as acks arrive.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: Sequence[int],
        on_ack: Callable[[int], None] | None = None,
    ) -> None:
        if not partitions:
            raise ValueError(f"topic {topic!r} has no partitions")
        self._producer = producer
        self._topic = topic
        self._partitions = list(partitions)
        self._partitioner = DefaultPartitioner()
        self._partition_of: dict[bytes | None, int] = {}
        self._open: dict[int, Any] = {}
        self._pending: deque[asyncio.Future[Any]] = deque()
        self._on_ack = on_ack
        self._error: BaseException | None = None
        self.acked = 0

    def _acked(self, count: int, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            self._error = self._error or asyncio.CancelledError()
            return
        if (error := future.exception()) is not None:
            self._error = self._error or error
            return
        self.acked += count
        if self._on_ack is not None:
            self._on_ack(count)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise ToolError(
                f"the broker refused records for {self._topic!r}: {self._error!r}", EXIT_BROKER
            ) from self._error

    async def send(self, key: bytes | None, value: bytes | None, headers: Sequence[Any]) -> None:
        """Append one record; submits its partition's batch when that batch is full."""
        full = self.append(key, value, headers)
        if full is not None:
            await self.submit(full)

    def append(self, key: bytes | None, value: bytes | None, headers: Sequence[Any]) -> Any:
        """Append one record without awaiting: None, or a full batch that the caller must
        hand over with `submit` before appending again (the record is in a new batch)."""
        if self._error is not None:
            self._raise_if_failed()
        partition = self._partition_of.get(key)
        if partition is None:  # murmur2 is pure Python: remember each key's partition
            partition = self._partitioner(key, self._partitions, self._partitions)
            if key is not None and len(self._partition_of) < _KEY_CACHE_SIZE:
                self._partition_of[key] = partition
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is not None:
            return None
        full = (partition, self._open.pop(partition))
        batch = self._open[partition] = self._producer.create_batch()
        batch.append(key=key, value=value, timestamp=None, headers=headers)
        return full

    async def submit(self, full: tuple[int, Any]) -> None:
        """Hand over a full batch `append` returned."""
        partition, batch = full
        await self._hand_over(partition, batch)

    async def _submit(self, partition: int) -> None:
        await self._hand_over(partition, self._open.pop(partition))

    async def _hand_over(self, partition: int, batch: Any) -> None:
        count = batch.record_count()
        if count == 0:
            return
        try:
            future = await self._producer.send_batch(batch, self._topic, partition=partition)
        except KafkaError as exc:
            raise ToolError(f"cannot publish to {self._topic!r}: {exc!r}", EXIT_BROKER) from exc
        future.add_done_callback(lambda f: self._acked(count, f))
        self._pending.append(future)
        while self._pending and self._pending[0].done():
            self._pending.popleft()

    async def submit_all(self) -> None:
        """Hand every open batch to the producer now (before a pause, or at the end)."""
        for partition in list(self._open):
            await self._submit(partition)

    async def flush(self) -> int:
        """Submit everything and wait for every ack; returns the acknowledged count."""
        await self.submit_all()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
            self._pending.clear()
        self._raise_if_failed()
        return self.acked


class RateLimiter:
    """Spaces records out to at most `rate` per second (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise ToolError("--rate must be a positive number of events per second")
        self._rate = rate
        self._start: float | None = None
        self._count = 0

    @property
    def limited(self) -> bool:
        """Whether there is a rate to keep (else `pace` never waits)."""
        return self._rate is not None

    def delay(self) -> float:
        """Seconds to wait before the next record (0 when on schedule)."""
        if self._rate is None:
            return 0.0
        now = time.monotonic()
        if self._start is None:
            self._start = now
        self._count += 1
        ahead = self._start + (self._count - 1) / self._rate - now
        return ahead if ahead > _RATE_SLACK_S else 0.0

    async def pace(
        self, before_pause: Callable[[], Awaitable[None]], stopping: asyncio.Event
    ) -> None:
        """Wait until the next record is due (at once when `stopping` is set); `before_pause`
        runs first, so nothing lingers unsent while we wait."""
        delay = self.delay()
        if delay <= 0 or stopping.is_set():
            return
        await before_pause()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stopping.wait()
