"""Poison records whose failure only Apache Kafka produces, injected in front of the real broker.

The embedded broker accepts what Kafka refuses (any record size, writes to any topic, topics it
creates on first use), so these tests put a publisher in front of it that refuses the records a
Kafka broker would refuse, with the exception aiokafka raises then; everything else is the real
consumer on the real broker and database. Each sends good events around the poison, on the same
partition and in the same poll, and checks: the good ones answered, the poison's dead letter
naming why, nothing lost or answered twice, the consumer still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAuthorizationFailedError

from consumer.bootstrap import run_consumer
from consumer.kafka import codec
from consumer.kafka.publisher import KafkaPublisher
from consumer.ports import OutRecord
from schemas import wire
from schemas.requests import EventKind
from tests.kafka_client import SOURCE, TaskClient, rows_per_event
from tests.servers import StackSettings, create_topic, topic_names

Refuse = Callable[[str, OutRecord], KafkaError | None]
SERVICE = 777


class RefusingPublisher(KafkaPublisher):
    """The real publisher, but a batch holding a record `refuse` names an error for is refused
    whole with that error (as Kafka refuses a batch)."""

    def __init__(self, producer: AIOKafkaProducer, refuse: Refuse) -> None:
        super().__init__(producer)
        self.refuse = refuse
        self.sends: list[tuple[str, int]] = []

    def tracked_topics(self) -> set[str]:
        """The topics the producer's client asks the broker about at each metadata refresh."""
        return set(self._producer.client._topics)

    async def _send(self, topic: str, partition: int, records: Sequence[OutRecord]) -> None:
        self.sends.append((topic, len(records)))
        for record in records:
            if (error := self.refuse(topic, record)) is not None:
                raise error
        await super()._send(topic, partition, records)


@contextlib.asynccontextmanager
async def consuming(
    settings: StackSettings, refuse: Refuse
) -> AsyncIterator[list[RefusingPublisher]]:
    made: list[RefusingPublisher] = []

    def publisher(producer: AIOKafkaProducer) -> KafkaPublisher:
        made.append(RefusingPublisher(producer, refuse))
        return made[-1]

    stopping = asyncio.Event()
    task = asyncio.create_task(run_consumer(settings, stopping, publisher_type=publisher))
    try:
        yield made
        assert not task.done(), "the consumer stopped"
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
    task.result()


async def send(client: TaskClient, event_id: str, **extra: str) -> None:
    key, value, headers = wire.encode_request_binary(
        service_id=SERVICE,
        body=b'{"state_id": 1}',
        event_id=event_id,
        source=SOURCE,
        correlation_id=event_id,
        **extra,  # type: ignore[arg-type]  # reply_to only
    )
    await client.send_raw(value, key=key, headers=headers)


async def good_around(client: TaskClient, prefix: str, poison: Callable[[], object]) -> list[str]:
    """Three good events, the poison, three good events, all on the service's partition."""
    good = [f"{prefix}-{n}" for n in range(6)]
    for event_id in good[:3]:
        await send(client, event_id)
    await poison()  # type: ignore[misc]  # a coroutine function
    for event_id in good[3:]:
        await send(client, event_id)
    return good


def dead_letters_of(client: TaskClient, event_id: str) -> list[object]:
    return [d for d in client.dead_letters if dict(d.headers).get("ce_id") == event_id.encode()]


async def answered_once(client: TaskClient, settings: StackSettings, good: list[str]) -> None:
    await client.wait_for(lambda: all(e in client.replies for e in good))
    await asyncio.sleep(0.3)  # room for a (wrong) second answer
    for event_id in good:
        assert [r.topic for r in client.replies[event_id]] == [settings.topics.created], event_id
    assert await rows_per_event(settings.database_url, good) == dict.fromkeys(good, 1)


async def test_a_reply_the_broker_refuses_is_found_in_its_batch_and_dead_lettered_alone(
    client: TaskClient, settings: StackSettings
) -> None:
    poison = f"too-large-{uuid.uuid4().hex[:6]}"

    def refuse(topic: str, record: OutRecord) -> KafkaError | None:
        if topic == settings.topics.created and poison.encode() in (record.value or b""):
            return MessageSizeTooLargeError()
        return None

    good = await good_around(client, f"around-{uuid.uuid4().hex[:6]}", lambda: send(client, poison))
    async with consuming(settings, refuse) as publishers:  # started after: one poll takes all
        await client.wait_for(lambda: bool(dead_letters_of(client, poison)))
        await answered_once(client, settings, good)
    (dead,) = dead_letters_of(client, poison)
    error = dict(dead.headers)[wire.DLQ_ERROR].decode()
    assert "MessageSizeTooLargeError" in error
    assert "what was stored stands" in error
    assert dead.value == b'{"state_id": 1}'
    assert poison not in client.replies
    assert await rows_per_event(settings.database_url, [poison]) == {poison: 1}  # the task stands
    (publisher,) = publishers
    sends_to_log = [n for topic, n in publisher.sends if topic == settings.topics.created]
    assert sends_to_log[0] == 7, "the seven replies were not in one batch"
    assert len(sends_to_log) > 2, "the refused record was not isolated by splitting"


@pytest.mark.parametrize("how", ["forbidden", "missing"])
async def test_a_reply_topic_that_cannot_be_written_gets_a_dead_letter_and_the_log_its_reply(
    client: TaskClient, settings: StackSettings, how: str
) -> None:
    """`forbidden`: the topic exists and the broker refuses writes to it; `missing`: it does not
    exist, and the consumer's clients ask the broker not to create it (the broker here, tansu,
    would create any topic a metadata request names)."""
    poison = f"replyto-{how}-{uuid.uuid4().hex[:6]}"
    their_topic = f"their-{poison}"
    if how == "forbidden":
        await create_topic(settings, their_topic)

    def refuse(topic: str, record: OutRecord) -> KafkaError | None:
        del record
        return TopicAuthorizationFailedError() if topic == their_topic else None

    good = await good_around(
        client, f"around-{uuid.uuid4().hex[:6]}", lambda: send(client, poison, reply_to=their_topic)
    )
    async with consuming(settings, refuse) as publishers:
        await client.wait_for(lambda: bool(dead_letters_of(client, poison)), timeout=30)
        await answered_once(client, settings, [*good, poison])
    (dead,) = dead_letters_of(client, poison)
    error = dict(dead.headers)[wire.DLQ_ERROR].decode()
    assert their_topic in error
    assert ("does not exist" if how == "missing" else "TopicAuthorizationFailed") in error
    assert (their_topic in await topic_names(settings)) is (how == "forbidden"), (
        "the consumer had the missing topic created"
    )
    if how == "missing":  # no longer asked for at each metadata refresh (an error logged each)
        (publisher,) = publishers
        assert their_topic not in publisher.tracked_topics()


async def test_a_dead_letter_the_broker_refuses_is_replaced_by_one_of_headers_only(
    client: TaskClient, settings: StackSettings
) -> None:
    marker = f"refuse-dlq-{uuid.uuid4().hex[:6]}".encode()

    def refuse(topic: str, record: OutRecord) -> KafkaError | None:
        if topic == settings.topics.dead_letter and marker in (record.value or b""):
            return MessageSizeTooLargeError()
        return None

    async def garbage() -> None:
        await client.send_raw(b"not an event " + marker, key=str(SERVICE).encode())

    good = await good_around(client, f"around-{uuid.uuid4().hex[:6]}", garbage)
    async with consuming(settings, refuse):
        await client.wait_for(
            lambda: any(wire.DLQ_TRUNCATED in dict(d.headers) for d in client.dead_letters)
        )
        await answered_once(client, settings, good)
    (last,) = [d for d in client.dead_letters if wire.DLQ_TRUNCATED in dict(d.headers)]
    assert (last.key, last.value) == (None, None)
    assert "the dead letter was refused" in dict(last.headers)[wire.DLQ_ERROR].decode()


async def test_a_record_whose_translation_fails_is_dead_lettered_and_its_partition_flows(
    client: TaskClient, settings: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = f"explodes-{uuid.uuid4().hex[:6]}"
    real = codec.validate_event

    def validate_event(kind: EventKind, service_id: object, *args: Any, **kwargs: Any) -> Any:
        if service_id in ("999", 999):
            raise RecursionError("a bug that one record sets off")
        return real(kind, service_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(codec, "validate_event", validate_event)

    async def exploding() -> None:
        _, value, headers = wire.encode_request_binary(
            service_id=999, body=b"{}", event_id=poison, source=SOURCE
        )
        await client.send_raw(value, key=str(SERVICE).encode(), headers=headers)

    good = await good_around(client, f"around-{uuid.uuid4().hex[:6]}", exploding)
    async with consuming(settings, lambda topic, record: None):
        await client.wait_for(lambda: bool(dead_letters_of(client, poison)))
        await answered_once(client, settings, good)
    (dead,) = dead_letters_of(client, poison)
    assert "RecursionError" in dict(dead.headers)[wire.DLQ_ERROR].decode()
