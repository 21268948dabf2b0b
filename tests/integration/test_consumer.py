"""The consumer against a real broker and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest
from sqlalchemy import text

from consumer.db.engine import build_engine
from schemas import wire
from tests.kafka_client import TaskClient
from tests.reference import REFERENCE_ATTACHED, REFERENCE_BODY, REFERENCE_SERVICE_ID
from tests.servers import StackSettings

pytestmark = pytest.mark.usefixtures("module_consumer")


@pytest.fixture
def settings(module_settings: StackSettings) -> StackSettings:
    """Every test of this module talks to the one module-wide consumer."""
    return module_settings


async def count_rows(settings: StackSettings, sql: str, **params: object) -> int:
    engine = build_engine(settings.database_url, 1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())
    finally:
        await engine.dispose()


async def test_the_reference_example_round_trips_with_its_attached_data_intact(
    client: TaskClient, settings: StackSettings
) -> None:
    reply = await client.reply(await client.send(REFERENCE_BODY, REFERENCE_SERVICE_ID))
    payload = reply.payload
    assert payload["kind"] == "task.created"
    task_id = payload["task_id"]
    assert payload["location"] == (
        f"http://testserver/genesys/1/cs/service/{REFERENCE_SERVICE_ID}/tasks/{task_id}"
    )
    task = payload["task"]
    assert task["attached_data"] == REFERENCE_ATTACHED
    assert list(task["attached_data"]) == ["Survey", "Proposal"]
    assert list(task["attached_data"]["Survey"]) == list(REFERENCE_ATTACHED["Survey"])
    assert (task["state_id"], task["est_duration"], task["task_type"]) == (24, 460, "customer info")
    assert task["interaction_id"] == "42"
    assert task["timestamp"].endswith("Z")
    assert reply.topic == settings.topics.created


async def test_two_events_get_distinct_increasing_ids(client: TaskClient) -> None:
    first = await client.reply(await client.send(b'{"state_id": 1}'))
    second = await client.reply(await client.send(b'{"state_id": 2}'))
    assert second.payload["task_id"] > first.payload["task_id"]


async def test_the_same_event_twice_makes_one_row_and_answers_the_same_task_id(
    client: TaskClient, settings: StackSettings
) -> None:
    event_id = uuid.uuid4().hex
    first = await client.reply(await client.send(b'{"state_id": 3}', event_id=event_id))
    second = await client.reply(await client.send(b'{"state_id": 3}', event_id=event_id))
    assert first.payload["task_id"] == second.payload["task_id"]
    rows = await count_rows(
        settings, "SELECT count(*) FROM tasks WHERE event_id = :event_id", event_id=event_id
    )
    assert rows == 1


async def test_a_stored_identity_is_answered_with_its_task_even_with_an_invalid_body(
    client: TaskClient, settings: StackSettings
) -> None:
    event_id = uuid.uuid4().hex
    first = await client.reply(await client.send(b'{"state_id": 3}', event_id=event_id))
    again = await client.reply(await client.send(b'{"state_id": "x"}', event_id=event_id))
    other_id = await client.reply(await client.send(b"{}", service_id="0", event_id=event_id))
    assert [r.payload["kind"] for r in (first, again, other_id)] == ["task.created"] * 3
    assert {r.payload["task_id"] for r in (first, again, other_id)} == {first.payload["task_id"]}
    recorded = await count_rows(
        settings, "SELECT count(*) FROM rejected_events WHERE event_id = :e", e=event_id
    )
    assert recorded == 0


async def test_a_replayed_event_takes_no_new_task_id(client: TaskClient) -> None:
    event_id = uuid.uuid4().hex
    first = await client.reply(await client.send(b"{}", event_id=event_id))
    for _ in range(3):
        await client.reply(await client.send(b"{}", event_id=event_id))
    after_replays = await client.reply(await client.send(b"{}"))
    assert after_replays.payload["task_id"] == first.payload["task_id"] + 1


INVALID_CASES = [
    (b'{"state_id": "x"}', "state_id"),
    (b'{"state_id": 2147483648}', "state_id"),
    (b'{"state_id": 24.0}', "state_id"),
    (b'{"est_duration": -1}', "est_duration"),
    (b'{"application_id": true}', "application_id"),
    (b'{"task_type": ""}', "task_type"),
    (b'{"task_type": 1.5}', "task_type"),
    (b'{"media_type": 9223372036854775808}', "media_type"),
    (b'{"interaction_id": 4.2}', "interaction_id"),
    (b'{"timestamp": "2010-05-20T15:41:52"}', "timestamp"),
    (b'{"timestamp": "yesterday"}', "timestamp"),
    (b'{"task_id": 5}', "task_id"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_CASES)
async def test_each_invalid_field_gets_a_rejected_reply_naming_the_field(
    client: TaskClient, settings: StackSettings, body: bytes, field: str
) -> None:
    reply = await client.reply(await client.send(body))
    payload = reply.payload
    assert payload["kind"] == "task.rejected"
    assert payload["status"] == 400
    assert field in [e["field"] for e in payload["error"]["errors"]]
    assert field in payload["error"]["message"]
    assert payload["error"]["exception"].endswith("ContextServicesExceptionResource")
    assert reply.topic == settings.topics.rejected


@pytest.mark.parametrize("service_id", ["0", "-5", str(2**63), "abc"])
async def test_an_invalid_service_id_gets_a_rejected_reply_naming_service_id(
    client: TaskClient, service_id: str
) -> None:
    reply = await client.reply(await client.send(b"{}", service_id=service_id))
    assert reply.payload["kind"] == "task.rejected"
    assert "service_id" in [e["field"] for e in reply.payload["error"]["errors"]]


@pytest.mark.parametrize(
    ("body", "status"),
    [(b'{"task_type":customer info}', 400), (b"[1, 2]", 400), (b"", 400)],
)
async def test_a_body_that_is_not_a_json_object_is_rejected(
    client: TaskClient, body: bytes, status: int
) -> None:
    reply = await client.reply(await client.send(body))
    assert (reply.payload["kind"], reply.payload["status"]) == ("task.rejected", status)


async def test_an_oversized_body_is_rejected_with_413(
    client: TaskClient, settings: StackSettings
) -> None:
    body = orjson.dumps({"blob": "x" * settings.contract.max_body_bytes})
    reply = await client.reply(await client.send(body))
    assert (reply.payload["kind"], reply.payload["status"]) == ("task.rejected", 413)


async def test_a_rejected_event_is_recorded_and_takes_no_task_id(
    client: TaskClient, settings: StackSettings
) -> None:
    event_id = uuid.uuid4().hex
    await client.reply(await client.send(b'{"state_id": "x"}', event_id=event_id))
    recorded = await count_rows(
        settings, "SELECT count(*) FROM rejected_events WHERE event_id = :e", e=event_id
    )
    tasks = await count_rows(settings, "SELECT count(*) FROM tasks WHERE event_id = :e", e=event_id)
    assert (recorded, tasks) == (1, 0)


async def test_an_undecodable_record_is_dead_lettered_byte_for_byte_and_the_next_event_still_runs(
    client: TaskClient, settings: StackSettings
) -> None:
    garbage = b"\xff\x00not a cloud event"
    headers = [("x-origin", b"\x01\x02binary")]
    await client.send_raw(garbage, key=b"some-key", headers=headers)
    good = await client.reply(await client.send(b'{"state_id": 9}'))
    assert good.payload["kind"] == "task.created"
    await client.wait_for(lambda: any(d.value == garbage for d in client.dead_letters))
    dead = next(d for d in client.dead_letters if d.value == garbage)
    assert (dead.key, dead.value) == (b"some-key", garbage)
    dead_headers = list(dead.headers)
    assert dead_headers[0] == headers[0]
    names = dict(dead_headers)
    assert names[wire.DLQ_TOPIC] == settings.topics.requests.encode()
    assert names[wire.DLQ_ERROR]
    assert int(names[wire.DLQ_OFFSET]) >= 0


async def test_a_structured_mode_event_is_accepted(client: TaskClient) -> None:
    correlation_id = uuid.uuid4().hex
    event = wire.structured_request(
        service_id=77,
        data={"state_id": 5, "Notes": {"b": 1, "a": [1.5, None, False]}},
        event_id=uuid.uuid4().hex,
        source="urn:test:structured",
        correlation_id=correlation_id,
    )
    key, value, headers = wire.encode_structured(event)
    await client.send_raw(value, key=key, headers=headers)
    reply = await client.reply(correlation_id)
    assert reply.payload["kind"] == "task.created"
    assert reply.payload["task"]["attached_data"] == {"Notes": {"b": 1, "a": [1.5, None, False]}}
    assert list(reply.payload["task"]["attached_data"]["Notes"]) == ["b", "a"]


async def test_a_request_naming_a_reply_topic_gets_its_reply_there_and_in_the_log(
    client: TaskClient, settings: StackSettings
) -> None:
    correlation_id = uuid.uuid4().hex
    key, value, headers = wire.encode_request_binary(
        service_id=5,
        body=b"{}",
        event_id=uuid.uuid4().hex,
        source="urn:test",
        reply_to=settings.topics.rejected,  # any existing topic the client listens to
        correlation_id=correlation_id,
    )
    await client.send_raw(value, key=key, headers=headers)
    await client.reply(correlation_id, count=2)
    topics = sorted(r.topic for r in client.replies[correlation_id])
    assert topics == sorted([settings.topics.created, settings.topics.rejected])


async def test_a_burst_of_events_each_gets_exactly_one_task(
    client: TaskClient, settings: StackSettings
) -> None:
    correlations = await asyncio.gather(
        *(client.send(orjson.dumps({"state_id": i})) for i in range(300))
    )
    await client.wait_for(lambda: all(c in client.replies for c in correlations))
    ids = {client.replies[c][0].payload["task_id"] for c in correlations}
    assert len(ids) == 300


async def test_a_reply_topic_that_does_not_exist_does_not_hold_up_the_reply_in_the_log(
    client: TaskClient, settings: StackSettings
) -> None:
    correlation_id = uuid.uuid4().hex
    key, value, headers = wire.encode_request_binary(
        service_id=6,
        body=b"{}",
        event_id=uuid.uuid4().hex,
        source="urn:test",
        reply_to=f"no-such-topic-{uuid.uuid4().hex}",
        correlation_id=correlation_id,
    )
    await client.send_raw(value, key=key, headers=headers)
    reply = await client.reply(correlation_id, timeout=15)
    assert (reply.topic, reply.payload["kind"]) == (settings.topics.created, "task.created")
    follow_up = await client.reply(await client.send(b'{"state_id": 7}'), timeout=15)
    assert follow_up.payload["kind"] == "task.created"
