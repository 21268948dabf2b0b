"""What the bridge publishes and what it reads back: the identities of requests, the replies.

No Kafka client here (`kafka` sends and listens; this module only reads records; a request's
record is `schemas.requests.TaskRequest.record`), so the identities and the reading of every
reply are unit-tested without a broker.

Identity: (source, event id). The event id is the `Idempotency-Key` when the caller sent one, so
every bridge instance maps the same key to the same identity and the consumer answers a retry
with what it stored for it; a fresh uuid4 otherwise. The source is `BRIDGE_SOURCE` in
single-tenant mode and one per tenant in multi-tenant mode (`source_for`): a tenant's keys are
its own, and no key of one tenant can answer with, or even find, another tenant's request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import orjson
from pydantic import BaseModel, ValidationError

from producer_tools.bridge.errors import BadReplyError
from producer_tools.bridge.pending import PendingReplies
from schemas import wire
from schemas.replies import EventRef, TaskRejected
from schemas.tenants import Tenancy

log = logging.getLogger(__name__)

BRIDGE_SOURCE = "urn:ucs-tasks:bridge"
"""The CloudEvents source of every event the bridge publishes in single-tenant mode."""
TENANT_SOURCE_PREFIX = BRIDGE_SOURCE + ":tenant:"
"""Followed by the percent-encoded tenant: the source of a tenant's events."""
UNREADABLE_REPLY = "The task service sent a reply the bridge cannot read."


def source_for(tenant: str | None) -> str:
    """The source of the events the bridge publishes for a caller of this tenant (None: none)."""
    return BRIDGE_SOURCE if tenant is None else TENANT_SOURCE_PREFIX + quote(tenant, safe="")


def check_tenant_sources(tenancy: Tenancy) -> None:
    """Raise ValueError naming a configured tenant whose source would be too long for an event
    (the consumer refuses sources over `wire.MAX_ID_LENGTH` characters)."""
    for tenant in sorted(tenancy.tenants):
        if len(source_for(tenant)) > wire.MAX_ID_LENGTH:
            raise ValueError(
                f"UCS_TENANTS: the tenant {tenant[:40]!r}... is too long: its events' source "
                f"({TENANT_SOURCE_PREFIX}<tenant, percent-encoded>) must be at most "
                f"{wire.MAX_ID_LENGTH} characters."
            )


def identity_for(idempotency_key: str | None, tenant: str | None = None) -> EventRef:
    """The event identity of a request: its key (else a fresh uuid4) under the tenant's source."""
    return EventRef(source=source_for(tenant), id=idempotency_key or random_id())


def random_id() -> str:
    """A random (version 4) UUID's 32 hex digits, as `uuid.uuid4().hex` (a third of its cost)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


# --- replies: only what the answer needs. The whole task every reply also carries is skipped,
# not validated: reading it doubled the CPU time of decoding a reply.


class CreatedReply(BaseModel):
    """A task-created reply (`schemas.replies.TaskCreated`): a start's task exists."""

    kind: Literal["task.created"] = "task.created"
    task_id: int
    service_id: int
    location: str
    event: EventRef


class CompletedReply(BaseModel):
    """A task-completed reply (`schemas.replies.TaskCompleted`): the task is completed."""

    kind: Literal["task.completed"] = "task.completed"
    task_id: int
    service_id: int
    location: str
    event: EventRef


class ExtensionReply(BaseModel):
    """A task-extension-updated reply (`schemas.replies.TaskExtensionUpdated`)."""

    kind: Literal["task.extension.updated"] = "task.extension.updated"
    task_id: int
    service_id: int
    location: str
    event: EventRef
    extension: str
    value: dict[str, Any] | list[dict[str, Any]]


Reply = CreatedReply | CompletedReply | ExtensionReply | TaskRejected
"""Every reply the bridge reads."""
PendingRequests = PendingReplies[Reply, EventRef]
"""Requests waiting for a reply, each expecting one that answers its event's identity."""

_MODELS: Mapping[str | None, type[Reply]] = {
    wire.TYPE_TASK_CREATED: CreatedReply,
    wire.TYPE_TASK_COMPLETED: CompletedReply,
    wire.TYPE_TASK_EXTENSION_UPDATED: ExtensionReply,
    wire.TYPE_TASK_REJECTED: TaskRejected,
}


def decode_reply(headers: wire.Headers, value: bytes | None) -> Reply:
    """The reply a record holds, or BadReplyError (its cause says what is wrong)."""
    kind = wire.reply_type(headers)
    model = _MODELS.get(kind)
    if model is None:
        raise BadReplyError(UNREADABLE_REPLY) from ValueError(f"unknown reply type {kind!r}")
    try:
        return model.model_validate_json(value or b"")
    except ValidationError as exc:
        raise BadReplyError(UNREADABLE_REPLY) from exc


def answered_event(value: bytes | None) -> EventRef | None:
    """The identity a reply says it answers, read leniently (for replies that are not valid)."""
    try:
        return EventRef.model_validate(orjson.loads(value or b"")["event"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
        return None


def dispatch_reply(pending: PendingRequests, headers: wire.Headers, value: bytes | None) -> bool:
    """Resolve the request a reply record answers: the one waiting under its correlation id, if
    the reply answers that request's event (source and id); else drop it (False).

    An unreadable reply that answers the waiting request fails it (a 502); one that answers
    another event, or names none, is dropped and the request goes on waiting for its own.
    """
    correlation_id = wire.reply_correlation(headers)
    expected = pending.identity_of(correlation_id)
    if correlation_id is None or expected is None:
        log.debug("reply %s: nobody waits for it (late or foreign), dropped", correlation_id)
        return False
    try:
        reply = decode_reply(headers, value)
    except BadReplyError as exc:
        answers = answered_event(value)
        if pending.fail(correlation_id, exc, answers):
            log.exception(
                "unreadable reply to %s (correlation id %s): %s: %r",
                _event(expected),
                correlation_id,
                exc.__cause__,
                (value or b"")[:200],
            )
            return True
        return _dropped("an unreadable reply", correlation_id, answers, expected)
    if pending.resolve(correlation_id, reply, reply.event):
        return True
    return _dropped("a reply", correlation_id, reply.event, expected)


def _dropped(what: str, correlation_id: str, answers: EventRef | None, expected: EventRef) -> bool:
    """Log a reply no waiting request took; False. One that answers the expected event came as
    its request stopped waiting (the reply timeout, or the client gone, ended the wait in this
    very turn of the loop, before the request left the registry): late, like one that finds
    nobody waiting. One that answers another event is a mismatch, worth a warning."""
    if answers == expected:
        log.debug("reply %s: its request stopped waiting as it came, dropped", correlation_id)
    else:
        log.warning(
            "%s with correlation id %s answers %s, not %s: dropped",
            what,
            correlation_id,
            "no event" if answers is None else _event(answers),
            _event(expected),
        )
    return False


def _event(identity: EventRef) -> str:
    return f"event {identity.id!r} of {identity.source!r}"
