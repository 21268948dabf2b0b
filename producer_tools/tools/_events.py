"""From input (JSON lines, or records already in Kafka) to validated task-start records.

Three shapes come in:
- a structured CloudEvent (a JSON line with `specversion`, as `export` writes them): published
  in structured mode with its own identity (`source` + `id`);
- a plain record `{"service_id": ..., "event": {...}}`: published in binary mode (the value is
  the event, exactly an HTTP body) under a deterministic identity (see `plain_identity`);
- a task-created reply (the created-events log): the request is rebuilt from the whole task it
  carries, under the original event identity.

Every event is validated with `schemas.task_start` before it is sent, as the consumer will.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import ValidationError

from schemas import wire
from schemas.replies import StoredTask
from schemas.task_start import (
    STANDARD_FIELDS,
    Limits,
    TaskStartEvent,
    TaskStartValidationError,
    parse_service_id,
    parse_task_start,
)

PRODUCE_SOURCE: Final = "urn:ucs-tasks:produce"
"""CloudEvents `source` of plain records published by `produce`."""
HEADERS_ATTRIBUTE: Final = "kafkaheaders"
"""Extension attribute (a JSON string) keeping the Kafka headers a CloudEvent cannot express."""
PARTITION_KEY: Final = "partitionkey"
"""CloudEvents partitioning extension: when present, the record key (the Kafka binding's rule)."""

STRUCTURED_HEADERS: Final = ((wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode()),)
_PLAIN_KEYS = frozenset({"service_id", "event"})
_FIELD_ORDER = tuple(name for name in TaskStartEvent.model_fields if name in STANDARD_FIELDS)
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19  # an integer this long may not fit in 64 bits
_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1  # what orjson reads exactly


class InvalidInputError(ValueError):
    """A line or record that cannot be published; the message says why."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A validated task-start record, ready to publish."""

    source: str
    id: str
    service_id: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]

    @property
    def identity(self) -> tuple[str, str]:
        """The idempotency key: (source, id)."""
        return (self.source, self.id)


def _validate(service_id: object, data: object, limits: Limits) -> int:
    problems: list[str] = []
    sid = 0
    try:
        sid = parse_service_id(service_id)  # type: ignore[arg-type]  # checked inside
    except TaskStartValidationError as exc:
        problems.append(exc.message)
    try:
        parse_task_start(data, limits)
    except TaskStartValidationError as exc:
        problems.append(exc.message)
    if problems:
        raise InvalidInputError(" ".join(problems))
    return sid


def _out_of_range(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if not _INT_LOW <= value <= _INT_HIGH else None
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    for child in children:
        if (bad := _out_of_range(child)) is not None:
            return bad
    return None


def _check_exact_integers(line: bytes) -> None:
    # orjson reads integers beyond 64 bits as floats: the value would change silently.
    if line.translate(_DIGITS_AS_ZEROS).find(_LONG_DIGIT_RUN) < 0:  # C speed, unlike a regex
        return
    bad = _out_of_range(json.loads(line))
    if bad is not None:
        shown = str(bad) if len(str(bad)) <= 40 else f"{str(bad)[:37]}..."
        raise InvalidInputError(f"the integer {shown} is outside the 64-bit range")


def pack_headers(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """Kafka headers as a JSON string: `[[name, text], ...]`, `{"base64": ...}` for non-UTF-8."""
    packed: list[list[Any]] = []
    for name, raw in headers:
        try:
            value: Any = None if raw is None else raw.decode("utf-8")
        except UnicodeDecodeError:
            value = {"base64": base64.b64encode(raw).decode()}  # type: ignore[arg-type]
        packed.append([name, value])
    return orjson.dumps(packed).decode()


def unpack_headers(text: object) -> list[tuple[str, bytes]]:
    """The inverse of `pack_headers`, or InvalidInputError."""
    problem = f"{HEADERS_ATTRIBUTE} must be a JSON string holding [[name, value], ...]"
    if not isinstance(text, str):
        raise InvalidInputError(problem)
    try:
        packed = orjson.loads(text)
        headers = []
        for name, value in packed:
            if isinstance(value, dict):
                raw = base64.b64decode(value["base64"], validate=True)
            else:
                raw = b"" if value is None else value.encode("utf-8")
            headers.append((str(name), raw))
    except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
        raise InvalidInputError(problem) from None
    return headers


def _canonical(service_id: int, body: bytes) -> bytes:
    # Byte for byte what orjson.dumps({"service_id": service_id, "event": event}) renders.
    return b'{"service_id":%d,"event":%s}' % (service_id, body)


def _identity(content: bytes, occurrence: int) -> str:
    return hashlib.sha256(b"%d\n%s" % (occurrence, content)).hexdigest()


def plain_identity(service_id: int, event: Any, occurrence: int = 1) -> str:
    """The deterministic event id of a plain record: its content and how many identical records
    came before it in the same input (`occurrence` counts from 1). The same file gives the same
    ids every time; lines added, removed or moved elsewhere leave the other lines' ids alone.

    The id is `sha256("<occurrence>\\n" + sha256(canonical))` in hex, where `canonical` is the
    compact JSON `{"service_id":<id>,"event":<event>}` (whitespace and the spelling of the
    service id do not matter; key order does, as attached data keeps it).
    """
    content = hashlib.sha256(_canonical(service_id, orjson.dumps(event))).digest()
    return _identity(content, occurrence)


class LinePreparer:
    """Turns the JSON lines of one input into Prepared records (`prepare`, per line)."""

    def __init__(self, limits: Limits, *, new_ids: bool = False, drop_reply_to: bool = False):
        self._limits = limits
        self._new_ids = new_ids
        self._drop_reply_to = drop_reply_to
        self._seen: Counter[bytes] = Counter()

    def prepare(self, line: bytes) -> Prepared:
        """Validate one non-blank line; raises InvalidInputError."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"not valid JSON: {exc}") from None
        _check_exact_integers(line)
        if not isinstance(obj, dict):
            raise InvalidInputError("not a JSON object")
        if "specversion" in obj:
            return self._structured(line, obj)
        if obj.keys() == _PLAIN_KEYS:
            return self._plain(obj)
        raise InvalidInputError(
            "neither a structured CloudEvent (no specversion) nor a plain record with exactly "
            f"the keys service_id and event (got {', '.join(sorted(map(str, obj))) or 'none'})"
        )

    def _plain(self, obj: dict[str, Any]) -> Prepared:
        event = obj["event"]
        body = orjson.dumps(event)
        sid = _validate(obj["service_id"], body, self._limits)
        if self._new_ids:
            event_id = uuid.uuid4().hex
        else:
            content = hashlib.sha256(_canonical(sid, body)).digest()
            self._seen[content] += 1
            event_id = _identity(content, self._seen[content])
        key, value, headers = wire.encode_request_binary(
            service_id=sid, body=body, event_id=event_id, source=PRODUCE_SOURCE
        )
        return Prepared(PRODUCE_SOURCE, event_id, sid, key, value, headers)

    def _structured(self, line: bytes, obj: dict[str, Any]) -> Prepared:
        try:
            envelope = wire.decode_request(line, STRUCTURED_HEADERS)
        except wire.UndecodableRecordError as exc:
            raise InvalidInputError(str(exc)) from None
        sid = _validate(envelope.service_id, envelope.data, self._limits)
        headers = list(STRUCTURED_HEADERS)
        edited = False
        if HEADERS_ATTRIBUTE in obj:
            headers += unpack_headers(obj.pop(HEADERS_ATTRIBUTE))
            edited = True
        if self._drop_reply_to and obj.pop("replyto", None) is not None:
            edited = True
        if self._new_ids:
            obj["id"] = uuid.uuid4().hex
            edited = True
        key = obj.get(PARTITION_KEY)
        if key is not None and not isinstance(key, str):
            raise InvalidInputError(f"{PARTITION_KEY} must be a string")
        value = orjson.dumps(obj) if edited else line
        record_key = key.encode() if key is not None else str(sid).encode()
        return Prepared(envelope.source, obj["id"], sid, record_key, value, headers)


def _extra_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Headers a structured CloudEvent does not carry itself (not `ce_*`, not content-type)."""
    return [
        (name, raw)
        for name, raw in headers
        if not name.lower().startswith(wire.CE_PREFIX) and name.lower() != wire.CONTENT_TYPE_HEADER
    ]


def request_from_created(value: bytes | None) -> dict[str, Any]:
    """The task-start CloudEvent behind a task-created reply: the task's own start-event fields
    and attached data, under the original event identity. Raises InvalidInputError."""
    try:
        payload = orjson.loads(value or b"")
        task = StoredTask.model_validate(payload["task"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValidationError) as exc:
        raise InvalidInputError(f"not a task-created reply with a task: {exc}") from None
    fields = task.model_dump(include=set(_FIELD_ORDER), exclude_none=True)
    data = {name: fields[name] for name in _FIELD_ORDER if name in fields}
    data.update(task.attached_data)
    return wire.structured_request(
        service_id=task.service_id, data=data, event_id=task.event.id, source=task.event.source
    )


def is_created_reply(headers: Sequence[tuple[str, bytes]]) -> bool:
    """True for a task-created reply record (the created-events log)."""
    return wire.reply_type(headers) == wire.TYPE_TASK_CREATED


def export_event(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """One JSON line for `export`: a structured CloudEvent that `produce` replays faithfully.

    Requests of either mode keep their identity and attributes (`schemas.wire`), other Kafka
    headers go into the `kafkaheaders` attribute; created replies become their request.
    """
    if is_created_reply(headers):
        return request_from_created(value)
    if wire.reply_type(headers) == wire.TYPE_TASK_REJECTED:
        raise InvalidInputError("a task-rejected reply carries no event data")
    try:
        event = wire.record_to_structured(value, headers)
    except wire.UndecodableRecordError as exc:
        raise InvalidInputError(str(exc)) from None
    if extra := _extra_headers(headers):
        event[HEADERS_ATTRIBUTE] = pack_headers(extra)
    return event


def replay_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    limits: Limits,
    *,
    drop_reply_to: bool = False,
) -> Prepared:
    """A record of the requests or created-events topic, as the request to publish again.

    Requests go out unchanged (key, value and headers, byte for byte) unless `drop_reply_to`;
    created replies become a structured request rebuilt from their task.
    """
    if is_created_reply(headers) or wire.reply_type(headers) == wire.TYPE_TASK_REJECTED:
        event = export_event(value, headers)
        sid = _validate(event["serviceid"], event["data"], limits)
        rkey, rvalue, rheaders = wire.encode_structured(event)
        return Prepared(event["source"], event["id"], sid, rkey, rvalue, rheaders)
    try:
        envelope = wire.decode_request(value, headers)
    except wire.UndecodableRecordError as exc:
        raise InvalidInputError(str(exc)) from None
    sid = _validate(envelope.service_id, envelope.data, limits)
    out_headers = list(headers)
    if drop_reply_to and envelope.reply_to is not None:
        if envelope.structured:
            event = orjson.loads(value or b"")
            event.pop("replyto", None)
            value = orjson.dumps(event)
        else:
            out_headers = [(n, v) for n, v in headers if n.lower() != "ce_replyto"]
    return Prepared(envelope.source, envelope.id, sid, key, value or b"", out_headers)
