"""Kafka's record batch format (v2), read in plain Python one record at a time, tolerating what
the Kafka client's fast reader refuses.

A record that cannot be read (a header name that is not UTF-8, a negative header count, fields
running past the record's end...) is reported in its place, with its bytes, and the records after
it are read as usual. Only the batches the client failed on are read here
(`consumer.kafka.aiokafka_internals`); the format: https://kafka.apache.org/documentation/#recordbatch
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

HEADER = struct.Struct(">qiibIhiqqqhii")
"""baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta,
baseTimestamp, maxTimestamp, producerId, producerEpoch, baseSequence, recordCount (61 bytes)."""
CODEC_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
LOG_APPEND_TIME = 1

Decompress = Callable[[int, bytes], bytes]
"""(codec id, compressed bytes) -> the records' bytes; raises for a codec it cannot decode."""


class RecordFormatError(ValueError):
    """Bytes that are not a well-formed record (or batch)."""


class RawRecord(NamedTuple):
    """One record of a batch, header names as the bytes they were written with.

    `problem` is None for a readable record; otherwise why it could not be read, and `raw` holds
    its bytes (for a batch whose framing broke, everything from that record to the batch's end).
    """

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[bytes, bytes | None]]
    problem: str | None = None
    raw: bytes = b""


class BatchHeader(NamedTuple):
    """What a batch says about itself."""

    base_offset: int
    last_offset: int
    attributes: int
    first_timestamp: int
    max_timestamp: int
    records: int

    @property
    def timestamp_type(self) -> int:
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0


def batch_header(raw: bytes) -> BatchHeader:
    """The header of a v2 batch (raises RecordFormatError if it is not one)."""
    if len(raw) < HEADER.size:
        raise RecordFormatError(f"a batch of {len(raw)} bytes is shorter than its header")
    (base, _, _, magic, _, attributes, last_delta, first_ts, max_ts, _, _, _, count) = (
        HEADER.unpack_from(raw)
    )
    if magic != 2:
        raise RecordFormatError(f"record batch magic {magic}, not 2")
    return BatchHeader(base, base + last_delta, attributes, first_ts, max_ts, count)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (Kafka's) at `pos`: (value, position after it)."""
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise RecordFormatError("a varint runs past the end of the record")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise RecordFormatError("a varint longer than 10 bytes")


def _bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    size, pos = _varint(buf, pos)
    if size < 0:
        return None, pos
    if pos + size > len(buf):
        raise RecordFormatError("a field runs past the end of the record")
    return buf[pos : pos + size], pos + size


def read_record(record: bytes, header: BatchHeader) -> RawRecord:
    """One record (its bytes after the length prefix); raises RecordFormatError if unreadable."""
    _, pos = _varint(record, 0)  # attributes (unused)
    timestamp_delta, pos = _varint(record, pos)
    offset_delta, pos = _varint(record, pos)
    key, pos = _bytes(record, pos)
    value, pos = _bytes(record, pos)
    count, pos = _varint(record, pos)
    if count < 0:
        raise RecordFormatError(f"a negative header count ({count})")
    headers: list[tuple[bytes, bytes | None]] = []
    for _ in range(count):
        name, pos = _bytes(record, pos)
        if name is None:
            raise RecordFormatError("a header without a name")
        header_value, pos = _bytes(record, pos)
        headers.append((name, header_value))
    if pos != len(record):
        raise RecordFormatError(f"{len(record) - pos} bytes left over after the record")
    if header.timestamp_type == LOG_APPEND_TIME:
        timestamp = header.max_timestamp
    else:
        timestamp = header.first_timestamp + timestamp_delta
    return RawRecord(
        header.base_offset + offset_delta, timestamp, header.timestamp_type, key, value, headers
    )


def read_batch(raw: bytes, decompress: Decompress) -> Iterator[RawRecord]:
    """Every record of one v2 batch, in order; an unreadable record in its place (`problem`)."""
    header = batch_header(raw)
    body = raw[HEADER.size :]
    codec = header.attributes & CODEC_MASK
    if codec:
        try:
            body = decompress(codec, body)
        except Exception as exc:  # noqa: BLE001 - whatever the codec raises, the batch is unreadable
            yield whole_batch(raw, header, f"its records cannot be decompressed: {exc!r}")
            return
    pos, previous = 0, header.base_offset - 1
    for _ in range(header.records):
        try:
            start, end = _framed(body, pos)
        except RecordFormatError as exc:
            # The framing is broken: the rest of the batch is one unreadable piece, standing at
            # the batch's last offset (where the client moves on to).
            problem = f"the batch's framing broke after offset {previous}: {exc}"
            yield _unreadable(header.last_offset, header, problem, body[pos:])
            return
        record = body[start:end]
        pos = end
        try:
            found = read_record(record, header)
        except RecordFormatError as exc:
            previous += 1
            yield _unreadable(previous, header, f"a corrupt record: {exc}", record)
            continue
        previous = found.offset
        yield found


def _framed(body: bytes, pos: int) -> tuple[int, int]:
    """Where the record whose length prefix is at `pos` starts and ends."""
    length, start = _varint(body, pos)
    if length < 0 or start + length > len(body):
        raise RecordFormatError(f"a record length of {length} bytes out of range")
    return start, start + length


def whole_batch(raw: bytes, header: BatchHeader, problem: str) -> RawRecord:
    """A batch none of whose records can be trusted, as one unreadable piece at its last offset."""
    return _unreadable(
        header.last_offset,
        header,
        f"{problem} (offsets {header.base_offset}..{header.last_offset}; the value is the whole"
        " record batch)",
        bytes(raw),
    )


def _unreadable(offset: int, header: BatchHeader, problem: str, raw: bytes) -> RawRecord:
    return RawRecord(
        offset, header.first_timestamp, header.timestamp_type, None, None, [], problem, raw
    )
