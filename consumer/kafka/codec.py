"""Records in -> commands; outcomes -> reply records (and dead letters: `dead_letters.py`).

The consumer's side of the wire contract (the layout itself lives in `schemas.wire`). Whatever
one record carries, translating it yields a command and encoding its outcome yields records:
nothing here raises for one record's sake.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer.contract import task_json
from consumer.domain import (
    Changed,
    ChangeKind,
    Command,
    EndCommand,
    EventIdentity,
    ExtensionCommand,
    Outcome,
    Position,
    Rejection,
    StartCommand,
    Task,
    Undecodable,
)
from consumer.kafka import dead_letters
from consumer.ports import (
    COPY,
    REPLY,
    ConsumedRecord,
    Inbound,
    OutRecord,
    Undelivered,
    UnparseableRecord,
)
from schemas import wire
from schemas.errors import EventValidationError
from schemas.ids import parse_service_id, parse_task_id
from schemas.limits import Limits
from schemas.replies import ErrorBody, ErrorCode, FieldError
from schemas.requests import KIND_OF_TYPE
from schemas.settings import ContractSettings, TopicSettings
from schemas.task_end import END_STANDARD_FIELDS as END_FIELDS
from schemas.task_start import STANDARD_FIELDS as START_FIELDS
from schemas.task_start import format_timestamp
from schemas.tenants import Tenancy
from schemas.validation import (
    END_KIND,
    EXTENSION_KIND,
    START_KIND,
    EventKind,
    ValidEvent,
    structured_body,
    validate_event,
)

__all__ = ["Inbound", "Replies", "Rules", "consumed", "translate"]

MAX_TOPIC_NAME_LENGTH = 249
"""Kafka's longest topic name."""
MAX_CORRELATION_ID_LENGTH = 1024
"""Longest `correlationid` accepted, and echoed: a reply carries it twice (header and JSON)."""
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")


class Rules:
    """What makes a request valid besides its body: the limits, and the topics it may not name
    as its reply topic (the requests and dead-letter topics: a reply there would be read back
    as a request, or pass for a dead letter)."""

    def __init__(
        self, limits: Limits, own_topics: Iterable[str] = (), tenancy: Tenancy | None = None
    ) -> None:
        self.limits = limits
        self.tenancy = tenancy or Tenancy()
        self._own = frozenset(own_topics)
        self._checked: dict[str, str | None] = {}

    @classmethod
    def of(cls, topics: TopicSettings, contract: ContractSettings) -> Rules:
        return cls(contract.limits, (topics.requests, topics.dead_letter), contract.tenancy)

    def reply_to_problem(self, name: str) -> str | None:
        """Why `name` cannot be a reply topic, or None (remembered: requesters reuse theirs)."""
        if name in self._checked:
            return self._checked[name]
        if len(self._checked) > 1024:
            self._checked.clear()
        problem = self._checked[name] = _reply_to_problem(name, self._own)
        return problem


def _reply_to_problem(name: str, own: frozenset[str]) -> str | None:
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        return f"is {len(name)} characters long; a Kafka topic name has at most 249"
    if not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        return "is not a Kafka topic name (ASCII letters, digits, '.', '_' and '-' only)"
    if name.startswith("__"):
        return "names an internal topic"
    if name in own:
        return "names this service's requests or dead-letter topic"
    return None


def consumed(record: ConsumedRecord | UnparseableRecord, rules: Rules) -> Inbound:
    """Translate one consumed record; never raises (an error is the record's dead letter)."""
    # tuple.__new__: the NamedTuple's own __new__ is a Python function (~0.25 us, this ~0.1)
    position = tuple.__new__(Position, (record.topic, record.partition, record.offset))
    if isinstance(record, UnparseableRecord):
        return dead_letters.unparseable(position, record)
    headers = tuple(record.headers)
    try:
        return translate(position, record.key, record.value, headers, rules)
    except Exception as exc:  # noqa: BLE001 - one record's failure must not stop its partition
        reason = f"the record could not be translated: {exc!r}"
        return Inbound(position, record.key, record.value, headers, Undecodable(position, reason))


def translate(
    position: Position,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]],
    rules: Rules,
) -> Inbound:
    """Decode and validate one record."""
    headers = tuple(headers)
    try:
        envelope = wire.decode_request(value, headers)  # type: ignore[arg-type]  # None values count as absent
    except wire.UndecodableRecordError as exc:
        return Inbound(position, key, value, headers, Undecodable(position, str(exc)))
    identity = tuple.__new__(EventIdentity, (envelope.source, envelope.id))  # as in `consumed`
    reply_to, correlation_id = envelope.reply_to, envelope.correlation_id
    # Kept without their tracebacks: a traceback holds this frame, whose `problems` holds the
    # error, a cycle that would keep the whole record (values up to the broker's limit) alive
    # until the garbage collector's rare full pass.
    problems: list[EventValidationError] = []
    if reply_to is not None and (problem := rules.reply_to_problem(reply_to)) is not None:
        problems.append(_attribute(ErrorCode.INVALID_REPLY_TO, "replyto", problem))
        reply_to = None
    if correlation_id is not None and len(correlation_id) > MAX_CORRELATION_ID_LENGTH:
        problem = f"is {len(correlation_id)} characters long; at most 1024 are accepted"
        problems.append(_attribute(ErrorCode.INVALID_ATTRIBUTE, "correlationid", problem))
        correlation_id = correlation_id[:MAX_CORRELATION_ID_LENGTH]  # what the rejection echoes
    tenant = group = None
    try:
        tenant, group = rules.tenancy.resolve(envelope.tenant, envelope.group)
    except EventValidationError as exc:
        problems.append(exc.with_traceback(None))
    kind = KIND_OF_TYPE[envelope.type]
    task_id = envelope.task_id if kind is not START_KIND else None
    extension = (envelope.extension or "") if kind is EXTENSION_KIND else None
    body = structured_body(envelope.data, value)
    valid: ValidEvent | None = None
    try:
        valid = validate_event(
            kind, envelope.service_id, body, rules.limits, task_id=task_id, extension=extension
        )
    except EventValidationError as exc:
        problems.append(exc.with_traceback(None))
    command: Command
    if problems or valid is None:
        command = _rejection(identity, envelope, kind, problems, position)
    else:
        command = _command(identity, valid, position, tenant, group)
    return tuple.__new__(
        Inbound, (position, key, value, headers, command, reply_to, correlation_id, envelope.echo)
    )


def _command(
    identity: EventIdentity,
    valid: ValidEvent,
    position: Position,
    tenant: str | None,
    group: str | None,
) -> Command:
    if valid.kind is START_KIND:
        event = valid.start
        fields = {name: getattr(event, name) for name in event.model_fields_set & START_FIELDS}
        return StartCommand(
            identity, valid.service_id, fields, event.attached_data, position, tenant, group
        )
    assert valid.task_id is not None  # noqa: S101 - validated for END and EXTENSION
    if valid.kind is END_KIND:
        end = valid.end
        fields = {name: getattr(end, name) for name in end.model_fields_set & END_FIELDS}
        return EndCommand(
            identity, valid.service_id, valid.task_id, fields, end.attached_data, position, tenant
        )
    update = valid.update
    return ExtensionCommand(
        identity, valid.service_id, valid.task_id, update.name, update.value, position, tenant
    )


def _attribute(code: ErrorCode, name: str, problem: str) -> EventValidationError:
    return EventValidationError(code, [FieldError(field=name, problem=problem)])


def _parsed(parse: Callable[[Any], int], raw: Any) -> int | None:
    try:
        return parse(raw)
    except EventValidationError:
        return None


def _rejection(
    identity: EventIdentity,
    envelope: wire.Envelope,
    kind: EventKind,
    problems: list[EventValidationError],
    position: Position,
) -> Rejection:
    service_id = _parsed(parse_service_id, envelope.service_id)
    task_id = None if kind is EventKind.START else _parsed(parse_task_id, envelope.task_id)
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
        task_id=task_id,
    )


def now_iso() -> str:
    """The current time in the contract's form (reply `ce_time`), taken once per batch."""
    return format_timestamp(datetime.now(UTC))


class Replies:
    """Encodes outcomes as records: replies to the log topics (and a copy to a request's
    `replyto`), dead letters for what has no identity, and what to send instead of a record the
    broker refused. One home for the topics, the Location template and the record size limit."""

    def __init__(self, topics: TopicSettings, contract: ContractSettings) -> None:
        self._created = topics.created
        self._rejected = topics.rejected
        self._location: Callable[[int, int], str] = contract.location
        self.dead_letters = dead_letters.DeadLetters(
            topics.dead_letter, contract.max_reply_record_bytes
        )
        self._largest_value = contract.max_reply_record_bytes - dead_letters.REPLY_HEADROOM_BYTES

    def records(self, inbound: Sequence[Inbound], outcomes: Sequence[Outcome]) -> list[OutRecord]:
        """The records answering each inbound record with its outcome (one list, in order)."""
        now = now_iso()
        out: list[OutRecord] = []
        for item, outcome in zip(inbound, outcomes, strict=True):
            try:
                out += self._answer(item, outcome, now)
            except Exception as exc:  # noqa: BLE001 - one answer's failure must not stop the rest
                reason = f"its answer could not be encoded: {exc!r}"
                out.append(self.dead_letters.of(item, reason))
        return out

    def _answer(self, item: Inbound, outcome: Outcome, now: str) -> list[OutRecord]:
        if isinstance(outcome, Task):
            return self.created(item, outcome, now)
        if isinstance(outcome, Changed):
            return self.changed(item, outcome, now)
        if isinstance(outcome, Rejection):
            return self.rejected(item, outcome, now)
        return [self.dead_letters.of(item, outcome.reason)]

    def created(self, item: Inbound, task: Task, now: str) -> list[OutRecord]:
        """The task-created reply: to the created-events log, and to the request's reply topic."""
        payload = {
            "kind": "task.created",
            "task_id": task.task_id,
            "service_id": task.service_id,
            "location": self._location(task.service_id, task.task_id),
            "event": {"source": task.identity.source, "id": task.identity.id},
            "correlation_id": item.correlation_id,
            "task": task_json(task),
        }
        return self._reply(
            item, wire.TYPE_TASK_CREATED, payload, task.service_id, log=self._created, now=now
        )

    def changed(self, item: Inbound, changed: Changed, now: str) -> list[OutRecord]:
        """The task-completed or task-extension-updated reply (the whole task after the change),
        to the task events log and the request's reply topic."""
        task, change = changed
        payload: dict[str, Any] = {
            "kind": "task.completed",
            "task_id": task.task_id,
            "service_id": task.service_id,
            "location": self._location(task.service_id, task.task_id),
            "event": {"source": change.identity.source, "id": change.identity.id},
            "correlation_id": item.correlation_id,
            "task": task_json(task),
        }
        reply_type = wire.TYPE_TASK_COMPLETED
        if change.kind is ChangeKind.EXTENSION:
            reply_type = wire.TYPE_TASK_EXTENSION_UPDATED
            payload["kind"] = "task.extension.updated"
            payload["extension"] = change.extension
            payload["value"] = orjson.Fragment(change.value_json or "null")
        return self._reply(item, reply_type, payload, task.service_id, log=self._created, now=now)

    def rejected(self, item: Inbound, rejection: Rejection, now: str) -> list[OutRecord]:
        """The task-rejected reply: to the rejections topic, and to the request's reply topic."""
        payload = {
            "kind": "task.rejected",
            "service_id": rejection.service_id,
            "status": rejection.status,
            "code": ErrorCode(rejection.code).value,
            "task_id": rejection.task_id,
            "event": {"source": rejection.identity.source, "id": rejection.identity.id},
            "correlation_id": item.correlation_id,
            "error": rejection.body,
        }
        return self._reply(
            item, wire.TYPE_TASK_REJECTED, payload, rejection.service_id, log=self._rejected,
            now=now,
        )  # fmt: skip

    def _reply(
        self,
        item: Inbound,
        reply_type: str,
        payload: dict[str, Any],
        service_id: int | None,
        *,
        log: str,
        now: str,
    ) -> list[OutRecord]:
        event = payload["event"]
        key, value, headers = wire.encode_reply(
            reply_type=reply_type,
            payload=payload,
            service_id=service_id,
            request_source=event["source"],
            request_id=event["id"],
            correlation_id=item.correlation_id,
            time=now,
            echo=item.echo,
        )
        if len(value) > self._largest_value:  # the broker would refuse it: say so instead
            reason = (
                f"its {payload['kind']} reply of {len(value)} bytes would exceed the"
                f" {self._largest_value}-byte record limit: not sent (what was stored stands)"
            )
            return [self.dead_letters.of(item, reason)]
        records = [OutRecord(log, key, value, headers, REPLY, item)]
        if item.reply_to is not None and item.reply_to != log:
            records.append(OutRecord(item.reply_to, key, value, headers, COPY, item))
        return records

    def instead_of(self, refused: Undelivered) -> OutRecord | None:
        """What to publish in place of a record the broker refused for good; None when even a
        dead letter without key or value was refused (the dead-letter topic refuses writes)."""
        return self.dead_letters.instead_of(refused)
