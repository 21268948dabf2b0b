"""The Kafka record layout: the CloudEvents 1.0 Kafka binding for task-start events and replies.

This is the one module that knows how records are laid out (headers, key, value). Pure functions
on `(key, value, headers)`; no Kafka client here, so both deployables and the tools share it.

- Binary mode: `ce_*` headers carry the attributes; the value is the Task Start Event JSON, exactly
  the HTTP body; `content-type: application/json`.
- Structured mode: `content-type: application/cloudevents+json`; the value is the whole CloudEvent
  as JSON with the event under `data`, so one JSON line is a self-contained, replayable record.
- Key: the service id in decimal ASCII (per-service ordering).
- Identity: `source` + `id`, the idempotency key. Extensions: `serviceid` (the 64-bit service id),
  `replyto` (topic for the reply), `correlationid` (echoed on the reply).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

SPECVERSION = "1.0"
TYPE_TASK_START = "com.genesys.ucs.task.start.v1"
TYPE_TASK_END = "com.genesys.ucs.task.end.v1"
TYPE_TASK_EXTENSION = "com.genesys.ucs.task.extension.v1"
TYPE_TASK_CREATED = "com.genesys.ucs.task.created.v1"
TYPE_TASK_COMPLETED = "com.genesys.ucs.task.completed.v1"
TYPE_TASK_EXTENSION_UPDATED = "com.genesys.ucs.task.extension.updated.v1"
TYPE_TASK_REJECTED = "com.genesys.ucs.task.rejected.v1"
REPLY_SOURCE = "urn:ucs-tasks:consumer"

JSON_CONTENT_TYPE = "application/json"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
CONTENT_TYPE_HEADER = "content-type"
CE_PREFIX = "ce_"

DEFAULT_REQUEST_TOPIC = "ucs.tasks.start"
DEFAULT_CREATED_TOPIC = "ucs.tasks.created"
DEFAULT_REJECTED_TOPIC = "ucs.tasks.rejected"
DEFAULT_DEAD_LETTER_TOPIC = "ucs.tasks.start.dlq"

# Headers added to dead-lettered records (the original headers are kept untouched before them).
DLQ_ERROR = "ucs_dlq_error"
DLQ_TOPIC = "ucs_dlq_topic"
DLQ_PARTITION = "ucs_dlq_partition"
DLQ_OFFSET = "ucs_dlq_offset"
DLQ_TRUNCATED = "ucs_dlq_truncated"
"""On a dead letter cut to fit the largest record: its original sizes, `key=K value=V headers=H`."""

MAX_ID_LENGTH = 256
"""Longest accepted `id` or `source` (identity columns are indexed)."""

Headers = Sequence[tuple[str, bytes]]
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
"""(key, value, headers) of one record to publish."""

_LONG_NUMBER = re.compile(rb"[0-9]{19}")
REQUEST_TYPES = (TYPE_TASK_START, TYPE_TASK_END, TYPE_TASK_EXTENSION)
"""The CloudEvents types a request may have (start, complete, update an extension)."""

_REQUIRED = ("specversion", "id", "source", "type")
_LIFECYCLE = ("taskid", "extension", "tenantid", "groupid")
"""Extension attributes: the task an end or extension update is about, the extension's name,
the caller's tenant (ContactCenterId) and business unit (GroupId)."""
_KNOWN = (
    *_REQUIRED,
    "time",
    "subject",
    "datacontenttype",
    "serviceid",
    "replyto",
    "correlationid",
    *_LIFECYCLE,
)

REPLY_TO_ALIASES = ("kafka_replytopic", "reply_to")
"""Reply-topic headers other request-reply clients send, read when `ce_replyto` is absent:
Spring Kafka's `kafka_replyTopic`, FastStream's `reply_to` (header names compare lower-case)."""
CORRELATION_ALIASES = ("kafka_correlationid", "correlation_id")
"""Correlation headers of Spring Kafka (`kafka_correlationId`) and FastStream
(`correlation_id`): read when `ce_correlationid` is absent, and echoed on the reply under their
own name, byte for byte, so those clients match the reply as they expect."""
TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C trace context headers: copied from a request onto its reply."""


class UndecodableRecordError(ValueError):
    """The record is not a task request CloudEvent with an identity: it goes to the dead letters."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded task request: CloudEvent attributes plus the still-unvalidated data.

    `data` is the raw JSON bytes in binary mode and the decoded JSON value in structured mode;
    `service_id` and `task_id` are as written (validated later, with the body, so a bad one gets
    a reply). `echo` holds the headers a reply must carry back as they came (another client's
    correlation header, the W3C trace context).
    """

    id: str
    source: str
    service_id: str | int | None
    data: bytes | Any
    time: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    structured: bool = False
    type: str = TYPE_TASK_START
    task_id: str | int | None = None
    extension: str | None = None
    tenant: str | None = None
    group: str | None = None
    echo: tuple[tuple[str, bytes], ...] = ()


_BINARY_ATTRIBUTES = tuple((CE_PREFIX + name, name) for name in _KNOWN)


def _header_map(headers: Headers) -> dict[str, bytes]:
    # Last one wins, as in HTTP; CloudEvents forbids repeating an attribute anyway. A header
    # with a null value (Kafka allows them) counts as absent.
    return {name.lower(): value for name, value in headers if value is not None}


def _text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UndecodableRecordError(f"header {name} is not UTF-8") from exc


def _check_attributes(attrs: Mapping[str, Any]) -> None:
    missing = [name for name in _REQUIRED if not attrs.get(name)]
    if missing:
        raise UndecodableRecordError(f"not a CloudEvent: missing {', '.join(missing)}")
    for name in ("specversion", "id", "source", "type"):
        if not isinstance(attrs[name], str):
            raise UndecodableRecordError(f"CloudEvent attribute {name} must be a string")
    if attrs["specversion"] != SPECVERSION:
        raise UndecodableRecordError(f"unsupported CloudEvents specversion {attrs['specversion']}")
    if attrs["type"] not in REQUEST_TYPES:
        raise UndecodableRecordError(f"not a task request: type {attrs['type']}")
    for name in ("id", "source"):
        if len(attrs[name]) > MAX_ID_LENGTH:
            raise UndecodableRecordError(f"CloudEvent {name} longer than {MAX_ID_LENGTH}")
        if "\x00" in attrs[name]:  # PostgreSQL text cannot hold it: no task, no rejection
            raise UndecodableRecordError(f"CloudEvent {name} contains a NUL character")


def _optional_str(attrs: Mapping[str, Any], name: str) -> str | None:
    value = attrs.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UndecodableRecordError(f"CloudEvent attribute {name} must be a string")
    return value


def _aliases(
    hmap: Mapping[str, bytes], headers: Headers
) -> tuple[str | None, str | None, tuple[tuple[str, bytes], ...]]:
    """Another client's reply topic and correlation id, and the headers to echo on the reply."""
    reply_to = next((_text(hmap[name], name) for name in REPLY_TO_ALIASES if name in hmap), None)
    correlation: str | None = None
    for name in CORRELATION_ALIASES:
        if name in hmap:
            raw = hmap[name]
            try:
                correlation = raw.decode("utf-8")
            except UnicodeDecodeError:
                correlation = None
            if correlation is None or not correlation.isprintable():
                correlation = raw.hex()  # Spring's default: a UUID's 16 raw bytes
            break
    echo = tuple(
        (name, raw) for name, raw in headers if raw is not None and name.lower() in _ECHOED
    )
    return reply_to, correlation, echo


_ECHOED = frozenset((*CORRELATION_ALIASES, *TRACE_HEADERS))


def decode_request(value: bytes | None, headers: Headers) -> Envelope:
    """Decode one task request record (binary or structured mode), or raise
    UndecodableRecordError."""
    hmap = _header_map(headers)
    content_type = _text(hmap.get(CONTENT_TYPE_HEADER, b""), CONTENT_TYPE_HEADER)
    alias_reply_to, alias_correlation, echo = _aliases(hmap, headers)
    if "ce_specversion" in hmap and not content_type.startswith(STRUCTURED_CONTENT_TYPE):
        # Only the attributes we use are decoded (this runs once per record on the hot path).
        attrs = {
            attr: _text(raw, header)
            for header, attr in _BINARY_ATTRIBUTES
            if (raw := hmap.get(header)) is not None
        }
        _check_attributes(attrs)
        correlation = attrs.get("correlationid")
        return Envelope(
            id=attrs["id"],
            source=attrs["source"],
            service_id=attrs.get("serviceid"),
            data=value if value is not None else b"",
            time=attrs.get("time"),
            reply_to=attrs.get("replyto") or alias_reply_to or None,
            correlation_id=correlation if correlation is not None else alias_correlation,
            type=attrs["type"],
            task_id=attrs.get("taskid"),
            extension=attrs.get("extension"),
            tenant=attrs.get("tenantid") or None,
            group=attrs.get("groupid") or None,
            echo=echo,
        )
    if value is None:
        raise UndecodableRecordError("empty record: no CloudEvent")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise UndecodableRecordError(f"structured CloudEvent is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise UndecodableRecordError("structured CloudEvent is not a JSON object")
    _check_attributes(event)
    service_id = event.get("serviceid")
    if isinstance(service_id, bool) or not isinstance(service_id, str | int | None):
        service_id = orjson.dumps(service_id).decode()  # kept as text: validation names it
    task_id = event.get("taskid")
    if isinstance(task_id, bool) or not isinstance(task_id, str | int | None):
        task_id = orjson.dumps(task_id).decode()  # kept as text: validation names it
    correlation = _optional_str(event, "correlationid")
    return Envelope(
        id=event["id"],
        source=event["source"],
        service_id=service_id,
        data=_structured_data(event),
        time=_optional_str(event, "time"),
        reply_to=_optional_str(event, "replyto") or alias_reply_to or None,
        correlation_id=correlation if correlation is not None else alias_correlation,
        structured=True,
        type=event["type"],
        task_id=task_id,
        extension=_optional_str(event, "extension"),
        tenant=_optional_str(event, "tenantid") or None,
        group=_optional_str(event, "groupid") or None,
        echo=echo,
    )


def _structured_data(event: Mapping[str, Any]) -> bytes | Any:
    # `data_base64` (CloudEvents JSON format) carries a body that is not faithful as JSON
    # (see record_to_structured): the raw bytes then get validated exactly as in binary mode.
    if "data" in event or "data_base64" not in event:
        return event.get("data")
    encoded = event["data_base64"]
    if isinstance(encoded, str):
        try:
            return base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            pass
    raise UndecodableRecordError("CloudEvent data_base64 is not a base64 string")


def _faithful_json(body: bytes) -> tuple[bool, Any]:
    # False for bodies that are not JSON and for 19+ digit numbers, which orjson may turn into
    # floats: re-encoding either would change what validation sees.
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None
    return _LONG_NUMBER.search(body) is None, data


def service_key(service_id: int | str | None) -> bytes | None:
    """The record key: the service id in decimal ASCII."""
    return None if service_id is None else str(service_id).encode()


def encode_request_binary(
    *,
    service_id: int,
    body: bytes,
    event_id: str,
    source: str,
    time: str | None = None,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    event_type: str = TYPE_TASK_START,
    task_id: int | None = None,
    extension: str | None = None,
    tenant: str | None = None,
    group: str | None = None,
    trace: Mapping[str, str] | None = None,
) -> Record:
    """A binary-mode task request record (start by default): the body goes out untouched."""
    headers = [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_serviceid", str(service_id).encode()),
        (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
    ]
    optional = (
        ("ce_time", time),
        ("ce_replyto", reply_to),
        ("ce_correlationid", correlation_id),
        ("ce_taskid", None if task_id is None else str(task_id)),
        ("ce_extension", extension),
        ("ce_tenantid", tenant),
        ("ce_groupid", group),
    )
    headers.extend((name, text.encode()) for name, text in optional if text is not None)
    headers.extend((name, text.encode()) for name, text in (trace or {}).items())
    return service_key(service_id), body, headers


def structured_request(
    *,
    service_id: int | str,
    data: Any,
    event_id: str,
    source: str,
    time: str | None = None,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    event_type: str = TYPE_TASK_START,
    task_id: int | str | None = None,
    extension: str | None = None,
    tenant: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    """A structured-mode task request CloudEvent as a JSON-ready dict (one JSON-lines record)."""
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id,
        "source": source,
        "type": event_type,
        "datacontenttype": JSON_CONTENT_TYPE,
        "serviceid": str(service_id),
    }
    optional = (
        ("time", time),
        ("replyto", reply_to),
        ("correlationid", correlation_id),
        ("taskid", None if task_id is None else str(task_id)),
        ("extension", extension),
        ("tenantid", tenant),
        ("groupid", group),
    )
    event.update((name, text) for name, text in optional if text is not None)
    event["data"] = data
    return event


def encode_structured(event: Mapping[str, Any]) -> Record:
    """A structured-mode record from a CloudEvent dict."""
    return (
        service_key(event.get("serviceid")),
        orjson.dumps(event),
        [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())],
    )


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
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", reply_event_id(request_source, request_id).encode()),
        ("ce_source", REPLY_SOURCE.encode()),
        ("ce_type", reply_type.encode()),
        ("ce_time", time.encode()),
        (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode()),
    ]
    if service_id is not None:
        headers.append(("ce_serviceid", str(service_id).encode()))
    if correlation_id is not None:
        headers.append(("ce_correlationid", correlation_id.encode()))
    headers.extend(echo)
    return service_key(service_id), orjson.dumps(payload), headers


def reply_correlation(headers: Headers) -> str | None:
    """The correlation id a reply echoes, read from its headers without decoding the value."""
    raw = _header_map(headers).get("ce_correlationid")
    return None if raw is None else raw.decode("utf-8", "replace")


def reply_type(headers: Headers) -> str | None:
    """The CloudEvents type of a reply record (task-created or task-rejected)."""
    raw = _header_map(headers).get("ce_type")
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


def record_to_structured(value: bytes | None, headers: Headers) -> dict[str, Any]:
    """Turn a request record of either mode into one self-contained structured CloudEvent dict.

    Used by export: the result is one JSON line that `produce` can replay faithfully. A binary
    body that is not faithful as JSON (malformed, or with 19+ digit numbers) goes in
    `data_base64` instead of `data`, so its replay meets the same validation.
    """
    envelope = decode_request(value, headers)
    if envelope.structured:
        event = orjson.loads(value or b"")
        assert isinstance(event, dict)  # noqa: S101 - decode_request checked it
        return event
    faithful, data = _faithful_json(envelope.data)
    hmap = _header_map(headers)
    event = structured_request(
        service_id=envelope.service_id if envelope.service_id is not None else "",
        data=data,
        event_id=envelope.id,
        source=envelope.source,
        time=envelope.time,
        reply_to=envelope.reply_to,
        correlation_id=envelope.correlation_id,
        event_type=envelope.type,
        task_id=envelope.task_id,
        extension=envelope.extension,
        tenant=envelope.tenant,
        group=envelope.group,
    )
    if not faithful:
        del event["data"]
        event["data_base64"] = base64.b64encode(envelope.data).decode("ascii")
    for name, raw in hmap.items():
        attr = name[len(CE_PREFIX) :]
        if name.startswith(CE_PREFIX) and attr not in _KNOWN:
            event.setdefault(attr, raw.decode("utf-8", "replace"))
    return event
