"""From JSON lines to validated request records: the line shapes `produce` reads.

A line is one request, in one of these shapes:
- a structured CloudEvent (a JSON line with `specversion`, as `export` writes them), of any
  request type (start, end, extension update): published in structured mode with its own
  identity (`source` + `id`) and attributes (`taskid`, `extension`, `tenantid`, `groupid`);
- a plain line that says what it is by its keys, published in binary mode under a
  deterministic identity (see `plain_identity`):
  `{"service_id": S, "event": {...}}` starts a task (the Task Start Event),
  `{"service_id": S, "task_id": T, "end": {...}}` completes one (the Task End Event),
  `{"service_id": S, "task_id": T, "extension": "Name", "value": ...}` replaces the value of
  one of its extensions; each may add `"tenant"` (ContactCenterId) and `"group"` (GroupId).

Every request is validated by its type with the one validation entry
(`schemas.validation.validate_event`), and its tenant as the consumer checks it when
`UCS_TENANTS` is set, before anything is sent. Records already in Kafka (the requests topic
and the task events log) are turned into requests by `producer_tools.tools._log`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

import orjson

from schemas import wire
from schemas.errors import EventValidationError, Problems, merged
from schemas.limits import Limits
from schemas.requests import KIND_OF_TYPE, TaskRequest
from schemas.tenants import Tenancy
from schemas.validation import (
    EXTENSION_KIND,
    START_KIND,
    EventKind,
    Scanned,
    ValidEvent,
    scanned_clean,
    structured_body,
    validate_event,
)

PRODUCE_SOURCE: Final = "urn:ucs-tasks:produce"
"""CloudEvents `source` of plain lines published by `produce`."""
HEADERS_ATTRIBUTE: Final = "kafkaheaders"
"""Extension attribute (a JSON string) keeping the Kafka headers a CloudEvent cannot express."""
PARTITION_KEY: Final = "partitionkey"
"""CloudEvents partitioning extension: when present, the record key (the Kafka binding's rule)."""

STRUCTURED_HEADERS: Final = ((wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode()),)

_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGIT_RUN = b"0" * 19  # an integer this long may not fit in 64 bits
_INT_LOW, _INT_HIGH = -(2**63), 2**64 - 1  # what orjson reads exactly
SINGLE_TENANT: Final = Tenancy()
"""No tenants configured: a request's tenant is passed on, not checked."""


class InvalidInputError(ValueError):
    """A line or record that cannot be published; the message says why."""


class Prepared(NamedTuple):
    """A validated request record, ready to publish (a NamedTuple: one per line)."""

    source: str
    id: str
    service_id: int
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    kind: EventKind = EventKind.START

    @property
    def identity(self) -> tuple[str, str]:
        """The idempotency key: (source, id)."""
        return (self.source, self.id)


def validated(
    kind: EventKind,
    service_id: str | int | None,
    data: Any,
    limits: Limits,
    *,
    task_id: str | int | None = None,
    extension: str | None = None,
    tenant: str | None = None,
    group: str | None = None,
    tenancy: Tenancy = SINGLE_TENANT,
) -> ValidEvent:
    """One request checked as the consumer checks it: its ids and body by its kind
    (`validate_event`, which also names ids and names of the wrong JSON type), then its
    tenant (only when tenants are configured); or InvalidInputError with every problem. A
    start's task id and the extension name of anything but an extension update are not looked
    at (the consumer ignores them too)."""
    # A `try` per part (`Problems.check` costs ~0.3 us more a line), the collector made at the
    # first problem (a valid line makes none).
    problems: Problems | None = None
    event = None
    try:
        event = validate_event(
            kind,
            service_id,
            data,
            limits,
            task_id=None if kind is START_KIND else task_id,
            extension=extension if kind is EXTENSION_KIND else None,
        )
    except EventValidationError as exc:  # names every problem of the ids and the body
        problems = Problems.kept(problems, exc)
    if tenancy.tenants:  # else every request's tenant is (None, None): nothing to check
        try:
            tenancy.resolve(tenant, group)
        except EventValidationError as exc:
            problems = Problems.kept(problems, exc)
    if problems is not None:
        raise InvalidInputError(merged(problems.found).message) from None
    assert event is not None  # noqa: S101 - no problem: set
    return event


def decode_record(value: bytes | None, headers: wire.Headers) -> wire.Envelope:
    """The request a record holds (`wire.decode_request`), or InvalidInputError saying why not."""
    try:
        return wire.decode_request(value, headers)
    except wire.UndecodableRecordError as exc:
        raise InvalidInputError(str(exc)) from None


def validated_envelope(
    envelope: wire.Envelope,
    limits: Limits,
    tenancy: Tenancy = SINGLE_TENANT,
    record: bytes | None = None,
    clean: bool | None = None,
) -> ValidEvent:
    """A decoded request checked by its type as the consumer checks it (see `validated`);
    `record`: the bytes it was decoded from, `clean`: whether they passed `scanned_clean`, when
    the caller knows (`structured_body`)."""
    return validated(
        KIND_OF_TYPE[envelope.type],
        envelope.service_id,
        structured_body(envelope.data, record, clean),
        limits,
        task_id=envelope.task_id,
        extension=envelope.extension,
        tenant=envelope.tenant,
        group=envelope.group,
        tenancy=tenancy,
    )


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


# --- plain lines ---------------------------------------------------------------------------

_BODY_KEY: Final = {EventKind.START: "event", EventKind.END: "end", EventKind.EXTENSION: "value"}
"""Where a plain line holds the request's body."""
_REQUIRED: Final = {
    EventKind.START: ("service_id", "event"),
    EventKind.END: ("service_id", "task_id", "end"),
    EventKind.EXTENSION: ("service_id", "task_id", "extension", "value"),
}
_DISCRIMINATOR: Final = (
    (EventKind.START, "event"),
    (EventKind.END, "end"),
    (EventKind.EXTENSION, "extension"),
)
"""The key that says what a plain line asks for."""
_OPTIONAL: Final = ("tenant", "group")
_SHAPES: Final = (
    'a plain line {"service_id", "event"} (start), {"service_id", "task_id", "end"} (complete) '
    'or {"service_id", "task_id", "extension", "value"} (update an extension), each with an '
    'optional "tenant" and "group"'
)


_PLAIN_START: Final = frozenset(("service_id", "event"))


def _plain_kind(obj: dict[str, Any]) -> EventKind:
    kinds = [kind for kind, key in _DISCRIMINATOR if key in obj]
    if not kinds:
        got = ", ".join(sorted(map(str, obj))) or "none"
        raise InvalidInputError(
            f"neither a structured CloudEvent (no specversion) nor {_SHAPES} (got {got})"
        )
    if len(kinds) > 1:
        raise InvalidInputError(
            'a line is one request: "event", "end" and "extension" exclude each other'
        )
    kind = kinds[0]
    required = _REQUIRED[kind]
    missing = [key for key in required if key not in obj]
    unknown = sorted(str(key) for key in obj if key not in required and key not in _OPTIONAL)
    if missing or unknown:
        problems = [f"lacks {', '.join(missing)}"] if missing else []
        problems += [f"has unknown keys {', '.join(unknown)}"] if unknown else []
        raise InvalidInputError(f"a plain {kind} line {' and '.join(problems)} ({_SHAPES})")
    return kind


def _label(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None and name not in obj:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty JSON string")
    return value


def canonical(request: TaskRequest) -> bytes:
    """The compact JSON of the plain line of `request` (its body the compact JSON of its event,
    end event or extension value), keys in a fixed order: `service_id`, `tenant`, `group`,
    `task_id`, then `event` / `end` / `extension` and `value` (absent ones left out); byte for
    byte `{"service_id":<id>,"event":<event>}` for a plain start. Its identity comes from it."""
    if (
        request.kind is START_KIND
        and request.task_id is None
        and request.tenant is None
        and request.group is None
    ):  # the common line, in one step
        return b'{"service_id":%d,"event":%s}' % (request.service_id, request.body)
    parts = [b'{"service_id":%d' % request.service_id]
    parts.extend(
        b',"%s":%s' % (name, orjson.dumps(value))
        for name, value in ((b"tenant", request.tenant), (b"group", request.group))
        if value is not None
    )
    if request.task_id is not None:
        parts.append(b',"task_id":%d' % request.task_id)
    if request.kind is EXTENSION_KIND:
        parts.append(b',"extension":%s' % orjson.dumps(request.extension))
    parts.append(b',"%s":%s}' % (_BODY_KEY[request.kind].encode(), request.body))
    return b"".join(parts)


def _identity(content: bytes, occurrence: int) -> str:
    return hashlib.sha256(b"%d\n%s" % (occurrence, content)).hexdigest()


def plain_identity(
    service_id: int,
    event: Any,
    occurrence: int = 1,
    *,
    kind: EventKind = EventKind.START,
    task_id: int | None = None,
    extension: str | None = None,
    tenant: str | None = None,
    group: str | None = None,
) -> str:
    """The deterministic event id of a plain line: its content and how many identical lines
    came before it in the same input (`occurrence` counts from 1). The same file gives the same
    ids every time; lines added, removed or moved elsewhere leave the other lines' ids alone.

    The id is `sha256("<occurrence>\\n" + sha256(canonical))` in hex, where `canonical` is the
    compact JSON of the line with its keys in a fixed order (`canonical`; for a
    start, `{"service_id":<id>,"event":<event>}`): whitespace, the order of the line's own keys
    and the spelling of its ids do not matter; key order inside the event or value does, as
    attached data keeps it. `event` is the event, end event or extension value.
    """
    request = TaskRequest(kind, service_id, orjson.dumps(event), task_id, extension, tenant, group)
    return _identity(hashlib.sha256(canonical(request)).digest(), occurrence)


class LinePreparer:
    """Turns the JSON lines of one input into Prepared records (`prepare`, per line)."""

    def __init__(
        self,
        limits: Limits,
        *,
        new_ids: bool = False,
        drop_reply_to: bool = False,
        tenancy: Tenancy = SINGLE_TENANT,
    ) -> None:
        self._limits = limits
        self._new_ids = new_ids
        self._drop_reply_to = drop_reply_to
        self._tenancy = tenancy
        self._seen: dict[bytes, int] = {}  # not a Counter: its `+=` on a new key calls Python

    def prepare(self, line: bytes) -> Prepared:
        """Validate one non-blank line; raises InvalidInputError."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInputError(f"not valid JSON: {exc}") from None
        clean = scanned_clean(line)  # then no integer can be past 64 bits either
        if not clean:
            _check_exact_integers(line)
        if not isinstance(obj, dict):
            raise InvalidInputError("not a JSON object")
        if "specversion" in obj:
            return self._structured(line, obj, clean)
        return self._plain(obj, clean)

    def _plain(self, obj: dict[str, Any], clean: bool) -> Prepared:
        """`clean`: the line passed `scanned_clean`, so its body is checked as decoded (not
        decoded a second time from the compact JSON that is sent); one over the size cap is
        refused from its bytes, as before (the message says "N bytes", not "as JSON")."""
        if obj.keys() == _PLAIN_START:  # the common line: a start, no tenant or group
            kind, tenant, group = START_KIND, None, None
        else:
            kind = _plain_kind(obj)
            tenant, group = _label(obj, "tenant"), _label(obj, "group")
        value = obj[_BODY_KEY[kind]]
        body = orjson.dumps(value)  # what is sent; its size is the body's, checked once
        size = len(body)
        # tuple.__new__: the NamedTuple's own __new__ is a Python function (~0.25 us, this ~0.1)
        fits = clean and size <= self._limits.max_body_bytes
        checked = tuple.__new__(Scanned, (value, size)) if fits else body
        valid = validated(
            kind,
            obj["service_id"],
            checked,
            self._limits,
            task_id=obj.get("task_id"),
            extension=obj.get("extension"),
            tenant=tenant,
            group=group,
            tenancy=self._tenancy,
        )
        request = TaskRequest.of(valid, body, tenant, group)
        if self._new_ids:
            event_id = uuid.uuid4().hex
        else:
            content = hashlib.sha256(canonical(request)).digest()
            occurrence = self._seen[content] = self._seen.get(content, 0) + 1
            event_id = _identity(content, occurrence)
        key, value, headers = request.record(event_id=event_id, source=PRODUCE_SOURCE)
        return tuple.__new__(
            Prepared, (PRODUCE_SOURCE, event_id, request.service_id, key, value, headers, kind)
        )

    def _structured(self, line: bytes, obj: dict[str, Any], clean: bool) -> Prepared:
        """`obj`: the line decoded (not decoded again); `clean`: the line passed `scanned_clean`."""
        try:
            envelope = wire.decode_structured(obj)
        except wire.UndecodableRecordError as exc:
            raise InvalidInputError(str(exc)) from None
        valid = validated_envelope(envelope, self._limits, self._tenancy, line, clean)
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
        record_key = key.encode() if key is not None else str(valid.service_id).encode()
        return Prepared(
            envelope.source, obj["id"], valid.service_id, record_key, value, headers, valid.kind
        )
