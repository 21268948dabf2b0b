"""The Task representation of a completed task: `completed`, `duration`, `disposition` and
`disposition_desc` placed as the field table says, key order kept; no I/O."""

from __future__ import annotations

from typing import Any

import orjson

from producer_tools.bridge.representation import Extensions, render_task, render_tasks
from schemas.replies import StoredTask

END_EVENT = {
    "state_id": 25,
    "session_id": "s-9",
    "media_type": "email",
    "disposition": "resolved",
    "disposition_desc": "customer satisfied",
    "timestamp": "2010-05-20T15:49:32.120Z",
    "Survey": {"z": 1, "a": 2},
}


def _task(**changes: Any) -> StoredTask:
    fields: dict[str, Any] = {
        "task_id": 7,
        "service_id": 21456878,
        "state_id": 24,
        "task_type": "customer info",
        "est_duration": 460,
        "interaction_id": "42",
        "timestamp": "2010-05-20T15:41:52.380Z",
        "attached_data": {"Proposal": [{"seats": 2}], "Survey": {"q": 7}},
        "event": {"source": "urn:test", "id": "e1"},
        "received_at": "2010-05-20T15:41:53.000Z",
        "source_topic": "t",
        "source_partition": 0,
        "source_offset": 0,
    }
    return StoredTask.model_validate(fields | changes)


COMPLETED = _task(
    completed=END_EVENT,
    duration=459_740,
    disposition="resolved",
    disposition_desc="customer satisfied",
    completed_event={"source": "urn:test", "id": "e2"},
    tenant="acme",
    group="sales",
)


def test_a_completed_task_shows_its_end_event_duration_and_disposition() -> None:
    document = orjson.loads(render_task(COMPLETED))
    assert list(document) == [
        "task_id", "service_id", "state_id", "task_type", "est_duration", "started",
        "completed", "duration", "disposition", "disposition_desc",
    ]  # fmt: skip
    assert document["completed"] == {
        "timestamp": "2010-05-20T15:49:32.120Z",
        "state_id": 25,  # the end's own: the top level keeps the start's 24
        "session_id": "s-9",
        "media_type": "email",
        "Survey": {"z": 1, "a": 2},
    }
    assert list(document["completed"]) == [
        "timestamp", "state_id", "session_id", "media_type", "Survey",
    ]  # fmt: skip
    assert list(document["completed"]["Survey"]) == ["z", "a"]
    assert (document["state_id"], document["duration"]) == (24, 459_740)
    assert (document["disposition"], document["disposition_desc"]) == (
        "resolved",
        "customer satisfied",
    )
    assert "tenant" not in document
    assert "group" not in document


def test_an_active_task_has_no_completion_keys() -> None:
    document = orjson.loads(render_task(_task()))
    assert not {"completed", "duration", "disposition", "disposition_desc"} & set(document)


def test_a_completion_without_disposition_omits_it() -> None:
    end = {"timestamp": "2010-05-20T15:49:32.120Z"}
    document = orjson.loads(render_task(_task(completed=end, duration=0)))
    assert document["completed"] == end
    assert document["duration"] == 0
    assert "disposition" not in document


def test_extensions_come_after_the_completion_as_asked() -> None:
    document = orjson.loads(render_task(COMPLETED, Extensions.parse(["*"])))
    assert list(document)[-3:] == ["disposition_desc", "Proposal", "Survey"]
    assert document["Survey"] == {"q": 7}  # the task's, not the end event's


def test_a_query_answer_is_an_array_of_task_documents_in_the_given_order() -> None:
    tasks = [_task(task_id=3), COMPLETED, _task(task_id=9)]
    body = orjson.loads(render_tasks(tasks, Extensions.parse(["Proposal"])))
    assert [task["task_id"] for task in body] == [3, 7, 9]
    assert all(task["Proposal"] == [{"seats": 2}] for task in body)
    assert orjson.loads(render_tasks([])) == []
