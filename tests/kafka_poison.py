"""Writing records no well-behaved client writes: record batches built byte by byte (header names
that are not UTF-8, a corrupt record, a wrong checksum) and sent as they are.

The format: https://kafka.apache.org/documentation/#recordbatch. Sent with a plain
ProduceRequest through a producer's client, so the broker stores exactly these bytes.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import for_code
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.util import calc_crc32c

RawHeader = tuple[bytes, bytes | None]


def _varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)  # zig-zag
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def record(
    offset_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[RawHeader] = (),
    *,
    header_count: int | None = None,
) -> bytes:
    """One record with its length prefix; `header_count` may lie (a corrupt record)."""
    body = _varint(0) + _varint(0) + _varint(offset_delta) + _field(key) + _field(value)
    body += _varint(len(headers) if header_count is None else header_count)
    for name, header_value in headers:
        body += _field(name) + _field(header_value)
    return _varint(len(body)) + body


def batch(records: Sequence[bytes], *, bad_checksum: bool = False) -> bytes:
    """A v2 record batch of these records (offset deltas 0..n-1), no compression."""
    now_ms = int(time.time() * 1000)
    after_crc = struct.pack(
        ">hiqqqhii", 0, len(records) - 1, now_ms, now_ms, -1, -1, -1, len(records)
    ) + b"".join(records)
    crc = calc_crc32c(after_crc) ^ (0xFFFF if bad_checksum else 0)
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


async def write(producer: AIOKafkaProducer, topic: str, partition: int, raw_batch: bytes) -> int:
    """Send `raw_batch` as it is to the partition's leader; the base offset the broker gave it."""
    client = producer.client
    await producer.partitions_for(topic)  # metadata for the topic
    leader = client.cluster.leader_for_partition(TopicPartition(topic, partition))
    request = ProduceRequest(None, -1, 30_000, [(topic, [(partition, raw_batch)])])
    response = await client.send(leader, request)
    (_, [(_, code, base_offset, *_)]) = response.topics[0]
    if code:
        raise for_code(code)(f"the broker refused the raw batch for {topic}-{partition}")
    return int(base_offset)
