"""Reply models, error codes and reply types of the task lifecycle (replies.py, wire/)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas import wire
from schemas.replies import (
    ErrorCode,
    EventRef,
    StoredTask,
    TaskCompleted,
    TaskCreated,
    TaskExtensionUpdated,
    TaskRejected,
)

# A created-log record as written before the lifecycle fields existed.
OLD_RECORD: dict[str, Any] = {
    "kind": "task.created",
    "task_id": 15928,
    "service_id": 21456878,
    "location": "http://127.0.0.1:8080/genesys/1/cs/service/21456878/tasks/15928",
    "event": {"source": "urn:crm:eu-1", "id": "a1b2"},
    "correlation_id": None,
    "task": {
        "task_id": 15928,
        "service_id": 21456878,
        "state_id": 24,
        "task_type": "customer info",
        "timestamp": "2026-11-25T17:41:52.380Z",
        "attached_data": {"Survey": {"question1": 7}},
        "event": {"source": "urn:crm:eu-1", "id": "a1b2"},
        "received_at": "2026-11-25T17:41:52.391Z",
        "source_topic": "ucs.tasks.start",
        "source_partition": 3,
        "source_offset": 1187,
    },
}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.MALFORMED_JSON, 400),
        (ErrorCode.NOT_AN_OBJECT, 400),
        (ErrorCode.INVALID_FIELD, 400),
        (ErrorCode.INVALID_SERVICE_ID, 400),
        (ErrorCode.TOO_LARGE, 413),
        (ErrorCode.UNSUPPORTED_MEDIA_TYPE, 415),
        (ErrorCode.ID_SPACE_EXHAUSTED, 507),
        (ErrorCode.TASK_NOT_FOUND, 404),
        (ErrorCode.TASK_COMPLETED, 409),
        (ErrorCode.END_BEFORE_START, 400),
        (ErrorCode.INVALID_TENANT, 400),
        (ErrorCode.INVALID_REPLY_TO, 400),
        (ErrorCode.INVALID_ATTRIBUTE, 400),
        (ErrorCode.UNPROCESSABLE_RECORD, 422),
    ],
)
def test_every_error_code_has_its_http_status(code: ErrorCode, status: int) -> None:
    assert code.http_status == status


def test_every_error_code_has_a_status() -> None:
    assert all(100 <= code.http_status < 600 for code in ErrorCode)


def test_a_created_log_record_written_before_the_lifecycle_still_parses_as_an_active_task() -> None:
    task = TaskCreated.model_validate(OLD_RECORD).task
    assert (task.tenant, task.group, task.completed, task.duration) == (None, None, None, None)
    assert (task.disposition, task.disposition_desc, task.completed_event) == (None, None, None)
    assert task.updated_at is None


def test_a_completed_task_round_trips_through_its_json() -> None:
    ref = EventRef(source="urn:crm:eu-1", id="end-1")
    task = StoredTask.model_validate(
        OLD_RECORD["task"]
        | {
            "tenant": "cc-1",
            "group": "sales",
            "completed": {"timestamp": "2026-11-25T17:49:32.120Z", "Survey": {"q": 9}},
            "duration": 459740,
            "disposition": 1001,
            "disposition_desc": "resolved",
            "completed_event": ref.model_dump(),
            "updated_at": "2026-11-25T17:49:32.130Z",
        }
    )
    completed = TaskCompleted(
        task_id=15928, service_id=21456878, location=OLD_RECORD["location"], event=ref, task=task
    )
    again = TaskCompleted.model_validate(orjson.loads(orjson.dumps(completed.model_dump())))
    assert again == completed
    assert again.kind == "task.completed"
    assert again.task.completed_event == ref


def test_an_extension_update_reply_carries_the_name_the_value_and_the_whole_task() -> None:
    reply = TaskExtensionUpdated.model_validate(
        {
            "task_id": 15928,
            "service_id": 21456878,
            "location": OLD_RECORD["location"],
            "event": {"source": "urn:crm:eu-1", "id": "ext-1"},
            "extension": "Proposal",
            "value": [{"car type": "cabriolet"}],
            "task": OLD_RECORD["task"],
        }
    )
    assert reply.kind == "task.extension.updated"
    assert (reply.extension, reply.value) == ("Proposal", [{"car type": "cabriolet"}])


def test_a_rejection_may_name_the_task_an_end_or_extension_event_was_for() -> None:
    rejection = TaskRejected(
        service_id=5,
        task_id=42,
        status=404,
        code=ErrorCode.TASK_NOT_FOUND,
        event=EventRef(source="s", id="i"),
        error={"message": "Not found"},
    )
    assert rejection.task_id == 42
    assert TaskRejected.model_validate({**rejection.model_dump(), "task_id": None}).task_id is None


def test_lifecycle_event_and_reply_types_follow_the_start_and_created_pattern() -> None:
    assert wire.TYPE_TASK_END == "com.genesys.ucs.task.end.v1"
    assert wire.TYPE_TASK_EXTENSION == "com.genesys.ucs.task.extension.v1"
    assert wire.TYPE_TASK_COMPLETED == "com.genesys.ucs.task.completed.v1"
    assert wire.TYPE_TASK_EXTENSION_UPDATED == "com.genesys.ucs.task.extension.updated.v1"
    prefix = wire.TYPE_TASK_CREATED.removesuffix("created.v1")
    assert wire.TYPE_TASK_START.startswith(prefix)
