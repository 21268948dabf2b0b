"""The embedded dev-stack servers: the tansu broker, PostgreSQL, and topic creation."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from consumer.admin import check_service_topics
from producer_tools.devstack.stack import (
    EmbeddedBroker,
    EmbeddedPostgres,
    ServerStartError,
    free_port,
)
from tests import servers
from tests.processes import ROOT
from tests.servers import StackSettings, create_topics


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(log_path=tmp_path / "broker.log") as server:
        yield server


async def topic_names(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, value: bytes) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    # tansu has no idempotent producer
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        metadata = await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    offset: int = metadata.offset
    return offset


async def read_first(bootstrap: str, topic: str) -> bytes:
    # No consumer group: assigning the partition skips tansu's group join (seconds).
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        record = await asyncio.wait_for(consumer.getone(), 10)
    finally:
        await consumer.stop()
    value: bytes = record.value
    return value


async def test_the_embedded_broker_hands_back_a_record_produced_to_it(
    broker: EmbeddedBroker,
) -> None:
    assert await produce(broker.bootstrap_servers, "roundtrip", b"hello") == 0

    assert await read_first(broker.bootstrap_servers, "roundtrip") == b"hello"


async def test_stopping_the_broker_twice_is_harmless_and_frees_its_port(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "broker.log")
    await broker.start()
    pid = broker.pid

    await broker.stop()
    await broker.stop()

    assert pid is not None
    assert not broker.running
    assert broker.pid is None
    again = EmbeddedBroker(broker.port, log_path=tmp_path / "again.log")
    async with again:
        assert again.running


async def test_a_restarted_broker_is_empty_because_its_storage_is_memory_only(
    broker: EmbeddedBroker,
) -> None:
    await produce(broker.bootstrap_servers, "forgotten", b"gone")
    port = broker.port

    await broker.restart()

    assert broker.port == port
    assert "forgotten" not in await topic_names(broker.bootstrap_servers)
    assert await produce(broker.bootstrap_servers, "forgotten", b"new") == 0


async def test_a_killed_broker_can_be_started_again(broker: EmbeddedBroker) -> None:
    broker.kill()
    assert not broker.running

    await broker.start()

    assert await produce(broker.bootstrap_servers, "after-kill", b"x") == 0


async def test_a_broker_refuses_a_port_that_is_already_taken(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    second = EmbeddedBroker(broker.port, log_path=tmp_path / "second.log")

    with pytest.raises(ServerStartError, match="in use"):
        await second.start()
    assert not second.running


async def test_create_topics_is_idempotent(broker: EmbeddedBroker) -> None:
    settings = StackSettings.of(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_requests="r.start",
        topic_created="r.created",
        topic_rejected="r.rejected",
        topic_dead_letter="r.dlq",
        topic_partitions=3,
    )

    await create_topics(settings)
    await create_topics(settings)
    await create_topics(settings, partitions=5)

    names = await topic_names(broker.bootstrap_servers)
    assert {"r.start", "r.created", "r.rejected", "r.dlq"} <= set(names)
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    await consumer.start()
    try:
        await consumer.topics()  # fetches the metadata partitions_for_topic reads
        assert consumer.partitions_for_topic("r.start") == {0, 1, 2}
    finally:
        await consumer.stop()


@pytest.fixture
def pg_data() -> Iterator[Path]:
    with servers.private_data_dir() as data_dir:
        yield data_dir


async def query(url: str, sql: str) -> object:
    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host, port=parsed.port, user=parsed.username, database=parsed.database
    )
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_embedded_postgres_answers_on_its_own_port(pg_data: Path) -> None:
    # fsync stays on here (the dev default); the other tests turn it off for speed
    async with EmbeddedPostgres(pg_data) as server:
        assert server.port != 5432
        assert server.url == f"postgresql+asyncpg://postgres@127.0.0.1:{server.port}/ucs_tasks"
        assert await query(server.url, "select 1") == 1
        assert await query(server.url, "select inet_server_port()") == server.port
        assert await query(server.url, "select current_database()") == "ucs_tasks"
        assert await query(server.url, "show fsync") == "on"


async def test_postgres_data_survives_stop_and_start(pg_data: Path) -> None:
    server = EmbeddedPostgres(pg_data, fsync=False)
    await server.start()
    await query(server.url, "create table kept as select 42 as answer")

    await server.stop()
    await server.stop()
    assert not server.running
    again = EmbeddedPostgres(pg_data, free_port(), fsync=False)
    async with again:
        assert await query(again.url, "select answer from kept") == 42


async def test_postgres_recovers_committed_data_after_a_kill(pg_data: Path) -> None:
    server = EmbeddedPostgres(pg_data, database="crash", fsync=False)
    await server.start()
    await query(server.url, "create table kept as select 7 as answer")

    server.kill()
    assert not server.running
    await server.start()
    try:
        assert await query(server.url, "select answer from kept") == 7
    finally:
        await server.stop()
    assert "database system was not properly shut down" in server.log_path.read_text()


async def test_postgres_restart_keeps_the_port_and_the_data(pg_data: Path) -> None:
    async with EmbeddedPostgres(pg_data, fsync=False) as server:
        await query(server.url, "create table kept as select 1 as answer")
        port = server.port

        await server.restart()

        assert server.port == port
        assert await query(server.url, "select answer from kept") == 1


async def test_the_settings_fixture_creates_random_topics_on_a_migrated_database(
    settings: StackSettings,
) -> None:
    assert settings.topics.requests.startswith("t-")
    assert settings.topics.partitions == 3
    assert settings.contract.base_uri == "http://testserver/genesys/1/cs"
    names = await topic_names(settings.kafka.bootstrap_servers)
    assert settings.topics.requests in names
    assert settings.topics.dead_letter in names
    assert await query(settings.database_url, "select count(*) from alembic_version") == 1


async def test_the_dev_stack_makes_one_copy_topics_on_its_own_broker_that_its_consumer_accepts(
    settings: StackSettings, tmp_path: Path
) -> None:
    kafka_port, bridge_port = free_port(), free_port()
    env = settings.env()
    for name in (
        "UCS_KAFKA_BOOTSTRAP_SERVERS",  # the dev stack starts its own broker
        "UCS_TOPIC_REPLICATION_FACTOR",  # and chooses one copy for it
        "UCS_TOPIC_MIN_INSYNC_REPLICAS",
    ):
        env.pop(name)
    env |= {
        "UCS_DEV_KAFKA_PORT": str(kafka_port),
        "UCS_DEV_DATA_DIR": str(tmp_path),
        "UCS_BRIDGE_PORT": str(bridge_port),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer_tools",
        "dev",
        "--no-bridge",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    output = bytearray()
    try:
        async with asyncio.timeout(60):
            while b"consuming " not in output:
                line = await process.stdout.readline()
                assert line, output.decode(errors="replace")
                output += line
        shown = output.decode(errors="replace")
        assert "creating the topics ..." in shown
        assert f"{settings.topics.created}: created" in shown
        one_copy = settings.with_(kafka_bootstrap_servers=f"127.0.0.1:{kafka_port}")
        report = await check_service_topics(one_copy.kafka, one_copy.topics, one_copy.contract)
        assert report.findings == ()
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
