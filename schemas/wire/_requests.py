"""A task request record: read in either mode, written in either, exported as a structured event."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, Required, TypedDict, Unpack

import orjson

from schemas.wire._names import (
    CE_PREFIX,
    CONTENT_TYPE_HEADER,
    CORRELATION_ALIASES,
    JSON_CONTENT_TYPE,
    MAX_ID_LENGTH,
    REPLY_TO_ALIASES,
    REQUEST_TYPES,
    SPECVERSION,
    STRUCTURED_CONTENT_TYPE,
    TRACE_HEADERS,
    TYPE_TASK_START,
    Headers,
    Record,
    header_map,
    service_key,
)

__all__ = [
    "Envelope",
    "RequestAttributes",
    "UndecodableRecordError",
    "binary_request",
    "decode_request",
    "decode_structured",
    "encode_request_binary",
    "encode_structured",
    "record_to_structured",
    "structured_request",
]

_LONG_NUMBER = re.compile(rb"[0-9]{19}")
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


class UndecodableRecordError(ValueError):
    """The record is not a task request CloudEvent with an identity: it goes to the dead letters."""


class Envelope(NamedTuple):
    """A decoded task request: CloudEvent attributes plus the still-unvalidated data.

    `data` is the raw JSON bytes in binary mode and the decoded JSON value in structured mode;
    `service_id` and `task_id` are as written (validated later, with the body, so a bad one gets
    a reply). `echo` holds the headers a reply must carry back as they came (another client's
    correlation header, the W3C trace context). A NamedTuple: one is built per consumed record.
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


_ATTRIBUTE_OF = dict(_BINARY_ATTRIBUTES)
"""The attribute each binary-mode header carries (`ce_id` -> `id`), for the attributes we use."""
_ALIASED = frozenset((*REPLY_TO_ALIASES, *_ECHOED))
"""Headers that need `_aliases`: without any of them (the common case) it has nothing to find."""


def _binary_attributes(hmap: Mapping[str, bytes]) -> dict[str, str]:
    """The attributes we use, decoded from their headers (only those: this runs per record)."""
    try:
        return {
            attr: raw.decode("utf-8")
            for header, raw in hmap.items()
            if (attr := _ATTRIBUTE_OF.get(header)) is not None
        }
    except UnicodeDecodeError:  # rare: find which one, by name
        return {
            attr: _text(raw, header)
            for header, attr in _BINARY_ATTRIBUTES
            if (raw := hmap.get(header)) is not None
        }


def decode_request(value: bytes | None, headers: Headers) -> Envelope:
    """Decode one task request record (binary or structured mode), or raise
    UndecodableRecordError."""
    hmap = header_map(headers)
    content_type = _text(hmap.get(CONTENT_TYPE_HEADER, b""), CONTENT_TYPE_HEADER)
    alias_reply_to = alias_correlation = None
    echo: tuple[tuple[str, bytes], ...] = ()
    if not _ALIASED.isdisjoint(hmap):
        alias_reply_to, alias_correlation, echo = _aliases(hmap, headers)
    if "ce_specversion" in hmap and not content_type.startswith(STRUCTURED_CONTENT_TYPE):
        attrs = _binary_attributes(hmap)
        _check_attributes(attrs)
        correlation = attrs.get("correlationid")
        get = attrs.get
        # tuple.__new__: the NamedTuple's own __new__ is a Python function (~0.25 us, this ~0.1)
        return tuple.__new__(
            Envelope,
            (
                attrs["id"],
                attrs["source"],
                get("serviceid"),
                value if value is not None else b"",
                get("time"),
                get("replyto") or alias_reply_to or None,
                correlation if correlation is not None else alias_correlation,
                False,
                attrs["type"],
                get("taskid"),
                get("extension"),
                get("tenantid") or None,
                get("groupid") or None,
                echo,
            ),
        )
    if value is None:
        raise UndecodableRecordError("empty record: no CloudEvent")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise UndecodableRecordError(f"structured CloudEvent is not valid JSON: {exc}") from exc
    return decode_structured(
        event, reply_to_alias=alias_reply_to, correlation_alias=alias_correlation, echo=echo
    )


def decode_structured(
    event: Any,
    *,
    reply_to_alias: str | None = None,
    correlation_alias: str | None = None,
    echo: tuple[tuple[str, bytes], ...] = (),
) -> Envelope:
    """A structured-mode request already decoded from its JSON (`decode_request` once it has,
    or a tool that decoded the line itself), or UndecodableRecordError; `reply_to_alias`,
    `correlation_alias` and `echo`: what the record's headers said (`decode_request`)."""
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
        reply_to=_optional_str(event, "replyto") or reply_to_alias or None,
        correlation_id=correlation if correlation is not None else correlation_alias,
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


class RequestAttributes(TypedDict, total=False):
    """A request's CloudEvents attributes besides its service id, as keyword arguments of
    `encode_request_binary` and `structured_request` (None: not written)."""

    event_id: Required[str]
    """`id`; with `source`, the request's identity (its idempotency key)."""
    source: Required[str]
    time: str | None
    reply_to: str | None
    correlation_id: str | None
    event_type: str
    """`type`: a start when absent (see `REQUEST_TYPES`)."""
    task_id: int | str | None
    extension: str | None
    tenant: str | None
    group: str | None


_OPTIONAL_ATTRIBUTES = (
    ("time", "time"),
    ("reply_to", "replyto"),
    ("correlation_id", "correlationid"),
    ("task_id", "taskid"),
    ("extension", "extension"),
    ("tenant", "tenantid"),
    ("group", "groupid"),
)
"""The optional attributes in the order they are written: keyword (and `Envelope` field), name."""


_SPECVERSION_HEADER = (CE_PREFIX + "specversion", SPECVERSION.encode())
_JSON_CONTENT_TYPE = (CONTENT_TYPE_HEADER, JSON_CONTENT_TYPE.encode())
_OPTIONAL_HEADERS = tuple(CE_PREFIX + name for _, name in _OPTIONAL_ATTRIBUTES)
_NONE_OPTIONAL = (None,) * len(_OPTIONAL_ATTRIBUTES)


def _identity(attributes: RequestAttributes) -> list[tuple[str, str]]:
    return [
        ("specversion", SPECVERSION),
        ("id", attributes["event_id"]),
        ("source", attributes["source"]),
        ("type", attributes.get("event_type", TYPE_TASK_START)),
    ]


def _optional(given: Mapping[str, object]) -> list[tuple[str, str]]:
    """The optional attributes `given` (by keyword) that are not None, in order, as text."""
    return [
        (name, str(value))
        for keyword, name in _OPTIONAL_ATTRIBUTES
        if (value := given.get(keyword)) is not None
    ]


def encode_request_binary(
    *,
    service_id: int,
    body: bytes,
    event_id: str,
    source: str,
    event_type: str = TYPE_TASK_START,
    time: str | None = None,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    task_id: int | str | None = None,
    extension: str | None = None,
    tenant: str | None = None,
    group: str | None = None,
    trace: Mapping[str, str] | None = None,
) -> Record:
    """A binary-mode task request record (start by default) with the `RequestAttributes` given
    (None: not written): the body goes out untouched; `trace`: W3C trace context headers to
    send along."""
    optional = (time, reply_to, correlation_id, task_id, extension, tenant, group)
    return binary_request(
        service_id, body, event_id, source, event_type, optional=optional, trace=trace
    )


def binary_request(
    service_id: int,
    body: bytes,
    event_id: str,
    source: str,
    event_type: str,
    *,
    optional: tuple[object, ...],
    trace: Mapping[str, str] | None = None,
) -> Record:
    """`encode_request_binary` for the paths that build one record per request (the bridge and
    `produce`, through `TaskRequest.record`): the identity positional, the optional attributes
    one tuple in `_OPTIONAL_ATTRIBUTES` order (time, reply_to, correlation_id, task_id,
    extension, tenant, group; None: not written). A call with a dozen keywords cost each
    request ~1 us more; the tuple's order is checked against that list by test_wire."""
    key = str(service_id).encode()  # the record key (`service_key`) and `serviceid`
    headers = [
        _SPECVERSION_HEADER,
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_serviceid", key),
        _JSON_CONTENT_TYPE,
    ]
    # Most records (every `produce` start) carry none of the optional attributes.
    if optional != _NONE_OPTIONAL:
        headers += [
            (header, str(value).encode())
            for header, value in zip(_OPTIONAL_HEADERS, optional, strict=True)
            if value is not None
        ]
    if trace:
        headers.extend((name, text.encode()) for name, text in trace.items())
    return key, body, headers


def structured_request(
    *, service_id: int | str, data: Any, **attributes: Unpack[RequestAttributes]
) -> dict[str, Any]:
    """A structured-mode task request CloudEvent as a JSON-ready dict (one JSON-lines record)."""
    event: dict[str, Any] = dict(_identity(attributes))
    event["datacontenttype"] = JSON_CONTENT_TYPE
    event["serviceid"] = str(service_id)
    event.update(_optional(attributes))
    event["data"] = data
    return event


def encode_structured(event: Mapping[str, Any]) -> Record:
    """A structured-mode record from a CloudEvent dict."""
    return (
        service_key(event.get("serviceid")),
        orjson.dumps(event),
        [(CONTENT_TYPE_HEADER, STRUCTURED_CONTENT_TYPE.encode())],
    )


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
    hmap = header_map(headers)
    event = structured_request(
        service_id=envelope.service_id if envelope.service_id is not None else "",
        data=data,
        event_id=envelope.id,
        source=envelope.source,
        event_type=envelope.type,
        **{keyword: getattr(envelope, keyword) for keyword, _ in _OPTIONAL_ATTRIBUTES},
    )
    if not faithful:
        del event["data"]
        event["data_base64"] = base64.b64encode(envelope.data).decode("ascii")
    for name, raw in hmap.items():
        attr = name[len(CE_PREFIX) :]
        if name.startswith(CE_PREFIX) and attr not in _KNOWN:
            event.setdefault(attr, raw.decode("utf-8", "replace"))
    return event
