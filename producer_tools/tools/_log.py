"""Records already in Kafka as requests: the requests topic and the task events log.

The task events log (`UCS_TOPIC_CREATED`) holds a reply for every accepted request, each
carrying the whole task after it: `task.created` (a start), `task.completed` (an end) and
`task.extension.updated` (an extension update). `log_entry` reads one such record;
`request_from_log` gives the request it answers, under that request's identity, as a structured
CloudEvent. `export_event` and `replay_record` turn any record of the requests topic or of the
log into the JSON line `export` writes and the record `replay` publishes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import ValidationError

from producer_tools.tools._events import (
    HEADERS_ATTRIBUTE,
    SINGLE_TENANT,
    InvalidInputError,
    Prepared,
    decode_record,
    pack_headers,
    validated_envelope,
)
from schemas import wire
from schemas.limits import Limits
from schemas.replies import EventRef, StoredTask
from schemas.requests import TYPE_OF_KIND
from schemas.task_start import STANDARD_FIELDS, TaskStartEvent
from schemas.tenants import Tenancy
from schemas.validation import EventKind

LOG_TYPES: Final = {
    wire.TYPE_TASK_CREATED: EventKind.START,
    wire.TYPE_TASK_COMPLETED: EventKind.END,
    wire.TYPE_TASK_EXTENSION_UPDATED: EventKind.EXTENSION,
}
"""The reply types of the task events log, and the kind of request each answers."""
_START_FIELDS = tuple(name for name in TaskStartEvent.model_fields if name in STANDARD_FIELDS)

Identity = tuple[str, str]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record of the task events log: what it answered, and the whole task after it."""

    kind: EventKind
    """What the answered request did: start, end or extension update."""
    event: Identity
    """The answered request's identity (`source`, `id`)."""
    task: StoredTask
    extension: str | None = None
    """The extension's name (extension updates)."""
    value: Any = None
    """The extension's new value as stored (extension updates)."""


def _completion_problem(task: StoredTask) -> str | None:
    """What is missing from a completed task as the log shows it (the database holds a
    completion whole: end event with its timestamp, duration and end identity)."""
    if task.completed is None:
        return None
    stamp = task.completed.get("timestamp")
    if not isinstance(stamp, str):
        return "is completed without an end timestamp"
    try:
        datetime.fromisoformat(stamp)
    except ValueError:
        return f"has an unreadable end timestamp {stamp!r}"
    if task.duration is None or task.completed_event is None:
        return "is completed without its duration or end event identity"
    return None


def log_kind(headers: Sequence[tuple[str, bytes]]) -> EventKind | None:
    """The kind of request a record of the task events log answers; None for other records."""
    return LOG_TYPES.get(wire.reply_type(headers) or "")


def log_entry(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> LogEntry:
    """Read one record of the task events log, or raise InvalidInputError saying why not."""
    kind = log_kind(headers)
    if kind is None:
        raise InvalidInputError(
            "not a record of the task events log (task.created, task.completed or "
            "task.extension.updated)"
        )
    what = f"a {TYPE_OF_KIND[kind]} reply"
    try:
        payload = orjson.loads(value or b"")
        task = StoredTask.model_validate(payload["task"])
        event = task.event if kind is EventKind.START else EventRef.model_validate(payload["event"])
        extension = value_of = None
        if kind is EventKind.EXTENSION:
            extension, value_of = payload["extension"], payload["value"]
    except (orjson.JSONDecodeError, TypeError, KeyError, ValidationError) as exc:
        raise InvalidInputError(f"{what} without a valid task: {exc}") from None
    if kind is EventKind.EXTENSION and not (
        isinstance(extension, str) and isinstance(value_of, dict | list)
    ):
        raise InvalidInputError(f"{what} without an extension name and value")
    if kind is EventKind.END and task.completed is None:
        raise InvalidInputError(f"{what} whose task is not completed")
    if (problem := _completion_problem(task)) is not None:
        raise InvalidInputError(f"{what} whose task {problem}")
    return LogEntry(kind, (event.source, event.id), task, extension, value_of)


def request_from_log(entry: LogEntry) -> dict[str, Any]:
    """The request a log record answers, as a structured CloudEvent under its identity.

    A start: the task's start-event fields and attached data as the record shows them (the
    task at the time of the reply: a start answered again after an extension update shows the
    new value); an end: the Task End Event as stored (its timestamp
    always set); an extension update: the name and value it set. Each keeps the task's tenant;
    a start also its group.
    """
    task = entry.task
    source, event_id = entry.event
    start = entry.kind is EventKind.START
    return wire.structured_request(
        service_id=task.service_id,
        data=_request_data(entry),
        event_id=event_id,
        source=source,
        event_type=TYPE_OF_KIND[entry.kind],
        task_id=None if start else task.task_id,
        extension=entry.extension,
        tenant=task.tenant,
        group=task.group if start else None,
    )


def _request_data(entry: LogEntry) -> Any:
    """The body of the request a log record answers (see `request_from_log`)."""
    task = entry.task
    if entry.kind is EventKind.END:
        return task.completed
    if entry.kind is EventKind.EXTENSION:
        return entry.value
    fields = task.model_dump(include=set(_START_FIELDS), exclude_none=True)
    return {name: fields[name] for name in _START_FIELDS if name in fields} | task.attached_data


def _extra_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Headers a structured CloudEvent does not carry itself (not `ce_*`, not content-type)."""
    return [
        (name, raw)
        for name, raw in headers
        if not name.lower().startswith(wire.CE_PREFIX) and name.lower() != wire.CONTENT_TYPE_HEADER
    ]


def export_event(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """One JSON line for `export`: a structured CloudEvent that `produce` replays faithfully.

    Requests of every type and either mode keep their identity and every attribute
    (`schemas.wire`); other Kafka headers go into the `kafkaheaders` attribute. Records of
    the task events log become the request they answer (`request_from_log`).
    """
    if log_kind(headers) is not None:
        return request_from_log(log_entry(value, headers))
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
    tenancy: Tenancy = SINGLE_TENANT,
) -> Prepared:
    """A record of the requests topic or the task events log, as the request to publish again.

    Requests go out unchanged (key, value and headers, byte for byte) unless `drop_reply_to`;
    log records become a structured request (`request_from_log`). Either is validated first,
    as the consumer will validate it.
    """
    if log_kind(headers) is not None or wire.reply_type(headers) == wire.TYPE_TASK_REJECTED:
        key, value, headers = wire.encode_structured(export_event(value, headers))
    envelope = decode_record(value, headers)
    valid = validated_envelope(envelope, limits, tenancy, value)
    out_headers = list(headers)
    if drop_reply_to and envelope.reply_to is not None:
        if envelope.structured:
            event = orjson.loads(value or b"")
            event.pop("replyto", None)
            value = orjson.dumps(event)
        else:
            out_headers = [(n, v) for n, v in headers if n.lower() != "ce_replyto"]
    return Prepared(
        envelope.source, envelope.id, valid.service_id, key, value or b"", out_headers, valid.kind
    )
