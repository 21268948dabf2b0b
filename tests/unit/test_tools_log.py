"""Records already in Kafka as requests: the task events log's three kinds of record become the
request each answers (export, replay), requests keep every attribute, and rebuild keeps the
last state of each task."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from producer_tools.tools._events import HEADERS_ATTRIBUTE, InvalidInputError, LinePreparer
from producer_tools.tools._log import export_event, log_entry, replay_record, request_from_log
from producer_tools.tools._tasklog import TaskLog
from schemas import wire
from schemas.limits import DEFAULT_LIMITS
from schemas.replies import (
    EventRef,
    StoredTask,
    TaskCompleted,
    TaskCreated,
    TaskExtensionUpdated,
    TaskReply,
)
from schemas.tenants import Tenancy
from schemas.validation import EventKind

START = EventRef(source="urn:crm", id="start-1")
END = EventRef(source="urn:crm", id="end-1")
UPDATE = EventRef(source="urn:crm", id="ext-1")
END_EVENT = {"disposition": 7, "timestamp": "2026-01-31T12:05:00.373Z", "Survey": {"q": 9}}


def task(**changes: Any) -> StoredTask:
    fields: dict[str, Any] = {
        "task_id": 12,
        "service_id": 5,
        "state_id": 24,
        "task_type": "customer info",
        "timestamp": "2026-01-31T12:00:00.123Z",
        "attached_data": {"Survey": {"q": 1}, "note": "é"},
        "event": START,
        "received_at": "2026-01-31T12:00:00.200Z",
        "source_topic": "ucs.tasks.start",
        "source_partition": 1,
        "source_offset": 77,
        "tenant": "acme",
        "group": "sales",
    }
    return StoredTask.model_validate(fields | changes)


COMPLETED = task(
    completed=END_EVENT,
    duration=300_250,
    disposition=7,
    completed_event=END,
    updated_at="2026-01-31T12:05:01.000Z",
)
UPDATED = task(
    attached_data={"Survey": {"q": 1}, "note": "é", "Proposal": [{"seats": 2}]},
    updated_at="2026-01-31T12:06:00.000Z",
)


def record(reply: TaskReply) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """The log record the consumer writes for `reply` (the wire's reply encoder)."""
    reply_type = {
        "task.created": wire.TYPE_TASK_CREATED,
        "task.completed": wire.TYPE_TASK_COMPLETED,
        "task.extension.updated": wire.TYPE_TASK_EXTENSION_UPDATED,
    }[reply.kind]
    return wire.encode_reply(
        reply_type=reply_type,
        payload=reply.model_dump(mode="json"),
        service_id=reply.service_id,
        request_source=reply.event.source,
        request_id=reply.event.id,
        correlation_id=None,
        time="2026-01-31T12:06:00.001Z",
    )


def reply_of(kind: type[TaskReply], stored: StoredTask, event: EventRef, **more: Any) -> Any:
    return kind(
        task_id=stored.task_id,
        service_id=stored.service_id,
        location="http://x/service/5/tasks/12",
        event=event,
        task=stored,
        **more,
    )


CREATED_RECORD = record(reply_of(TaskCreated, task(), START))
COMPLETED_RECORD = record(reply_of(TaskCompleted, COMPLETED, END))
UPDATED_RECORD = record(
    reply_of(TaskExtensionUpdated, UPDATED, UPDATE, extension="Proposal", value=[{"seats": 2}])
)


def test_a_completed_record_becomes_the_end_request_it_answers() -> None:
    _, value, headers = COMPLETED_RECORD
    entry = log_entry(value, headers)
    assert (entry.kind, entry.event, entry.task) == (EventKind.END, ("urn:crm", "end-1"), COMPLETED)
    request = request_from_log(entry)
    assert request == {
        "specversion": "1.0",
        "id": "end-1",
        "source": "urn:crm",
        "type": wire.TYPE_TASK_END,
        "datacontenttype": "application/json",
        "serviceid": "5",
        "taskid": "12",
        "tenantid": "acme",
        "data": END_EVENT,
    }
    assert list(request["data"]) == list(END_EVENT)  # the stored order


def test_an_extension_updated_record_becomes_the_update_it_answers() -> None:
    _, value, headers = UPDATED_RECORD
    request = export_event(value, headers)
    assert (request["type"], request["id"], request["taskid"], request["extension"]) == (
        wire.TYPE_TASK_EXTENSION,
        "ext-1",
        "12",
        "Proposal",
    )
    assert (request["data"], request["tenantid"]) == ([{"seats": 2}], "acme")
    assert "groupid" not in request  # a change records no group


def test_a_created_record_becomes_its_start_with_tenant_and_group() -> None:
    _, value, headers = CREATED_RECORD
    request = export_event(value, headers)
    assert (request["type"], request["id"], request["tenantid"], request["groupid"]) == (
        wire.TYPE_TASK_START,
        "start-1",
        "acme",
        "sales",
    )
    assert request["data"] == {
        "state_id": 24,
        "task_type": "customer info",
        "timestamp": "2026-01-31T12:00:00.123Z",
        "Survey": {"q": 1},
        "note": "é",
    }
    assert "taskid" not in request


def test_a_log_record_whose_task_lacks_part_of_its_completion_is_refused() -> None:
    broken = task(completed=END_EVENT, completed_event=END)  # no duration
    _, value, headers = record(reply_of(TaskCompleted, broken, END))
    with pytest.raises(InvalidInputError, match="without its duration"):
        log_entry(value, headers)
    _, value, headers = record(reply_of(TaskCompleted, task(), END))
    with pytest.raises(InvalidInputError, match="not completed"):
        log_entry(value, headers)


def test_replaying_log_records_validates_and_publishes_structured_requests() -> None:
    for key, value, headers in (CREATED_RECORD, COMPLETED_RECORD, UPDATED_RECORD):
        prepared = replay_record(key, value, headers, DEFAULT_LIMITS)
        assert prepared.key == b"5"
        envelope = wire.decode_request(prepared.value, prepared.headers)
        assert envelope.structured
        assert (envelope.tenant, prepared.service_id) == ("acme", 5)
    with pytest.raises(InvalidInputError, match="not configured"):
        replay_record(*COMPLETED_RECORD, DEFAULT_LIMITS, tenancy=Tenancy.parse("globex"))


def binary_end() -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    key, value, headers = wire.encode_request_binary(
        service_id=5,
        body=b'{ "disposition": "resolved" }',
        event_id="e-9",
        source="urn:crm",
        correlation_id="c-1",
        reply_to="my.replies",
        event_type=wire.TYPE_TASK_END,
        task_id=12,
        tenant="acme",
        group="sales",
    )
    return key, value, [*headers, ("x-trace", b"\xff")]


def test_a_request_replays_byte_for_byte_unless_its_reply_topic_is_dropped() -> None:
    key, value, headers = binary_end()
    same = replay_record(key, value, headers, DEFAULT_LIMITS)
    assert (same.key, same.value, list(same.headers), same.kind) == (
        key,
        value,
        headers,
        EventKind.END,
    )
    dropped = replay_record(key, value, headers, DEFAULT_LIMITS, drop_reply_to=True)
    assert [name for name, _ in headers if name not in {n for n, _ in dropped.headers}] == [
        "ce_replyto"
    ]


def test_an_exported_request_keeps_every_attribute_and_produces_the_same_request() -> None:
    key, value, headers = binary_end()
    exported = export_event(value, headers)
    assert {name: exported[name] for name in ("type", "taskid", "tenantid", "groupid")} == {
        "type": wire.TYPE_TASK_END,
        "taskid": "12",
        "tenantid": "acme",
        "groupid": "sales",
    }
    assert (exported["correlationid"], exported["replyto"]) == ("c-1", "my.replies")
    assert orjson.loads(exported[HEADERS_ATTRIBUTE]) == [["x-trace", {"base64": "/w=="}]]
    again = LinePreparer(DEFAULT_LIMITS).prepare(orjson.dumps(exported))
    assert (again.identity, again.key, again.kind) == (("urn:crm", "e-9"), key, EventKind.END)
    assert ("x-trace", b"\xff") in again.headers
    original, copy = wire.decode_request(value, headers), wire.decode_request(again.value, [])
    for name in ("id", "source", "type", "task_id", "tenant", "group", "correlation_id"):
        assert getattr(copy, name) == getattr(original, name), name
    assert copy.data == orjson.loads(original.data)


def test_the_task_log_keeps_the_latest_state_of_each_task() -> None:
    log = TaskLog()
    assert log.offer(task()) == ("new", [])
    assert log.offer(UPDATED) == ("update", [])
    assert log.offer(COMPLETED) == ("older", [])  # published later, changed earlier
    assert log.offer(UPDATED) == ("update", [])  # the same state again: the later copy
    assert log.offer(task()) == ("older", [])  # a snapshot from before any change
    assert log.holds(12, ("urn:crm", "start-1"))


def test_the_task_log_keeps_the_latest_task_for_each_id_and_identity() -> None:
    def stored(task_id: int, source: str, received_at: str) -> StoredTask:
        return task(task_id=task_id, event=EventRef(source=source, id="e"), received_at=received_at)

    log = TaskLog()
    assert log.offer(stored(1, "a", "2026-01-01T00:00:00.000Z")) == ("new", [])
    assert log.offer(stored(1, "a", "2026-01-01T00:00:09.000Z")) == ("update", [])
    # The database was reset: id 1 went to another event, and event "a" came back as id 7.
    assert log.offer(stored(1, "b", "2026-02-01T00:00:00.000Z")) == ("new", [1])
    assert log.offer(stored(7, "a", "2026-02-01T00:00:01.000Z")) == ("new", [])
    assert log.offer(stored(1, "a", "2026-01-01T00:00:00.000Z")) == ("stale", [])
    assert {i: held.identity for i, held in log.by_id.items()} == {1: ("b", "e"), 7: ("a", "e")}
    assert not log.holds(1, ("a", "e"))
