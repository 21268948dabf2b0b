"""The reply publisher: sends records and returns once each one is acknowledged or refused.

Records are packed into one record batch per partition with aiokafka's batch API
(`create_batch` / `send_batch`), which costs about half the CPU of one `send()` per record.
Partitioning is the Java client's (murmur2 of the key), so per-key order is the same as `send()`.

A broker that is away makes `publish` raise a retriable BrokerUnavailableError (the loop backs
off and settles the batch again). A broker that refuses records for good (too large, an invalid
or forbidden topic, a corrupt record...) refuses a whole batch: the batch is split in halves and
sent again until the refused records are found; they come back to the caller, every other record
is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    KafkaError,
    KafkaTimeoutError,
    TopicAuthorizationFailedError,
    UnknownError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner, murmur2

from consumer.kafka.aiokafka_internals import untrack_topics
from consumer.ports import COPY, OutRecord, Undelivered
from schemas.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

OPTIONAL_TOPIC_WAIT_S = 2.0
"""How long to wait for the metadata of a requester-named reply topic before calling it missing."""
MISSING_TOPIC_MEMORY_S = 60.0
_TRANSIENT = (KafkaTimeoutError, UnknownError)
"""Errors aiokafka does not mark retriable that a retry can still cure: a request that timed out
while the broker was away, and a broker's unexpected error (code -1; the memory-only dev broker
answers it to the first produce on a partition it is re-creating after a restart). Nothing is
committed while a batch is retried, so retrying is never less safe than crashing."""
_MAX_REMEMBERED_KEYS = 100_000
"""Partition indexes remembered (by key and partition count) before the memory starts again."""
_TOPIC_REFUSED = (InvalidTopicError, TopicAuthorizationFailedError)
"""Refusals of a whole topic: every record to it is refused alike, no need to split."""


def is_transient(exc: KafkaError) -> bool:
    """Whether backing off and trying again can cure `exc`."""
    return bool(exc.retriable) or isinstance(exc, _TRANSIENT)


def _problem(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class KafkaPublisher:
    """Publishes replies and dead letters with the producer's acks; refuses use before `start()`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._partitioner = DefaultPartitioner()
        self._index_of: dict[tuple[bytes, int], int] = {}
        self._missing: dict[str, float] = {}
        self._started = False

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        """Send all records (per-partition order kept) and wait for every acknowledgement; the
        records refused for good come back with the reason."""
        if not self._started:
            raise RuntimeError("KafkaPublisher.publish() called before start()")
        try:
            return await self._publish(records)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"publishing {len(records)} records failed: {exc!r}", retriable=is_transient(exc)
            ) from exc

    async def _publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        refused: list[Undelivered] = []
        partitions: dict[str, list[int] | str] = {}
        for topic, optional in {(r.topic, r.role == COPY) for r in records}:
            partitions[topic] = await self._partitions(topic, optional)
        missing = {topic for topic, found in partitions.items() if isinstance(found, str)}
        if missing:  # looked up, so tracked: no need to ask for them at each metadata refresh
            untrack_topics(self._producer, missing, partitions.keys() - missing)
        destinations: dict[tuple[str, int], list[OutRecord]] = {}
        for record in records:
            available = partitions[record.topic]
            if isinstance(available, str):  # why the topic cannot be written
                refused.append(Undelivered(record, available))
                continue
            partition = self._partition(record.key, available)
            destinations.setdefault((record.topic, partition), []).append(record)
        sent = await asyncio.gather(
            *(self._send(topic, number, part) for (topic, number), part in destinations.items()),
            return_exceptions=True,
        )
        away: KafkaError | None = None
        for ((topic, partition), part), result in zip(destinations.items(), sent, strict=True):
            if result is None:
                continue
            if not isinstance(result, KafkaError):
                raise result
            if is_transient(result):
                away = result
                continue
            refused += await self._isolate(topic, partition, part, result)
        if away is not None:
            raise away
        return refused

    def _partition(self, key: bytes | None, partitions: list[int]) -> int:
        """The Java client's partition for `key` (murmur2, the same as `send()`); a key's index
        is remembered: murmur2 runs in Python, and a batch's replies share few keys (services)."""
        if key is None:
            return int(self._partitioner(key, partitions, partitions))
        count = len(partitions)
        index = self._index_of.get((key, count))
        if index is None:
            if len(self._index_of) >= _MAX_REMEMBERED_KEYS:
                self._index_of.clear()
            index = self._index_of[key, count] = (murmur2(key) & 0x7FFFFFFF) % count
        return partitions[index]

    async def _partitions(self, topic: str, optional: bool) -> list[int] | str:
        """The topic's partitions, or why it cannot be written (a missing requester-named reply
        topic is remembered for a minute, so each batch does not wait for it again)."""
        try:
            if not optional:
                return sorted(await self._producer.partitions_for(topic))
            missing_since = self._missing.get(topic)
            if missing_since is not None and time.monotonic() - missing_since < (
                MISSING_TOPIC_MEMORY_S
            ):
                return "the topic does not exist"
            try:
                async with asyncio.timeout(OPTIONAL_TOPIC_WAIT_S):
                    return sorted(await self._producer.partitions_for(topic))
            except (TimeoutError, KafkaTimeoutError, UnknownTopicOrPartitionError):
                self._missing[topic] = time.monotonic()
                log.warning("reply topic %r named by a request does not exist", topic)
                return "the topic does not exist"
        except _TOPIC_REFUSED as exc:
            return _problem(exc)

    async def _send(self, topic: str, partition: int, records: Sequence[OutRecord]) -> None:
        """Send records to one partition (as few batches as fit) and wait for their acks."""
        producer = self._producer
        pending = []
        batch = producer.create_batch()
        for record in records:
            if _append(batch, record):
                continue
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            _append(batch, record)  # a first record always fits: batches grow to hold it
        pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)

    async def _isolate(
        self, topic: str, partition: int, records: Sequence[OutRecord], error: KafkaError
    ) -> list[Undelivered]:
        """Find the records the broker refuses, by sending halves again (order kept)."""
        if len(records) == 1 or isinstance(error, _TOPIC_REFUSED):
            log.warning(
                "the broker refused %d record(s) for %s-%d for good: %r",
                len(records), topic, partition, error,
            )  # fmt: skip
            return [Undelivered(record, _problem(error)) for record in records]
        refused: list[Undelivered] = []
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            try:
                await self._send(topic, partition, half)
            except KafkaError as exc:
                if is_transient(exc):
                    raise
                refused += await self._isolate(topic, partition, half, exc)
        return refused


def _append(batch: object, record: OutRecord) -> bool:
    """Append to a BatchBuilder; False when it is full."""
    appended = batch.append(  # type: ignore[attr-defined]  # aiokafka is untyped
        key=record.key, value=record.value, timestamp=None, headers=record.headers
    )
    return appended is not None
