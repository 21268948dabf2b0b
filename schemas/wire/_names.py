"""The names of the record layout: CloudEvents types, content types, header names, default
topics, the identity's size limit; and what every record shares: its key and its header map."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CE_PREFIX",
    "CONTENT_TYPE_HEADER",
    "CORRELATION_ALIASES",
    "DEFAULT_CREATED_TOPIC",
    "DEFAULT_DEAD_LETTER_TOPIC",
    "DEFAULT_REJECTED_TOPIC",
    "DEFAULT_REQUEST_TOPIC",
    "JSON_CONTENT_TYPE",
    "MAX_ID_LENGTH",
    "REPLY_TO_ALIASES",
    "REQUEST_TYPES",
    "SPECVERSION",
    "STRUCTURED_CONTENT_TYPE",
    "TRACE_HEADERS",
    "TYPE_TASK_COMPLETED",
    "TYPE_TASK_CREATED",
    "TYPE_TASK_END",
    "TYPE_TASK_EXTENSION",
    "TYPE_TASK_EXTENSION_UPDATED",
    "TYPE_TASK_REJECTED",
    "TYPE_TASK_START",
    "Headers",
    "Record",
    "service_key",
]

SPECVERSION = "1.0"
TYPE_TASK_START = "com.genesys.ucs.task.start.v1"
TYPE_TASK_END = "com.genesys.ucs.task.end.v1"
TYPE_TASK_EXTENSION = "com.genesys.ucs.task.extension.v1"
TYPE_TASK_CREATED = "com.genesys.ucs.task.created.v1"
TYPE_TASK_COMPLETED = "com.genesys.ucs.task.completed.v1"
TYPE_TASK_EXTENSION_UPDATED = "com.genesys.ucs.task.extension.updated.v1"
TYPE_TASK_REJECTED = "com.genesys.ucs.task.rejected.v1"
REQUEST_TYPES = (TYPE_TASK_START, TYPE_TASK_END, TYPE_TASK_EXTENSION)
"""The CloudEvents types a request may have (start, complete, update an extension)."""

JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_HEADER = "content-type"
CE_PREFIX = "ce_"

DEFAULT_REQUEST_TOPIC = "ucs.tasks.start"
DEFAULT_CREATED_TOPIC = "ucs.tasks.created"
DEFAULT_REJECTED_TOPIC = "ucs.tasks.rejected"
DEFAULT_DEAD_LETTER_TOPIC = "ucs.tasks.start.dlq"

MAX_ID_LENGTH = 256
"""Longest accepted `id` or `source` (identity columns are indexed)."""

REPLY_TO_ALIASES = ("kafka_replytopic", "reply_to")
"""Reply-topic headers other request-reply clients send, read when `ce_replyto` is absent:
Spring Kafka's `kafka_replyTopic`, FastStream's `reply_to` (header names compare lower-case)."""
CORRELATION_ALIASES = ("kafka_correlationid", "correlation_id")
"""Correlation headers of Spring Kafka (`kafka_correlationId`) and FastStream
(`correlation_id`): read when `ce_correlationid` is absent, and echoed on the reply under their
own name, byte for byte, so those clients match the reply as they expect."""
TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C trace context headers: copied from a request onto its reply."""

Headers = Sequence[tuple[str, bytes]]
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
"""(key, value, headers) of one record to publish."""


def service_key(service_id: int | str | None) -> bytes | None:
    """The record key: the service id in decimal ASCII."""
    return None if service_id is None else str(service_id).encode()


def header_map(headers: Headers) -> dict[str, bytes]:
    """The headers by lower-case name. Last one wins, as in HTTP (CloudEvents forbids repeating
    an attribute anyway); a header with a null value (Kafka allows them) counts as absent."""
    return {name.lower(): value for name, value in headers if value is not None}
