"""The consumer's codec: records in -> commands, rejections or dead letters; outcomes -> replies."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from consumer.domain import EventIdentity, Position, Task
from consumer.kafka.codec import (
    Inbound,
    OutRecord,
    created_records,
    dead_letter_record,
    rejected_records,
    translate,
)
from schemas import wire
from schemas.replies import TaskCreated, TaskRejected
from schemas.task_start import Limits

LIMITS = Limits(max_body_bytes=4096, max_string_length=64)
POSITION = Position("requests", 2, 41)
BODY = b'{"state_id": 24, "task_type": "customer info", "Survey": {"question1": 7}}'
LOG = "created-log"
REJECTIONS = "rejections"
NOW = "2026-11-25T17:41:52.391Z"


def binary(
    body: bytes = BODY,
    service_id: int | str = 21456878,
    reply_to: str | None = None,
    correlation_id: str | None = "corr-1",
) -> Inbound:
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"urn:test"),
        ("ce_type", wire.TYPE_TASK_START.encode()),
        ("ce_serviceid", str(service_id).encode()),
        ("content-type", b"application/json"),
    ]
    if reply_to is not None:
        headers.append(("ce_replyto", reply_to.encode()))
    if correlation_id is not None:
        headers.append(("ce_correlationid", correlation_id.encode()))
    return translate(POSITION, str(service_id).encode(), body, headers, LIMITS)


def task_for(inbound: Inbound, task_id: int = 15928) -> Task:
    command = inbound.command
    assert command is not None
    fields = {"state_id": None, "task_type": None, **command.fields}
    fields.setdefault("timestamp", datetime(2026, 11, 25, 17, 41, 52, 380000, tzinfo=UTC))
    return Task(
        task_id=task_id,
        service_id=command.service_id,
        fields=fields,
        attached_data_json=orjson.dumps(command.attached_data).decode(),
        identity=command.identity,
        received_at=datetime(2026, 11, 25, 17, 41, 52, 391000, tzinfo=UTC),
        position=command.position,
    )


def headers_of(record: OutRecord) -> dict[str, bytes]:
    return dict(record.headers)


# --- translate ---------------------------------------------------------------------------------


def test_a_binary_record_becomes_a_command_with_identity_fields_attached_data_and_position() -> (
    None
):
    inbound = binary(reply_to="my-replies")
    assert (inbound.rejection, inbound.dead_letter) == (None, None)
    command = inbound.command
    assert command is not None
    assert command.identity == EventIdentity("urn:test", "evt-1")
    assert command.service_id == 21456878
    assert command.fields == {"state_id": 24, "task_type": "customer info"}
    assert command.attached_data == {"Survey": {"question1": 7}}
    assert command.position == POSITION
    assert (inbound.reply_to, inbound.correlation_id) == ("my-replies", "corr-1")


def test_a_structured_record_becomes_the_same_command_as_its_binary_twin() -> None:
    event = wire.structured_request(
        service_id=21456878,
        data=orjson.loads(BODY),
        event_id="evt-1",
        source="urn:test",
        correlation_id="corr-1",
    )
    key, value, headers = wire.encode_structured(event)
    structured = translate(POSITION, key, value, headers, LIMITS)
    assert structured.command == binary().command
    assert structured.correlation_id == "corr-1"


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b"\xff\x00not a cloud event", [("x-origin", b"\x01")]),
        (b'{"specversion": "1.0", "id": "x", "source": "s", "type": "other.type"}', []),
        (None, []),
    ],
    ids=["garbage", "another-type", "no-value"],
)
def test_a_record_without_a_task_start_identity_becomes_a_dead_letter_with_a_reason(
    value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    inbound = translate(POSITION, b"k", value, headers, LIMITS)
    assert (inbound.command, inbound.rejection) == (None, None)
    assert inbound.dead_letter
    assert (inbound.key, inbound.value, inbound.headers) == (b"k", value, tuple(headers))


def test_an_invalid_service_id_becomes_a_rejection_that_carries_no_service_id() -> None:
    inbound = binary(service_id="0")
    assert (inbound.command, inbound.dead_letter) == (None, None)
    rejection = inbound.rejection
    assert rejection is not None
    assert (rejection.service_id, rejection.status, rejection.code) == (
        None,
        400,
        "invalid_service_id",
    )
    assert [e["field"] for e in rejection.body["errors"]] == ["service_id"]
    assert rejection.identity == EventIdentity("urn:test", "evt-1")
    assert rejection.position == POSITION


def test_an_invalid_body_becomes_a_rejection_naming_the_field_and_keeping_the_service_id() -> None:
    rejection = binary(body=b'{"state_id": "x"}').rejection
    assert rejection is not None
    assert (rejection.service_id, rejection.status, rejection.code) == (
        21456878,
        400,
        "invalid_field",
    )
    assert [e["field"] for e in rejection.body["errors"]] == ["state_id"]
    assert rejection.body["exception"].endswith("ContextServicesExceptionResource")


def test_a_bad_service_id_and_a_bad_body_are_reported_together_in_one_rejection() -> None:
    rejection = binary(body=b'{"state_id": "x"}', service_id="abc").rejection
    assert rejection is not None
    assert [e["field"] for e in rejection.body["errors"]] == ["service_id", "state_id"]
    assert "service_id" in rejection.body["message"]
    assert "state_id" in rejection.body["message"]
    assert rejection.service_id is None


def test_a_too_large_body_outranks_a_bad_service_id_with_413() -> None:
    rejection = binary(body=orjson.dumps({"x": "y" * 5000}), service_id="-1").rejection
    assert rejection is not None
    assert (rejection.status, rejection.code) == (413, "too_large")
    assert {e["field"] for e in rejection.body["errors"]} >= {"service_id"}


def test_a_binary_body_that_is_not_json_is_rejected_not_dead_lettered() -> None:
    inbound = binary(body=b'{"task_type": customer info}')
    assert inbound.dead_letter is None
    assert inbound.rejection is not None
    assert (inbound.rejection.status, inbound.rejection.code) == (400, "malformed_json")


# --- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply_to", "topics"),
    [(None, [LOG]), ("my-replies", [LOG, "my-replies"]), (LOG, [LOG])],
    ids=["log-only", "log-and-replyto", "replyto-is-the-log"],
)
def test_a_created_reply_goes_to_the_log_and_to_a_distinct_replyto_once_each(
    reply_to: str | None, topics: list[str]
) -> None:
    inbound = binary(reply_to=reply_to)
    records = created_records(inbound, task_for(inbound), "http://x/tasks/15928", LOG, NOW)
    assert [r.topic for r in records] == topics
    assert len({(r.key, r.value, tuple(r.headers)) for r in records}) == 1


@pytest.mark.parametrize(
    ("reply_to", "topics"),
    [(None, [REJECTIONS]), ("my-replies", [REJECTIONS, "my-replies"]), (REJECTIONS, [REJECTIONS])],
    ids=["log-only", "log-and-replyto", "replyto-is-the-log"],
)
def test_a_rejected_reply_goes_to_the_rejections_topic_and_to_a_distinct_replyto_once_each(
    reply_to: str | None, topics: list[str]
) -> None:
    inbound = binary(body=b"[]", reply_to=reply_to)
    assert inbound.rejection is not None
    records = rejected_records(inbound, inbound.rejection, REJECTIONS, NOW)
    assert [r.topic for r in records] == topics


def test_a_created_reply_conforms_to_the_task_created_schema_and_carries_the_contract_headers() -> (
    None
):
    inbound = binary()
    task = task_for(inbound)
    (record,) = created_records(inbound, task, "http://x/service/21456878/tasks/15928", LOG, NOW)
    reply = TaskCreated.model_validate(orjson.loads(record.value or b""))
    assert (reply.task_id, reply.service_id, reply.correlation_id) == (15928, 21456878, "corr-1")
    assert reply.task.attached_data == {"Survey": {"question1": 7}}
    assert (reply.task.source_topic, reply.task.source_partition, reply.task.source_offset) == (
        "requests",
        2,
        41,
    )
    headers = headers_of(record)
    assert headers["ce_type"] == wire.TYPE_TASK_CREATED.encode()
    assert headers["ce_id"] == wire.reply_event_id("urn:test", "evt-1").encode()
    assert headers["ce_correlationid"] == b"corr-1"
    assert headers["ce_serviceid"] == b"21456878"
    assert headers["ce_time"] == NOW.encode()
    assert record.key == b"21456878"


def test_a_rejected_reply_conforms_to_task_rejected_and_omits_an_invalid_service_id() -> None:
    inbound = binary(body=b'{"state_id": "x"}', service_id="abc", correlation_id=None)
    assert inbound.rejection is not None
    (record,) = rejected_records(inbound, inbound.rejection, REJECTIONS, NOW)
    reply = TaskRejected.model_validate(orjson.loads(record.value or b""))
    assert (reply.service_id, reply.status, reply.code.value) == (None, 400, "invalid_service_id")
    assert [e.field for e in reply.error.errors] == ["service_id", "state_id"]
    headers = headers_of(record)
    assert headers["ce_type"] == wire.TYPE_TASK_REJECTED.encode()
    assert headers["ce_id"] == wire.reply_event_id("urn:test", "evt-1").encode()
    assert "ce_serviceid" not in headers
    assert "ce_correlationid" not in headers
    assert record.key is None


def test_the_reply_id_is_the_same_for_every_reply_to_one_request_whatever_its_outcome() -> None:
    accepted = binary()
    rejected = binary(body=b"[]")
    assert rejected.rejection is not None
    created = created_records(accepted, task_for(accepted), "loc", LOG, NOW)[0]
    created_again = created_records(accepted, task_for(accepted), "loc", LOG, "later")[0]
    refused = rejected_records(rejected, rejected.rejection, REJECTIONS, NOW)[0]
    ids = {headers_of(r)["ce_id"] for r in (created, created_again, refused)}
    assert ids == {wire.reply_event_id("urn:test", "evt-1").encode()}


# --- dead letters ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"\xff\x00garbage", None], ids=["bytes", "none"])
def test_a_dead_letter_keeps_key_value_and_headers_and_appends_where_and_why(
    value: bytes | None,
) -> None:
    original = [("x-origin", b"\x01\x02binary"), ("x-origin", b"repeated")]
    inbound = translate(POSITION, b"some-key", value, original, LIMITS)
    record = dead_letter_record(inbound, "dlq")
    assert (record.topic, record.key, record.value) == ("dlq", b"some-key", value)
    assert record.headers[:2] == original
    added = dict(record.headers[2:])
    assert added[wire.DLQ_ERROR] == (inbound.dead_letter or "").encode()
    assert (added[wire.DLQ_TOPIC], added[wire.DLQ_PARTITION], added[wire.DLQ_OFFSET]) == (
        b"requests",
        b"2",
        b"41",
    )
