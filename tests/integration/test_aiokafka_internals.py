"""consumer/kafka/aiokafka_internals.py held to the real client (the pinned aiokafka) and a real
broker: membership, commits under an explicit membership, joining again, the fetch wait,
tolerant reading, and a loud failure naming what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import client as aiokafka_client
from aiokafka.conn import AIOKafkaConnection, create_conn
from aiokafka.consumer import fetcher
from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest

from consumer.kafka import member as member_module
from consumer.kafka.aiokafka_internals import (
    PINNED,
    GroupInternals,
    InternalsError,
    install_closed_connection_errors,
    install_no_topic_auto_creation,
    install_tolerant_records,
)
from consumer.kafka.member import KafkaGroupMember
from consumer.ports import MembershipLostError, UnparseableRecord
from tests import kafka_poison, servers
from tests.servers import StackSettings, create_topics, topic_names


@pytest.fixture
async def topic_settings(kafka_bootstrap: str) -> StackSettings:
    settings = servers.make_settings(kafka_bootstrap, "postgresql://unused@127.0.0.1/unused")
    await create_topics(settings, partitions=1)
    return settings


@pytest.fixture
async def producer(topic_settings: StackSettings) -> AsyncIterator[AIOKafkaProducer]:
    started = AIOKafkaProducer(**topic_settings.kafka.client_options(), enable_idempotence=False)
    await started.start()
    yield started
    await started.stop()


def member(settings: StackSettings) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        **settings.kafka.client_options(),
        group_id=f"internals-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    consumer.subscribe([settings.topics.requests])
    return consumer


async def read_all(consumer: AIOKafkaConsumer, count: int) -> list[object]:
    records: list[object] = []
    for _ in range(50):
        batch = await consumer.getmany(timeout_ms=200)
        records += [r for part in batch.values() for r in part]
        if len(records) >= count:
            break
    return records


async def test_a_commit_goes_out_under_the_current_membership_and_never_under_another(
    topic_settings: StackSettings, producer: AIOKafkaProducer
) -> None:
    topic = topic_settings.topics.requests
    for n in range(3):
        await producer.send_and_wait(topic, b"v%d" % n, partition=0)
    consumer = member(topic_settings)
    await consumer.start()
    try:
        internals = GroupInternals(consumer)
        assert len(await read_all(consumer, 3)) == 3
        generation, member_id = internals.membership()
        assert generation >= 0
        assert member_id
        tp = TopicPartition(topic, 0)

        await internals.commit({(topic, 0): 2}, lambda: True)
        assert await consumer.committed(tp) == 2

        with pytest.raises(MembershipLostError):
            await internals.commit({(topic, 0): 3}, lambda: False)
        assert await consumer.committed(tp) == 2

        internals.set_fetch_wait(7)
        assert internals.fetch_wait() == 7
    finally:
        await consumer.stop()
    assert internals.membership()[0] == -1  # no longer a member: nothing may be committed
    with pytest.raises(MembershipLostError):
        await internals.commit({(topic, 0): 3}, lambda: True)


async def test_a_rejoin_ends_the_membership_through_a_rebalance_and_commits_go_on_under_the_next(
    topic_settings: StackSettings, producer: AIOKafkaProducer
) -> None:
    """What the committer asks for when commits keep failing under a membership the client
    still holds (`KafkaGroupMember.rejoin`, over `GroupInternals.rejoin`): the revoke hook runs,
    the old membership's offsets are refused, and they go out under the next one. (tansu keeps
    a lone member's generation across its re-join: the rebalance count tells them apart.)"""
    topic = topic_settings.topics.requests
    await producer.send_and_wait(topic, b"v", partition=0)
    consumer = member(topic_settings)
    group = KafkaGroupMember(consumer, [topic])
    hooks: list[int] = []

    async def hook() -> None:
        hooks.append(1)

    group.on_revoke(hook)
    await group.start()
    try:
        polled = await group.poll(200, 10)
        for _ in range(50):
            if polled.records:
                break
            polled = await group.poll(200, 10)
        assert sum(len(r) for r in polled.records.values()) == 1
        before, revokes = polled.membership, len(hooks)  # aiokafka revokes nothing at the start

        group.rejoin()
        for _ in range(100):  # the re-join runs in aiokafka's coordination task
            after = (await group.poll(100, 10)).membership
            if len(hooks) > revokes and group.assignment():
                break
        assert len(hooks) == revokes + 1
        assert not group.is_current(before)
        assert group.is_current(after)

        with pytest.raises(MembershipLostError):
            await group.commit({(topic, 0): 1}, before)
        await group.commit({(topic, 0): 1}, after)
        assert await consumer.committed(TopicPartition(topic, 0)) == 1
    finally:
        await group.stop()


async def test_a_member_whose_start_was_given_up_on_a_stuck_coordination_still_stops(
    topic_settings: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka's start waits for an assignment, and its stop for the coordination task; with a
    coordinator lookup that never returns both would wait for ever. A start given up (as a stop
    of the consumer gives it up) leaves a member whose stop still ends within its bound, the
    client's tasks and connections ended."""
    monkeypatch.setattr(member_module, "STOP_S", 0.5)
    consumer = member(topic_settings)

    async def never(*args: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    consumer._client.coordinator_lookup = never  # this client only
    group = KafkaGroupMember(consumer, [topic_settings.topics.requests])
    start = asyncio.create_task(group.start())
    await asyncio.sleep(1.0)
    assert not start.done(), "the start did not wait for the group"
    start.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await start
    async with asyncio.timeout(10):
        await group.stop()
    assert consumer._coordinator._coordination_task.done()
    assert not any(conn.connected() for conn in consumer._client._conns.values())


async def test_records_the_client_cannot_parse_arrive_in_their_place_and_the_rest_flow(
    topic_settings: StackSettings, producer: AIOKafkaProducer
) -> None:
    install_tolerant_records()
    topic = topic_settings.topics.requests
    poison_name = b"\xff\xfe-not-utf-8"
    one = kafka_poison.batch([
        kafka_poison.record(0, b"k", b"good-0", [(b"h", b"1")]),
        kafka_poison.record(1, b"k", b"bad-name", [(b"ok", b"x"), (poison_name, b"2")]),
        kafka_poison.record(2, None, b"good-1", [(b"h", None)]),
        kafka_poison.record(3, b"k", b"bad-count", [(b"h", b"1")], header_count=-5),
        kafka_poison.record(4, b"k", b"good-2"),
    ])  # fmt: skip
    crc = kafka_poison.batch([kafka_poison.record(0, b"k", b"crc-0")], bad_checksum=True)
    tail = kafka_poison.batch([kafka_poison.record(0, b"k", b"good-3")])
    base = await kafka_poison.write(producer, topic, 0, one)
    crc_at = await kafka_poison.write(producer, topic, 0, crc)
    await kafka_poison.write(producer, topic, 0, tail)

    consumer = member(topic_settings)
    await consumer.start()
    try:
        records = await read_all(consumer, 7)
    finally:
        await consumer.stop()

    seen = [
        (r.offset - base, "unparseable" if isinstance(r, UnparseableRecord) else r.value)
        for r in records
    ]
    assert seen == [
        (0, b"good-0"),
        (1, "unparseable"),
        (2, b"good-1"),
        (3, "unparseable"),
        (4, b"good-2"),
        (crc_at - base, "unparseable"),
        (crc_at - base + 1, b"good-3"),
    ]
    bad_name, bad_count, bad_crc = (r for r in records if isinstance(r, UnparseableRecord))
    assert bad_name.raw_headers == ((b"ok", b"x"), (poison_name, b"2"))
    assert (bad_name.key, bad_name.value, bad_name.raw) == (b"k", b"bad-name", b"")
    assert "UTF-8" in bad_name.problem
    assert "negative header count" in bad_count.problem
    assert b"bad-count" in bad_count.raw
    assert "checksum" in bad_crc.problem
    assert bad_crc.raw[8:] == crc[8:]  # as written, but for the base offset the broker set
    assert records[2].headers == (("h", None),)  # read by the fallback reader, as aiokafka does


async def test_asking_for_a_missing_topic_creates_nothing(
    topic_settings: StackSettings, producer: AIOKafkaProducer
) -> None:
    """Installed for the session (tests/conftest.py) as the consumer installs it for its
    process: the embedded broker creates any topic a metadata request names unless asked not
    to."""
    install_no_topic_auto_creation()
    missing = f"nowhere-{uuid.uuid4().hex[:8]}"
    with pytest.raises((TimeoutError, UnknownTopicOrPartitionError)):
        async with asyncio.timeout(2):
            await producer.partitions_for(missing)
    assert missing not in await topic_names(topic_settings)
    assert await producer.partitions_for(topic_settings.topics.requests) == {0}  # one that exists


def test_a_request_written_as_its_connection_closes_fails_as_a_lost_connection_under_uvloop(
    kafka_bootstrap: str,
) -> None:
    """uvloop closes a dead socket's transport a loop turn or two before aiokafka's reader task
    notices; a request written in between raised uvloop's RuntimeError past aiokafka, and inside
    the metadata task it ended that task for good (a consumer's commits then hung after a broker
    restart). Installed, every such write fails as the lost connection it is, whenever it lands."""
    uvloop = pytest.importorskip("uvloop")
    install_closed_connection_errors()
    install_closed_connection_errors()  # idempotent: wrapped once
    assert not hasattr(AIOKafkaConnection.send.__wrapped__, "_closed_transport_guard")
    host, port = kafka_bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)

    async def write_after(turns: int) -> BaseException | None:
        conn = await create_conn(host, int(port))
        conn._writer.transport.abort()  # the socket gone, as when the broker dies
        for _ in range(turns):
            await asyncio.sleep(0)
        try:
            await conn.send(MetadataRequest([]))
        except Exception as exc:  # noqa: BLE001 - what it raises is the point
            return exc
        finally:
            conn.close()
        return None

    async def every_moment() -> list[BaseException | None]:
        return [await write_after(turns) for turns in range(4)]

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        errors = runner.run(every_moment())
    for turns, error in enumerate(errors):
        assert isinstance(error, KafkaConnectionError), f"{turns} loop turns after: {error!r}"


def test_a_client_building_metadata_requests_otherwise_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aiokafka_client, "MetadataRequest", type("MetadataRequest", (), {}))
    with pytest.raises(InternalsError, match=r"metadata requests.*aiokafka 0\.14"):
        install_no_topic_auto_creation()


def test_a_missing_internal_fails_loudly_naming_it_and_the_pinned_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fetcher, "MemoryRecords", object)  # as before any install
    monkeypatch.setattr(fetcher, "PartitionRecords", type("PartitionRecords", (), {}))
    with pytest.raises(InternalsError, match=r"PartitionRecords\._consumer_record") as caught:
        install_tolerant_records()
    assert PINNED in str(caught.value)


async def test_a_started_consumer_without_an_internal_fails_loudly(
    topic_settings: StackSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    consumer = member(topic_settings)
    await consumer.start()
    try:
        monkeypatch.delattr(consumer._fetcher, "_fetch_max_wait_ms")  # what a rename would do
        with pytest.raises(InternalsError, match=r"Fetcher\._fetch_max_wait_ms.*aiokafka 0\.14"):
            GroupInternals(consumer)
    finally:
        monkeypatch.undo()
        await consumer.stop()
