"""Requests published in per-partition batches (`producer_tools/bridge/batches.py`), against a
stand-in producer: which batch each record joins, and what each request's future says.

The bridge's integration, e2e and fault suites publish every request through it on the real
embedded broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner

from producer_tools.bridge.batches import RequestBatches
from schemas.errors import BrokerUnavailableError

TOPIC = "ucs.tasks.requests"
PARTITIONS = [0, 1, 2, 3, 4, 5]


class Batch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: None, headers: Any) -> Any:
        if self.records and len(self.records) >= self.capacity:
            return None  # full, as aiokafka's BatchBuilder says it
        self.records.append((key, value))
        return object()


class Cluster:
    def __init__(self, partitions: set[int] | None) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions if topic == TOPIC else None


class Producer:
    """What RequestBatches uses of AIOKafkaProducer; deliveries are settled by the test."""

    def __init__(self, capacity: int = 100, known: bool = True) -> None:
        self.capacity = capacity
        self.client = type("Client", (), {})()
        self.client.cluster = Cluster(set(PARTITIONS) if known else None)
        self.sent: list[tuple[int, Batch, asyncio.Future[Any]]] = []
        self.refuse: dict[int, Exception] = {}
        self.asked_metadata = 0

    def create_batch(self) -> Batch:
        return Batch(self.capacity)

    async def partitions_for(self, topic: str) -> set[int]:
        self.asked_metadata += 1
        return set(PARTITIONS)

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        assert topic == TOPIC
        if partition in self.refuse:
            raise self.refuse[partition]
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((partition, batch, delivery))
        return delivery


def partition_of(key: bytes) -> int:
    return int(DefaultPartitioner()(key, PARTITIONS, PARTITIONS))


async def settle_turns() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_records_of_one_turn_go_as_one_batch_per_partition_as_send_would_choose() -> None:
    producer = Producer()
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    keys = [str(1000 + i).encode() for i in range(40)]
    acks = [batches.add(key, b"v" + key, [("ce_id", key)]) for key in keys]
    await settle_turns()

    by_partition = {partition: batch for partition, batch, _ in producer.sent}
    assert len(producer.sent) == len(by_partition) == len({partition_of(k) for k in keys})
    for key in keys:
        assert (key, b"v" + key) in by_partition[partition_of(key)].records
    assert not any(ack.done() for ack in acks)  # acknowledged only when their batch is

    for _, _, delivery in producer.sent:
        delivery.set_result(None)
    await settle_turns()
    assert all(ack.done() and ack.exception() is None for ack in acks)


async def test_a_full_batch_is_followed_by_another_and_order_is_kept_per_partition() -> None:
    producer = Producer(capacity=3)
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    key = b"42"
    acks = [batches.add(key, str(i).encode(), []) for i in range(7)]
    await settle_turns()
    assert [len(batch.records) for _, batch, _ in producer.sent] == [3, 3, 1]
    values = [value for _, batch, _ in producer.sent for _, value in batch.records]
    assert values == [str(i).encode() for i in range(7)]
    producer.sent[0][2].set_result(None)
    producer.sent[1][2].set_exception(KafkaTimeoutError())
    await settle_turns()
    assert [a.exception() is None for a in acks[:3]] == [True] * 3
    assert all(isinstance(a.exception(), KafkaTimeoutError) for a in acks[3:6])
    assert not acks[6].done()


async def test_a_refused_hand_over_fails_the_requests_not_yet_handed_over_only() -> None:
    producer = Producer()
    keys = sorted({str(n).encode() for n in range(100)}, key=partition_of)
    first, refused = partition_of(keys[0]), partition_of(keys[-1])
    assert first != refused
    producer.refuse[refused] = KafkaTimeoutError()
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    acks = {key: batches.add(key, b"v", []) for key in keys}
    await settle_turns()
    for _, _, delivery in producer.sent:
        delivery.set_result(None)
    await settle_turns()
    for key, ack in acks.items():
        if partition_of(key) == refused:
            assert isinstance(ack.exception(), KafkaTimeoutError)
    assert acks[keys[0]].exception() is None


async def test_a_request_that_gave_up_before_its_batch_left_is_not_sent() -> None:
    producer = Producer()
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    gave_up = batches.add(b"1", b"late", [])
    kept = batches.add(b"1", b"kept", [])
    gave_up.set_exception(TimeoutError())
    await settle_turns()
    assert [value for _, batch, _ in producer.sent for _, value in batch.records] == [b"kept"]
    assert not kept.done()
    assert isinstance(gave_up.exception(), TimeoutError)


async def test_closing_fails_what_is_queued_and_every_later_request() -> None:
    producer = Producer()
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    queued = batches.add(b"1", b"v", [])
    down = BrokerUnavailableError("The Kafka broker is unavailable: gone.")
    batches.close(down)
    later = batches.add(b"2", b"v", [])
    await settle_turns()
    assert producer.sent == []
    assert queued.exception() is down
    assert later.exception() is down


async def test_an_unknown_topic_is_waited_for_as_send_would() -> None:
    producer = Producer(known=False)
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    ack = batches.add(b"7", b"v", [])
    await settle_turns()
    assert producer.asked_metadata == 1
    assert [partition for partition, _, _ in producer.sent] == [partition_of(b"7")]
    producer.sent[0][2].set_result(None)
    await settle_turns()
    assert ack.exception() is None


@pytest.mark.parametrize("cancelled", [True, False])
async def test_a_cancelled_or_failed_delivery_reaches_each_request(cancelled: bool) -> None:
    producer = Producer()
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    acks = [batches.add(b"9", b"v", []) for _ in range(3)]
    await settle_turns()
    (_, _, delivery) = producer.sent[0]
    if cancelled:
        delivery.cancel()
    else:
        delivery.set_exception(KafkaTimeoutError())
    await settle_turns()
    for ack in acks:
        assert ack.cancelled() if cancelled else isinstance(ack.exception(), KafkaTimeoutError)


async def test_a_record_the_batch_refuses_fails_its_requests_instead_of_stranding_them() -> None:
    producer = Producer()

    def refusing() -> Batch:
        batch = Batch(100)

        def append(**_: Any) -> Any:
            raise TypeError("a value the record format cannot hold")

        batch.append = append  # type: ignore[method-assign]
        return batch

    producer.create_batch = refusing  # type: ignore[method-assign]
    batches = RequestBatches(producer, TOPIC)  # type: ignore[arg-type]
    acks = [batches.add(b"1", b"v", []) for _ in range(2)]
    await settle_turns()
    assert all(isinstance(ack.exception(), TypeError) for ack in acks)
    later = batches.add(b"1", b"v", [])  # the flush went on: a later record is tried again
    await settle_turns()
    assert isinstance(later.exception(), TypeError)
