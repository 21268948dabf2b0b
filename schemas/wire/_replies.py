"""The records the consumer writes besides requests: replies and dead letters."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from schemas.wire._names import (
    CONTENT_TYPE_HEADER,
    JSON_CONTENT_TYPE,
    SPECVERSION,
    Headers,
    Record,
    header_map,
    service_key,
)

__all__ = [
    "DLQ_ERROR",
    "DLQ_OFFSET",
    "DLQ_PARTITION",
    "DLQ_TOPIC",
    "DLQ_TRUNCATED",
    "REPLY_SOURCE",
    "dead_letter_headers",
    "encode_reply",
    "reply_correlation",
    "reply_event_id",
    "reply_type",
]

REPLY_SOURCE = "urn:ucs-tasks:consumer"

# Headers added to dead-lettered records (the original headers are kept untouched before them).
DLQ_ERROR = "ucs_dlq_error"
DLQ_TOPIC = "ucs_dlq_topic"
DLQ_PARTITION = "ucs_dlq_partition"
DLQ_OFFSET = "ucs_dlq_offset"
DLQ_TRUNCATED = "ucs_dlq_truncated"
"""On a dead letter cut to fit the largest record: its original sizes, `key=K value=V headers=H`."""


_SPECVERSION_HEADER = ("ce_specversion", SPECVERSION.encode())
_SOURCE_HEADER = ("ce_source", REPLY_SOURCE.encode())
_CONTENT_TYPE = (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())


@functools.lru_cache(maxsize=16)
def _type_header(reply_type: str) -> tuple[str, bytes]:
    return ("ce_type", reply_type.encode())


def reply_event_id(source: str, event_id: str) -> str:
    """Deterministic id of the reply to one request: the same request always gets the same id."""
    return hashlib.sha256(f"{source}\x00{event_id}".encode()).hexdigest()[:32]


def encode_reply(
    *,
    reply_type: str,
    payload: Mapping[str, Any],
    service_id: int | None,
    request_source: str,
    request_id: str,
    correlation_id: str | None,
    time: str,
    echo: Sequence[tuple[str, bytes]] = (),
) -> Record:
    """A binary-mode reply record; `payload` is the reply JSON; `echo`: the request's headers a
    reply carries back as they came (`Envelope.echo`: another client's correlation header, the
    W3C trace context)."""
    headers = [
        _SPECVERSION_HEADER,
        ("ce_id", reply_event_id(request_source, request_id).encode()),
        _SOURCE_HEADER,
        _type_header(reply_type),
        ("ce_time", time.encode()),
        _CONTENT_TYPE,
    ]
    key = service_key(service_id)
    if key is not None:
        headers.append(("ce_serviceid", key))
    if correlation_id is not None:
        headers.append(("ce_correlationid", correlation_id.encode()))
    if echo:
        headers.extend(echo)
    return key, _sized_json(payload), headers


def _sized_json(value: Any) -> bytes:
    """`orjson.dumps(value)` in an allocation of its own size. orjson returns its output in the
    buffer it wrote it to, rounded up to a power of two (4 KB at least) and never shrunk: a
    value that is kept, as a batch's replies are until they are published, holds that much
    memory and faults a fresh page in (~1.5 us a reply in a 4,000-record batch, against 0.3 us
    for this copy; bench/README.md, "replies right-sized"). A value used at once and dropped
    needs no copy: its buffer is reused."""
    return memoryview(orjson.dumps(value)).tobytes()


def reply_correlation(headers: Headers) -> str | None:
    """The correlation id a reply echoes, read from its headers without decoding the value."""
    raw = header_map(headers).get("ce_correlationid")
    return None if raw is None else raw.decode("utf-8", "replace")


def reply_type(headers: Headers) -> str | None:
    """The CloudEvents type of a reply record (task-created or task-rejected)."""
    raw = header_map(headers).get("ce_type")
    return None if raw is None else raw.decode("utf-8", "replace")


def dead_letter_headers(
    headers: Headers, *, error: str, topic: str, partition: int, offset: int
) -> list[tuple[str, bytes]]:
    """The original headers untouched, then headers naming the error and where the record was."""
    return [
        *headers,
        (DLQ_ERROR, error.encode("utf-8", "replace")),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]
