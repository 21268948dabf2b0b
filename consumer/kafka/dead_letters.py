"""Dead letters: a request record as it came, plus headers naming why and where it was read.

A dead letter keeps the original key, value and headers byte for byte, unless the whole would
exceed the largest record the reply topics take (`ContractSettings.max_reply_record_bytes`):
then it is cut to fit and `ucs_dlq_truncated` gives the original sizes. Header names the client
could not decode are written backslash-escaped (a producer can only send text names).
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.domain import Position, Undecodable
from consumer.ports import (
    COPY,
    DEAD_LETTER,
    LAST_RESORT,
    REPLY,
    Header,
    Inbound,
    OutRecord,
    Undelivered,
    UnparseableRecord,
)
from schemas import wire

RECORD_OVERHEAD_BYTES = 1024
"""Room for one record's framing in its batch (lengths, deltas, the batch header), generously."""
REPLY_HEADROOM_BYTES = 16 * 1024
"""Room beside a reply's value for its key and headers: ids of at most 256 characters, a
correlation id of at most 1024, the rest fixed and short."""
_ESCAPED = " (header names that are not UTF-8 are written backslash-escaped)"


def unparseable(position: Position, record: UnparseableRecord) -> Inbound:
    """The dead letter's material for a record the client could not parse."""
    headers = tuple(
        (name.decode("utf-8", "backslashreplace"), value) for name, value in record.raw_headers
    )
    if record.raw:  # nothing could be read: the bytes themselves
        reason = f"unreadable record: {record.problem}"
        return Inbound(position, None, record.raw, headers, Undecodable(position, reason))
    reason = f"unreadable record: {record.problem}{_ESCAPED}"
    return Inbound(position, record.key, record.value, headers, Undecodable(position, reason))


def size_of(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """A record's size as the broker counts it against its limit, framing included."""
    size = RECORD_OVERHEAD_BYTES + len(key or b"") + len(value or b"")
    for name, header_value in headers:
        size += 8 + len(name.encode()) + len(header_value or b"")
    return size


class DeadLetters:
    """Builds dead letters for one topic within one record size."""

    def __init__(self, topic: str, max_record_bytes: int) -> None:
        self.topic = topic
        self.max_record_bytes = max_record_bytes

    def of(self, item: Inbound, reason: str) -> OutRecord:
        """The record's dead letter: as it came, or cut to fit."""
        position = item.position
        extra = wire.dead_letter_headers(
            (), error=reason, topic=position.topic, partition=position.partition,
            offset=position.offset,
        )  # fmt: skip
        room = self.max_record_bytes - size_of(None, None, extra) - 128  # the truncation header
        key, value = item.key, item.value
        headers: Sequence[Header] = item.headers
        if size_of(key, value, headers) - RECORD_OVERHEAD_BYTES > room:
            sizes = f"key={len(key or b'')} value={len(value or b'')}"
            sizes += f" headers={sum(len(n.encode()) + len(v or b'') for n, v in headers)}"
            key, value, headers = _cut(key, value, headers, room)
            extra.append((wire.DLQ_TRUNCATED, sizes.encode()))
        return OutRecord(self.topic, key, value, [*headers, *extra], DEAD_LETTER, item)

    def last_resort(self, item: Inbound, reason: str) -> OutRecord:
        """A dead letter of nothing but the headers naming why and where (the original's bytes
        were refused too): the record is at least accounted for."""
        position = item.position
        headers = wire.dead_letter_headers(
            (), error=reason, topic=position.topic, partition=position.partition,
            offset=position.offset,
        )  # fmt: skip
        headers.append((wire.DLQ_TRUNCATED, b"everything: the full dead letter was refused"))
        return OutRecord(self.topic, None, None, headers, LAST_RESORT, item)

    def instead_of(self, refused: Undelivered) -> OutRecord | None:
        """What to publish in place of a record the broker refused for good; None when only the
        dead-letter topic itself is left to blame."""
        record, problem = refused
        item = record.origin
        if item is None or record.role == LAST_RESORT:
            return None
        if record.role == REPLY:
            return self.of(item, f"its reply to {record.topic} was refused by the broker:"
                                 f" {problem} (what was stored stands)")  # fmt: skip
        if record.role == COPY:
            reason = f"its reply could not be copied to its replyto topic {record.topic!r}"
            return self.of(item, f"{reason}: {problem} (the reply is in the log)")
        reason = _reason(record) or "dead-lettered"
        return self.last_resort(item, f"{reason}; the dead letter was refused: {problem}")


def _reason(record: OutRecord) -> str | None:
    for name, value in record.headers:
        if name == wire.DLQ_ERROR and value is not None:
            return value.decode("utf-8", "replace")
    return None


def _cut(
    key: bytes | None, value: bytes | None, headers: Sequence[Header], room: int
) -> tuple[bytes | None, bytes | None, list[Header]]:
    """Key, value and headers cut to `room` bytes: headers first (a quarter of the room at
    most, each value cut alike), then the key (an eighth), then as much of the value as fits."""
    kept: list[Header] = list(headers)
    if kept and size_of(None, None, kept) - RECORD_OVERHEAD_BYTES > room // 4:
        share = max(0, room // 4 // len(kept) - 8)
        kept = [(n[:share], None if v is None else v[: max(0, share - len(n[:share]))])
                for n, v in kept]  # fmt: skip
    room -= size_of(None, None, kept) - RECORD_OVERHEAD_BYTES
    if key is not None:
        key = key[: room // 8]
        room -= len(key)
    if value is not None:
        value = value[: max(0, room)]
    return key, value, kept
