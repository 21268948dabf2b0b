"""What the bridge publishes (records of every kind, read back by the consumer's own decoder),
the identities it gives them, and the replies it reads: no broker."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
import pytest

from producer_tools.bridge.errors import BadReplyError
from producer_tools.bridge.messages import (
    BRIDGE_SOURCE,
    CompletedReply,
    CreatedReply,
    ExtensionReply,
    PendingRequests,
    check_tenant_sources,
    decode_reply,
    dispatch_reply,
    identity_for,
    random_id,
    source_for,
)
from schemas import wire
from schemas.replies import EventRef, TaskRejected
from schemas.requests import TaskRequest
from schemas.tenants import Tenancy
from schemas.validation import EventKind

IDENTITY = EventRef(source=BRIDGE_SOURCE, id="order-7")
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def _decoded(request: TaskRequest) -> wire.Envelope:
    key, value, headers = request.record(
        event_id=IDENTITY.id,
        source=IDENTITY.source,
        reply_to="replies",
        correlation_id="c-1",
        trace=TRACE,
    )
    assert key == str(request.service_id).encode()
    assert value is request.body  # published untouched
    assert ("traceparent", TRACE["traceparent"].encode()) in headers
    return wire.decode_request(value, headers)


def test_a_start_request_is_a_start_event_without_task_or_extension() -> None:
    envelope = _decoded(TaskRequest(EventKind.START, 21456878, b'{"state_id": 1}'))
    assert envelope.type == wire.TYPE_TASK_START
    assert (envelope.id, envelope.source) == ("order-7", BRIDGE_SOURCE)
    assert (envelope.service_id, envelope.reply_to, envelope.correlation_id) == (
        "21456878",
        "replies",
        "c-1",
    )
    assert (envelope.task_id, envelope.extension, envelope.tenant, envelope.group) == (
        None,
        None,
        None,
        None,
    )


def test_an_end_request_names_its_task_tenant_and_group() -> None:
    request = TaskRequest(EventKind.END, 5, b"{}", task_id=42, tenant="acme", group="sales")
    envelope = _decoded(request)
    assert envelope.type == wire.TYPE_TASK_END
    assert (envelope.task_id, envelope.tenant, envelope.group) == ("42", "acme", "sales")
    assert envelope.extension is None


def test_an_extension_request_names_its_task_and_extension() -> None:
    request = TaskRequest(EventKind.EXTENSION, 5, b'[{"a": 1}]', task_id=42, extension="Proposal")
    envelope = _decoded(request)
    assert envelope.type == wire.TYPE_TASK_EXTENSION
    assert (envelope.task_id, envelope.extension) == ("42", "Proposal")


def test_identities_are_the_key_under_the_tenant_s_own_source() -> None:
    assert identity_for("k") == EventRef(source=BRIDGE_SOURCE, id="k")
    assert identity_for("k", "acme") == EventRef(source=BRIDGE_SOURCE + ":tenant:acme", id="k")
    assert identity_for("k", "a b/c") == identity_for("k", "a b/c")
    assert len({source_for(t) for t in (None, "acme", "globex", "a:b", "a%3Ab")}) == 5
    fresh = identity_for(None, "acme")
    assert fresh.source == source_for("acme")
    assert len(fresh.id) == 32
    assert fresh != identity_for(None, "acme")


def test_fresh_ids_are_version_4_uuids_in_uuid4_hex_form() -> None:
    ids = {random_id() for _ in range(2000)}
    assert len(ids) == 2000
    for each in ids:
        parsed = uuid.UUID(hex=each)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, each)
    assert {each[12] for each in ids} == {"4"}
    assert {each[16] for each in ids} == set("89ab")
    assert len({each[0] for each in ids}) == 16  # the random digits take every value


def test_a_tenant_too_long_for_an_event_source_is_refused_at_start() -> None:
    check_tenant_sources(Tenancy.parse("acme," + "t" * 200))
    with pytest.raises(ValueError, match="UCS_TENANTS"):
        check_tenant_sources(Tenancy.parse("acme," + "t" * 240))


def _reply(reply_type: str, body: dict[str, Any]) -> tuple[list[tuple[str, bytes]], bytes]:
    _, value, headers = wire.encode_reply(
        reply_type=reply_type,
        payload=body,
        service_id=5,
        request_source=IDENTITY.source,
        request_id=IDENTITY.id,
        correlation_id="c-1",
        time="2026-01-01T00:00:00.000Z",
    )
    return headers, value


TASK_REPLY = {
    "task_id": 42,
    "service_id": 5,
    "location": "http://x/service/5/tasks/42",
    "event": IDENTITY.model_dump(),
    "task": {"whatever": "is not read"},
}


def test_every_reply_type_decodes_to_its_model() -> None:
    created = decode_reply(*_reply(wire.TYPE_TASK_CREATED, TASK_REPLY | {"kind": "task.created"}))
    assert isinstance(created, CreatedReply)
    completed = decode_reply(
        *_reply(wire.TYPE_TASK_COMPLETED, TASK_REPLY | {"kind": "task.completed"})
    )
    assert isinstance(completed, CompletedReply)
    assert (completed.task_id, completed.event) == (42, IDENTITY)
    value = [{"z": 1, "a": {"y": None, "b": 2}}]
    updated = decode_reply(
        *_reply(
            wire.TYPE_TASK_EXTENSION_UPDATED,
            TASK_REPLY | {"kind": "task.extension.updated", "extension": "P", "value": value},
        )
    )
    assert isinstance(updated, ExtensionReply)
    assert updated.extension == "P"
    assert orjson.dumps(updated.value) == orjson.dumps(value)  # key order kept
    rejected = decode_reply(
        *_reply(
            wire.TYPE_TASK_REJECTED,
            {
                "service_id": 5,
                "task_id": 42,
                "status": 409,
                "code": "task_completed",
                "event": IDENTITY.model_dump(),
                "error": {"message": "completed", "exception": "x", "errors": []},
            },
        )
    )
    assert isinstance(rejected, TaskRejected)
    assert (rejected.status, rejected.task_id) == (409, 42)


@pytest.mark.parametrize(
    ("reply_type", "body"),
    [
        pytest.param("com.example.other", TASK_REPLY, id="an unknown type"),
        pytest.param(wire.TYPE_TASK_COMPLETED, {"task_id": "x"}, id="a broken completion"),
        pytest.param(
            wire.TYPE_TASK_EXTENSION_UPDATED,
            TASK_REPLY | {"extension": "P", "value": 7},
            id="an extension value that is no object",
        ),
        pytest.param(
            wire.TYPE_TASK_COMPLETED,
            TASK_REPLY | {"kind": "task.created"},
            id="a kind that contradicts the type",
        ),
    ],
)
def test_a_reply_the_bridge_cannot_read_is_a_bad_reply(
    reply_type: str, body: dict[str, Any]
) -> None:
    with pytest.raises(BadReplyError):
        decode_reply(*_reply(reply_type, body))


def _with_correlation(
    headers: list[tuple[str, bytes]], correlation_id: str
) -> list[tuple[str, bytes]]:
    return [(n, v) for n, v in headers if n != "ce_correlationid"] + [
        ("ce_correlationid", correlation_id.encode())
    ]


async def test_a_reply_resolves_only_the_request_waiting_for_its_identity() -> None:
    pending = PendingRequests()
    headers, value = _reply(wire.TYPE_TASK_COMPLETED, TASK_REPLY | {"kind": "task.completed"})
    other = EventRef(source=BRIDGE_SOURCE, id="another")
    with pending.expecting("c-1", other) as waiting:
        assert not dispatch_reply(pending, headers, value)  # answers order-7, not another
        assert not waiting.done()
    with pending.expecting("c-1", IDENTITY) as waiting:
        assert not dispatch_reply(pending, _with_correlation(headers, "c-2"), value)  # foreign
        assert dispatch_reply(pending, headers, value)
        assert isinstance(waiting.result(), CompletedReply)
    assert not dispatch_reply(pending, headers, value)  # late: nobody waits any more


async def test_a_reply_to_another_event_is_logged_as_one_and_a_late_own_reply_is_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A reply that comes as its own request stops waiting (the reply timeout cancelled the
    future in this turn of the loop, before the request left the registry) is late, not a reply
    to another event: dropped without the warning that names a mismatch."""
    pending = PendingRequests()
    readable = _reply(wire.TYPE_TASK_COMPLETED, TASK_REPLY | {"kind": "task.completed"})
    unreadable = _reply(wire.TYPE_TASK_COMPLETED, {"event": IDENTITY.model_dump()})
    caplog.set_level(logging.DEBUG, logger="producer_tools.bridge.messages")
    for headers, value in (readable, unreadable):
        caplog.clear()
        with pending.expecting("c-1", IDENTITY) as waiting:
            waiting.cancel()  # timed out; the request leaves the registry at its next turn
            assert not dispatch_reply(pending, headers, value)
            assert "c-1" not in pending
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("stopped waiting" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with pending.expecting("c-1", EventRef(source=BRIDGE_SOURCE, id="another")):
            assert not dispatch_reply(pending, headers, value)
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert "'another'" in warning.getMessage()


async def test_an_unreadable_reply_fails_its_own_request_and_is_dropped_for_another() -> None:
    pending = PendingRequests()
    headers, value = _reply(wire.TYPE_TASK_COMPLETED, {"event": IDENTITY.model_dump()})
    with pending.expecting("c-1", EventRef(source=BRIDGE_SOURCE, id="another")) as waiting:
        assert not dispatch_reply(pending, headers, value)
        assert not waiting.done()
    with pending.expecting("c-1", IDENTITY) as waiting:
        assert dispatch_reply(pending, headers, value)
        with pytest.raises(BadReplyError):
            waiting.result()
