"""The reply publisher's partitioning: the Java client's (as `send()`), remembered per key."""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka import publisher
from consumer.kafka.publisher import KafkaPublisher


def a_publisher() -> KafkaPublisher:
    producer: Any = object()  # partitioning never touches the producer
    return KafkaPublisher(producer)


@given(keys=st.lists(st.binary(max_size=24), min_size=1, max_size=40), count=st.integers(1, 64))
def test_a_key_goes_where_send_would_send_it_the_first_time_and_every_time_after(
    keys: list[bytes], count: int
) -> None:
    partitions = list(range(count))
    ours = a_publisher()
    expected = [DefaultPartitioner()(key, partitions, partitions) for key in keys]
    assert [ours._partition(key, partitions) for key in keys] == expected
    assert [ours._partition(key, partitions) for key in keys] == expected  # remembered


def test_the_same_key_follows_a_change_of_partition_count() -> None:
    ours = a_publisher()
    for count in (3, 6, 12):
        partitions = list(range(count))
        assert ours._partition(b"1001", partitions) == DefaultPartitioner()(
            b"1001", partitions, partitions
        )


def test_a_record_without_a_key_goes_to_one_of_the_partitions() -> None:
    assert a_publisher()._partition(None, [0, 1, 2]) in (0, 1, 2)


def test_the_memory_of_keys_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(publisher, "_MAX_REMEMBERED_KEYS", 10)
    ours = a_publisher()
    for i in range(25):
        ours._partition(str(i).encode(), [0, 1, 2, 3])
    assert len(ours._index_of) <= 10
