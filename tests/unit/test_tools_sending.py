"""The tools' publishing helpers (`producer_tools/tools/_sending.py`) without a broker: a
client that cannot start is released, and records join their partition's batch as `send()`
would place them."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from producer_tools.devstack.embedded import free_port
from producer_tools.tools._progress import ToolError
from producer_tools.tools._sending import BatchSender, start_client

PARTITIONS = [0, 1, 2]


async def test_a_client_that_cannot_reach_the_broker_is_stopped_not_leaked() -> None:
    down = f"127.0.0.1:{free_port()}"
    reader = AIOKafkaConsumer(bootstrap_servers=down, request_timeout_ms=2000)
    with pytest.raises(ToolError) as raised:
        await start_client(reader, "reader", down)
    assert raised.value.exit_code == 3
    assert reader._closed  # what aiokafka's "Unclosed AIOKafkaConsumer" warning checks


class Batch:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def append(self, *, key: Any, value: bytes | None, timestamp: None, headers: Any) -> Any:
        if len(self.values) == 2:
            return None  # full
        self.values.append(value)
        return object()

    def record_count(self) -> int:
        return len(self.values)


class Producer:
    def create_batch(self) -> Batch:
        return Batch()


def test_append_places_records_by_key_and_hands_back_a_full_batch() -> None:
    sender = BatchSender(Producer(), "t", PARTITIONS)  # type: ignore[arg-type]
    key = b"21456878"
    partition = DefaultPartitioner()(key, PARTITIONS, PARTITIONS)
    assert sender.append(key, b"1", []) is None
    assert sender.append(key, b"2", []) is None
    full = sender.append(key, b"3", [])
    assert full is not None
    assert full[0] == partition
    assert full[1].values == [b"1", b"2"]
    assert sender.append(key, b"4", []) is None  # "3" opened the next batch
