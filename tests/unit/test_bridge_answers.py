"""Each reply as the HTTP answer to the request it answers, and a reply to another request under
the same Idempotency-Key as a 422 naming that request: no broker."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from producer_tools.bridge.answers import reply_response, status_location
from producer_tools.bridge.errors import IdempotencyKeyReusedError
from producer_tools.bridge.messages import CompletedReply, CreatedReply, ExtensionReply, Reply
from schemas.replies import ErrorBody, ErrorCode, EventRef, TaskRejected
from schemas.requests import TaskRequest
from schemas.validation import EventKind

KEY = "order-7"
EVENT = EventRef(source="urn:ucs-tasks:bridge", id=KEY)
LOCATION = "http://x/genesys/1/cs/service/5/tasks/42"
START = TaskRequest(EventKind.START, 5, b"{}")
END = TaskRequest(EventKind.END, 5, b"{}", task_id=42)
UPDATE = TaskRequest(EventKind.EXTENSION, 5, b"{}", task_id=42, extension="Proposal")


def created(task_id: int = 42, service_id: int = 5) -> CreatedReply:
    return CreatedReply(task_id=task_id, service_id=service_id, location=LOCATION, event=EVENT)


def completed(task_id: int = 42, service_id: int = 5) -> CompletedReply:
    return CompletedReply(task_id=task_id, service_id=service_id, location=LOCATION, event=EVENT)


def updated(task_id: int = 42, extension: str = "Proposal", value: Any = None) -> ExtensionReply:
    return ExtensionReply(
        task_id=task_id,
        service_id=5,
        location=LOCATION,
        event=EVENT,
        extension=extension,
        value=[{"seats": 2, "car type": "S.U.V."}] if value is None else value,
    )


def rejected(status: int, code: ErrorCode, task_id: int | None = None) -> TaskRejected:
    error = ErrorBody(message=f"refused: {code}")
    return TaskRejected(
        service_id=5, task_id=task_id, status=status, code=code, event=EVENT, error=error
    )


def test_a_created_task_answers_a_start_with_201_its_location_and_only_its_id() -> None:
    response = reply_response(KEY, START, created())
    assert (response.status_code, response.body) == (201, b'{"task_id":42}')
    assert response.headers["location"] == LOCATION


def test_a_completed_task_answers_an_end_with_204_and_no_body() -> None:
    response = reply_response(KEY, END, completed())
    assert (response.status_code, response.body) == (204, b"")
    assert "content-type" not in response.headers


def test_an_updated_extension_answers_with_200_and_its_value_verbatim() -> None:
    response = reply_response(KEY, UPDATE, updated())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.body == b'[{"seats":2,"car type":"S.U.V."}]'


@pytest.mark.parametrize(
    ("request_", "reply", "status"),
    [
        pytest.param(END, rejected(404, ErrorCode.TASK_NOT_FOUND, 42), 404, id="unknown task"),
        pytest.param(END, rejected(409, ErrorCode.TASK_COMPLETED, 42), 409, id="completed"),
        pytest.param(END, rejected(400, ErrorCode.END_BEFORE_START, 42), 400, id="early end"),
        pytest.param(UPDATE, rejected(404, ErrorCode.TASK_NOT_FOUND, 42), 404, id="no task"),
        pytest.param(START, rejected(413, ErrorCode.TOO_LARGE), 413, id="start too large"),
        pytest.param(END, rejected(400, ErrorCode.INVALID_TENANT), 400, id="bad tenant"),
    ],
)
def test_a_rejection_answers_with_its_status_and_error_body(
    request_: TaskRequest, reply: TaskRejected, status: int
) -> None:
    response = reply_response(KEY, request_, reply)
    assert response.status_code == status
    assert orjson.loads(response.body) == reply.error.model_dump()


@pytest.mark.parametrize(
    ("request_", "reply", "says"),
    [
        pytest.param(START, completed(), "completing task 42", id="start, key of an end"),
        pytest.param(START, updated(), "updating extension 'Proposal' of task 42", id="start"),
        pytest.param(START, rejected(404, ErrorCode.TASK_NOT_FOUND, 9), "task 9", id="start/9"),
        pytest.param(END, created(), "a Start Task request", id="end, key of a start"),
        pytest.param(END, completed(task_id=43), "completing task 43", id="end, another task"),
        pytest.param(END, updated(), "updating extension", id="end, key of an update"),
        pytest.param(END, rejected(404, ErrorCode.TASK_NOT_FOUND, 9), "task 9", id="end/9"),
        pytest.param(UPDATE, created(), "a Start Task request", id="update, key of a start"),
        pytest.param(UPDATE, completed(), "completing task 42", id="update, key of an end"),
        pytest.param(UPDATE, updated(task_id=41), "of task 41", id="update, another task"),
        pytest.param(UPDATE, updated(extension="Survey"), "'Survey'", id="another extension"),
    ],
)
def test_a_reply_to_another_request_under_the_same_key_is_a_422_naming_it(
    request_: TaskRequest, reply: Reply, says: str
) -> None:
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        reply_response(KEY, request_, reply)
    assert caught.value.status == 422
    assert KEY in caught.value.message
    assert says in caught.value.message
    assert [e.field for e in caught.value.errors] == ["Idempotency-Key"]


@pytest.mark.parametrize("request_", [START, END, UPDATE], ids=["start", "end", "update"])
def test_a_reply_about_another_service_is_a_422_naming_that_service(request_: TaskRequest) -> None:
    with pytest.raises(IdempotencyKeyReusedError, match="service 6, not 5"):
        reply_response(KEY, request_, created(service_id=6))


def test_the_status_location_percent_encodes_the_event_id() -> None:
    assert status_location("http://x/genesys/1/cs", 5, "a/b c?") == (
        "http://x/genesys/1/cs/services/5/tasks/requests/a%2Fb%20c%3F"
    )
