"""Reading record batches in Python past what cannot be read: each bad record in its place."""

from __future__ import annotations

import pytest

from consumer.kafka import record_format
from consumer.kafka.record_format import HEADER, RawRecord, read_batch

BASE = 1000


def varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(data: bytes | None) -> bytes:
    return varint(-1) if data is None else varint(len(data)) + data


def record(delta: int, value: bytes, headers: list[tuple[bytes, bytes]], count: int = -1) -> bytes:
    body = varint(0) + varint(delta) + varint(delta) + field(b"k") + field(value)
    body += varint(len(headers) if count == -1 else count)
    body += b"".join(field(n) + field(v) for n, v in headers)
    return varint(len(body)) + body


def batch(records: list[bytes], last_delta: int | None = None, codec: int = 0) -> bytes:
    last = len(records) - 1 if last_delta is None else last_delta
    header = HEADER.pack(BASE, 0, -1, 2, 0, codec, last, 5000, 5000, -1, -1, -1, len(records))
    return header + b"".join(records)


def no_codec(codec: int, body: bytes) -> bytes:
    raise AssertionError(f"not compressed: {codec} {body[:4]!r}")


def test_every_readable_record_is_read_with_its_offset_timestamp_and_raw_header_names() -> None:
    data = batch([record(0, b"a", [(b"\xff-name", b"1")]), record(1, b"b", [])])
    first, second = read_batch(data, no_codec)
    assert (first.offset, first.timestamp, first.value, first.problem) == (BASE, 5000, b"a", None)
    assert first.headers == [(b"\xff-name", b"1")]
    assert (second.offset, second.value, second.timestamp) == (BASE + 1, b"b", 5001)


def test_a_corrupt_record_is_reported_in_its_place_with_its_bytes_and_the_next_ones_are_read() -> (
    None
):
    bad = record(1, b"bad", [(b"h", b"1")], count=-2)
    data = batch([record(0, b"a", []), bad, record(2, b"c", [])])
    found = list(read_batch(data, no_codec))
    assert [(r.offset, r.value, r.problem is None) for r in found] == [
        (BASE, b"a", True),
        (BASE + 1, None, False),
        (BASE + 2, b"c", True),
    ]
    assert "negative header count" in (found[1].problem or "")
    assert found[1].raw == bad[1:]


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        (lambda r: r[:1] + b"\x80" * 12 + r[13:], "varint longer"),
        (lambda r: r + b"\x00", "left over"),
        (lambda r: r[:-3], "past the end"),
    ],
    ids=["endless varint", "trailing bytes", "cut short"],
)
def test_a_record_that_breaks_the_format_in_other_ways_is_reported_too(
    corrupt: object, problem: str
) -> None:
    good = record(0, b"value", [(b"h", b"1")])
    body = good[1:]
    broken = corrupt(body)  # type: ignore[operator]  # a lambda
    data = batch([varint(len(broken)) + broken])
    (found,) = read_batch(data, no_codec)
    assert problem in (found.problem or ""), found.problem


def test_broken_framing_makes_the_rest_of_the_batch_one_piece_at_its_last_offset() -> None:
    data = batch([record(0, b"a", []), varint(10_000) + b"xyz"], last_delta=5)
    first, rest = read_batch(data, no_codec)
    assert first.value == b"a"
    assert rest.offset == BASE + 5
    assert "framing" in (rest.problem or "")
    assert rest.raw == varint(10_000) + b"xyz"


def test_a_batch_whose_codec_cannot_be_decoded_is_one_piece_holding_the_whole_batch() -> None:
    def unknown(codec: int, body: bytes) -> bytes:
        raise ValueError(f"codec {codec}")

    data = batch([b"\x00\x01\x02"], last_delta=2, codec=5)
    (whole,) = read_batch(data, unknown)
    assert isinstance(whole, RawRecord)
    assert (whole.offset, whole.raw) == (BASE + 2, data)
    assert "decompressed" in (whole.problem or "")


def test_bytes_that_are_not_a_v2_batch_are_refused() -> None:
    with pytest.raises(record_format.RecordFormatError, match="magic"):
        record_format.batch_header(b"\x00" * 16 + b"\x01" + b"\x00" * 60)
