"""The reply publisher: sends a batch of records and returns once every one is acknowledged.

Records are packed into one record batch per partition with aiokafka's batch API
(`create_batch` / `send_batch`), which costs about half the CPU of one `send()` per record.
Partitioning is the Java client's (murmur2 of the key), so per-key order is the same as `send()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError
from aiokafka.partitioner import DefaultPartitioner

from consumer.kafka.codec import OutRecord
from schemas.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

OPTIONAL_TOPIC_WAIT_S = 2.0
"""How long to wait for the metadata of a requester-named reply topic before skipping it."""
MISSING_TOPIC_MEMORY_S = 60.0
_TRANSIENT = (KafkaTimeoutError, UnknownError)
"""Errors aiokafka does not mark retriable that a retry can still cure: a request that timed out
while the broker was away, and a broker's unexpected error (code -1; the memory-only dev broker
answers it to the first produce on a partition it is re-creating after a restart). Nothing is
committed while a batch is retried, so retrying is never less safe than crashing."""


class KafkaPublisher:
    """Publishes replies and dead letters with the producer's acks; refuses use before `start()`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._missing: dict[str, float] = {}
        self._started = False

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def _partitions(self, topic: str, optional: bool) -> list[int] | None:
        """The topic's partitions; None for an optional topic that does not exist."""
        if optional:
            if time.monotonic() - self._missing.get(topic, -MISSING_TOPIC_MEMORY_S) < (
                MISSING_TOPIC_MEMORY_S
            ):
                return None
            try:
                async with asyncio.timeout(OPTIONAL_TOPIC_WAIT_S):
                    return sorted(await self._producer.partitions_for(topic))
            except (TimeoutError, KafkaTimeoutError):
                self._missing[topic] = time.monotonic()
                log.warning("reply topic %r named by a request does not exist: skipped", topic)
                return None
        return sorted(await self._producer.partitions_for(topic))

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Send all records (per-partition order kept) and wait for every acknowledgement."""
        if not self._started:
            raise RuntimeError("KafkaPublisher.publish() called before start()")
        try:
            await self._publish(records)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"publishing {len(records)} records failed: {exc!r}",
                retriable=isinstance(exc, _TRANSIENT) or bool(getattr(exc, "retriable", False)),
            ) from exc

    async def _publish(self, records: Sequence[OutRecord]) -> None:
        producer = self._producer
        partitions: dict[str, list[int] | None] = {}
        for topic, optional in {(r.topic, r.optional) for r in records}:
            partitions[topic] = await self._partitions(topic, optional)
        open_batches: dict[tuple[str, int], object] = {}
        ready: list[tuple[tuple[str, int], object]] = []
        for record in records:
            available = partitions[record.topic]
            if available is None:
                continue
            partition = self._partitioner(record.key, available, available)
            destination = (record.topic, partition)
            batch = open_batches.get(destination)
            if batch is not None and _append(batch, record):
                continue
            if batch is not None:
                ready.append((destination, batch))
            batch = producer.create_batch()
            if not _append(batch, record):
                raise BrokerUnavailableError(
                    f"a record for {record.topic} is larger than the batch size", retriable=False
                )
            open_batches[destination] = batch
        ready.extend(open_batches.items())
        pending = [
            await producer.send_batch(batch, topic, partition=partition)
            for (topic, partition), batch in ready
        ]
        await asyncio.gather(*pending)


def _append(batch: object, record: OutRecord) -> bool:
    """Append to a BatchBuilder; False when it is full."""
    appended = batch.append(  # type: ignore[attr-defined]  # aiokafka is untyped
        key=record.key, value=record.value, timestamp=None, headers=record.headers
    )
    return appended is not None
