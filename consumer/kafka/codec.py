"""Records in -> commands, rejections or dead letters; outcomes -> reply records.

The consumer's side of the wire contract (the layout itself lives in `schemas.wire`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from consumer.contract import task_json
from consumer.domain import EventIdentity, Position, Rejection, StartCommand, Task
from schemas import wire
from schemas.replies import ErrorBody, ErrorCode
from schemas.task_start import (
    Limits,
    TaskStartEvent,
    TaskStartValidationError,
    format_timestamp,
    parse_service_id,
    parse_task_start,
)

STANDARD_FIELDS = frozenset(TaskStartEvent.model_fields)


class OutRecord(NamedTuple):
    """One record to publish."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    optional: bool = False
    """A copy to a requester-named `replyto` topic: skipped (logged) if that topic is missing."""


class Inbound(NamedTuple):
    """One consumed record, translated: exactly one of command, rejection, dead_letter is set."""

    position: Position
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    reply_to: str | None = None
    correlation_id: str | None = None
    command: StartCommand | None = None
    rejection: Rejection | None = None
    dead_letter: str | None = None


def translate(
    position: Position,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes]],
    limits: Limits,
) -> Inbound:
    """Decode and validate one record."""
    headers = tuple(headers)
    try:
        envelope = wire.decode_request(value, headers)
    except wire.UndecodableRecordError as exc:
        return Inbound(position, key, value, headers, dead_letter=str(exc))
    identity = EventIdentity(source=envelope.source, id=envelope.id)
    common: dict[str, Any] = {
        "reply_to": envelope.reply_to,
        "correlation_id": envelope.correlation_id,
    }
    problems: list[TaskStartValidationError] = []
    service_id: int | None = None
    event: TaskStartEvent | None = None
    # Kept without their tracebacks: a traceback holds this frame, whose `problems` holds the
    # error, a cycle that would keep the whole record (values up to the broker's limit) alive
    # until the garbage collector's rare full pass.
    try:
        service_id = parse_service_id(envelope.service_id)
    except TaskStartValidationError as exc:
        problems.append(exc.with_traceback(None))
    try:
        event = parse_task_start(envelope.data, limits)
    except TaskStartValidationError as exc:
        problems.append(exc.with_traceback(None))
    if service_id is None or event is None:
        return Inbound(
            position, key, value, headers, **common,
            rejection=_rejection(identity, service_id, problems, position),
        )  # fmt: skip
    fields = {name: getattr(event, name) for name in event.model_fields_set & STANDARD_FIELDS}
    command = StartCommand(identity, service_id, fields, event.attached_data, position)
    return Inbound(position, key, value, headers, **common, command=command)


def _rejection(
    identity: EventIdentity,
    service_id: int | None,
    problems: list[TaskStartValidationError],
    position: Position,
) -> Rejection:
    main = max(problems, key=lambda p: p.status)  # 413 outranks 400
    errors = [e for p in problems for e in p.errors]
    message = " ".join(p.message for p in problems)
    body = ErrorBody(message=message, errors=errors)
    return Rejection(
        identity=identity,
        service_id=service_id,
        status=main.status,
        code=main.code.value,
        body=body.model_dump(),
        position=position,
    )


def now_iso() -> str:
    """The current time in the contract's form (reply `ce_time`), taken once per batch."""
    return format_timestamp(datetime.now(UTC))


def created_records(
    inbound: Inbound, task: Task, location: str, log_topic: str, time: str
) -> list[OutRecord]:
    """The task-created reply: to the created-events log, and to the request's reply topic."""
    payload = {
        "kind": "task.created",
        "task_id": task.task_id,
        "service_id": task.service_id,
        "location": location,
        "event": {"source": task.identity.source, "id": task.identity.id},
        "correlation_id": inbound.correlation_id,
        "task": task_json(task),
    }
    return _reply(
        inbound, wire.TYPE_TASK_CREATED, payload, task.service_id, log=log_topic, time=time
    )


def rejected_records(
    inbound: Inbound, rejection: Rejection, log_topic: str, time: str
) -> list[OutRecord]:
    """The task-rejected reply: to the rejections topic, and to the request's reply topic."""
    payload = {
        "kind": "task.rejected",
        "service_id": rejection.service_id,
        "status": rejection.status,
        "code": ErrorCode(rejection.code).value,
        "event": {"source": rejection.identity.source, "id": rejection.identity.id},
        "correlation_id": inbound.correlation_id,
        "error": rejection.body,
    }
    return _reply(
        inbound, wire.TYPE_TASK_REJECTED, payload, rejection.service_id, log=log_topic, time=time
    )


def _reply(
    inbound: Inbound,
    reply_type: str,
    payload: dict[str, Any],
    service_id: int | None,
    *,
    log: str,
    time: str,
) -> list[OutRecord]:
    event = payload["event"]
    key, value, headers = wire.encode_reply(
        reply_type=reply_type,
        payload=payload,
        service_id=service_id,
        request_source=event["source"],
        request_id=event["id"],
        correlation_id=inbound.correlation_id,
        time=time,
    )
    records = [OutRecord(log, key, value, headers)]
    if inbound.reply_to is not None and inbound.reply_to != log:
        records.append(OutRecord(inbound.reply_to, key, value, headers, optional=True))
    return records


def dead_letter_record(inbound: Inbound, topic: str) -> OutRecord:
    """The original key, value and headers untouched, plus headers naming the error and origin."""
    headers = wire.dead_letter_headers(
        inbound.headers,
        error=inbound.dead_letter or "undecodable",
        topic=inbound.position.topic,
        partition=inbound.position.partition,
        offset=inbound.position.offset,
    )
    return OutRecord(topic, inbound.key, inbound.value, headers)
