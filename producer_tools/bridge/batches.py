"""Requests published in record batches: the requests of a moment go out as one batch per
partition, each acknowledged when its batch is.

aiokafka's `send()` costs, per record, a future, a run of the default partitioner (murmur2, in
pure Python) and a round through the accumulator: about 17 us of CPU, against about 3 us for a
record in a batch built here and handed over whole with `send_batch()` (bench/README.md,
replay.py). `RequestBatches.add` only queues the record and returns the future of its
acknowledgement; one flush task, started by the first record of an event-loop turn, builds each
partition's batch from everything queued by then and hands it over (waiting, as `send()` would,
while that partition's previous batch is not yet on its way). Nothing waits for a batch to fill:
a lone request is a batch of one. The partition is chosen as `send()` chooses it: aiokafka's
default partitioner over all the topic's partitions, from the record's key.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

_KEY_CACHE_SIZE = 100_000
"""Keys (service ids, tenant-prefixed) whose partition is remembered; past it, computed."""


class _Queued(NamedTuple):
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    acked: asyncio.Future[None]


class RequestBatches:
    """Publishes records to one topic in per-partition batches, without linger."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] = []
        self._partition_of: dict[bytes | None, int] = {}
        self._queued: list[_Queued] = []
        self._flushing: asyncio.Task[None] | None = None
        self._closed: BaseException | None = None

    def add(
        self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        """Queue one record; the future is resolved by the broker's acknowledgement of its batch,
        or fails with the error that stopped the batch."""
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed is not None:
            acked.set_exception(self._closed)
            return acked
        self._queued.append(_Queued(key, value, headers, acked))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush(), name="bridge-request-batches")
        return acked

    def close(self, error: BaseException) -> None:
        """Fail what is queued or being handed over, and every later `add`, with `error`."""
        self._closed = error
        queued, self._queued = self._queued, []
        for record in queued:
            _fail(record.acked, error)
        if self._flushing is not None:
            self._flushing.cancel()

    async def _flush(self) -> None:
        queued: list[_Queued] = []
        try:
            while self._queued:
                queued, self._queued = self._queued, []
                await self._publish(queued)
        except asyncio.CancelledError:
            for record in queued:  # close() names the reason; a bare cancellation cancels
                _fail(record.acked, self._closed)
            raise
        finally:
            self._flushing = None

    async def _publish(self, queued: list[_Queued]) -> None:
        """Hand `queued` over as one batch per partition (more when one fills up); a failure
        fails the requests of every batch not handed over."""
        try:
            await self._refresh_partitions()
            handed = self._batches(queued)
        except Exception as exc:  # noqa: BLE001 - each request is failed with it
            for record in queued:
                _fail(record.acked, exc)
            return
        for index, (partition, batch, acks) in enumerate(handed):
            try:
                delivery = await self._producer.send_batch(batch, self._topic, partition=partition)
            except Exception as exc:  # noqa: BLE001 - each request is failed with it
                for _, _, refused in handed[index:]:
                    for acked in refused:
                        _fail(acked, exc)
                return
            delivery.add_done_callback(functools.partial(_settle, acks))

    def _batches(self, queued: list[_Queued]) -> list[tuple[int, Any, list[asyncio.Future[None]]]]:
        """(partition, batch, its requests' futures) for the requests still waiting."""
        open_: dict[int, tuple[Any, list[asyncio.Future[None]]]] = {}
        full: list[tuple[int, Any, list[asyncio.Future[None]]]] = []
        for key, value, headers, acked in queued:
            if acked.done():  # its request gave up (timeout, link down) before it went out
                continue
            partition = self._partition(key)
            batch = open_.get(partition)
            if batch is None:
                batch = open_[partition] = (self._producer.create_batch(), [])
            if batch[0].append(key=key, value=value, timestamp=None, headers=headers) is None:
                full.append((partition, *open_.pop(partition)))  # full: on to a new one
                batch = open_[partition] = (self._producer.create_batch(), [])
                batch[0].append(key=key, value=value, timestamp=None, headers=headers)
            batch[1].append(acked)
        return full + [(partition, batch, acks) for partition, (batch, acks) in open_.items()]

    async def _refresh_partitions(self) -> None:
        """The topic's partitions as the producer's metadata has them (waiting for it, as
        `send()` does, when the topic is not known yet)."""
        known = self._producer.client.cluster.partitions_for_topic(self._topic)
        if not known:
            known = await self._producer.partitions_for(self._topic)
        if len(known) != len(self._partitions):
            self._partitions = sorted(known)
            self._partition_of.clear()

    def _partition(self, key: bytes | None) -> int:
        partition = self._partition_of.get(key)
        if partition is None:
            partition = self._partitioner(key, self._partitions, self._partitions)
            if key is not None and len(self._partition_of) < _KEY_CACHE_SIZE:
                self._partition_of[key] = partition
        return partition


def _fail(acked: asyncio.Future[None], error: BaseException | None) -> None:
    """Fail a request's acknowledgement with `error` (None: cancel it), unless settled."""
    if acked.done():
        return
    if error is None:
        acked.cancel()
    else:
        acked.set_exception(error)


def _settle(acks: list[asyncio.Future[None]], delivery: asyncio.Future[Any]) -> None:
    """Hand a batch's outcome to each of its requests still waiting."""
    error = None if delivery.cancelled() else delivery.exception()  # always retrieved
    for acked in acks:
        if acked.done():
            continue
        if delivery.cancelled():
            acked.cancel()
        elif error is not None:
            acked.set_exception(error)
        else:
            acked.set_result(None)
