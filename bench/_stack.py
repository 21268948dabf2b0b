"""Shared bench plumbing: the embedded stack, pre-produced events, and a row-count stopwatch."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaClient, AIOKafkaProducer, TopicPartition

from consumer.db.migrate import upgrade
from producer_tools.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from schemas import wire
from tests.servers import StackSettings, create_topics

# The corrected reference example: a realistic body with nested attached data.
BODY = (
    b'{ "interaction_id":"42", "est_duration":460, "state_id":24, "task_type":"customer info", '
    b'"Survey": { "url":"http://ourServer/storage/userAnswers", "question1":7, "question2":true, '
    b'"question3":"will be better with cable tv and on-demand video" }, "Proposal": [ '
    b'{ "car type":"cabriolet", "price":25000, "seats":2, "comments":"200 cv, hardtop" }, '
    b'{ "car type":"S.U.V.", "price":70000, "seats":8, "comments":"4wd, leather seats" } ] }'
)

END_BODY = b'{"disposition": 3, "disposition_desc": "resolved on first contact", "survey": "sent"}'
"""A Task End Event body: a disposition, its description and one key of attached data."""


@contextlib.asynccontextmanager
async def embedded_stack(partitions: int = 6) -> AsyncIterator[StackSettings]:
    """Broker + PostgreSQL (fsync off: we measure our code, not the disk), migrated, topics made."""
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-"))
    try:
        async with EmbeddedBroker() as broker, EmbeddedPostgres(folder / "pg", fsync=False) as pg:
            settings = StackSettings.of(
                kafka_bootstrap_servers=broker.bootstrap_servers,
                database_url=pg.url,
                topic_partitions=partitions,
                consumer_session_timeout_ms=3000,
                consumer_heartbeat_interval_ms=500,
            )
            await asyncio.to_thread(upgrade, pg.url)
            await create_topics(settings)
            yield settings
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def fetch_client(bootstrap: str, topics: list[str]) -> tuple[AIOKafkaClient, dict[str, int]]:
    """A started low-level client for raw FetchRequests (`client.send(leader, request)`), and
    the leader of partition 0 of each of `topics`; the caller closes the client."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        for topic in topics:
            client.add_topic(topic)
        await client.force_metadata_update()
    except BaseException:
        await client.close()
        raise
    leaders = {t: client.cluster.leader_for_partition(TopicPartition(t, 0)) for t in topics}
    missing = [t for t, leader in leaders.items() if leader is None or leader < 0]
    if missing:
        await client.close()
        raise RuntimeError(f"no leader for partition 0 of {missing}")
    return client, leaders


def _producer(settings: StackSettings) -> AIOKafkaProducer:
    """The pre-producing producer: large batches, a short linger."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_idempotence=False,
        linger_ms=20,
        max_batch_size=1 << 20,
    )


async def produce_events(settings: StackSettings, count: int, topic: str | None = None) -> None:
    """`count` binary-mode task-start events with distinct identities, 50 services."""
    producer = _producer(settings)
    await producer.start()
    try:
        pending = []
        for i in range(count):
            key, value, headers = wire.encode_request_binary(
                service_id=1000 + i % 50, body=BODY, event_id=f"bench-{i}", source="urn:bench"
            )
            pending.append(
                await producer.send(topic or settings.topics.requests, value, key, headers=headers)
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_alone(settings: StackSettings, count: int, *, source: str) -> None:
    """`count` task-start events, each a record batch of its own (as the bridge's requests are
    at a low rate), round robin over the requests topic's partitions, 50 services."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        topic = settings.topics.requests
        partitions = sorted(await producer.partitions_for(topic))
        pending = []
        for i in range(count):
            key, value, headers = wire.encode_request_binary(
                service_id=1000 + i % 50, body=BODY, event_id=f"alone-{i}", source=source
            )
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None, headers=headers)
            batch.close()
            partition = partitions[i % len(partitions)]
            pending.append(await producer.send_batch(batch, topic, partition=partition))
            if len(pending) >= 200:  # bounded in flight
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def produce_ends(settings: StackSettings, tasks: list[tuple[int, int]], topic: str) -> None:
    """A Task End Event for each (task id, service id), distinct identities, keyed like starts."""
    producer = _producer(settings)
    await producer.start()
    try:
        pending = []
        for task_id, service_id in tasks:
            key, value, headers = wire.encode_request_binary(
                service_id=service_id,
                body=END_BODY,
                event_id=f"bench-end-{task_id}",
                source="urn:bench",
                event_type=wire.TYPE_TASK_END,
                task_id=task_id,
            )
            pending.append(await producer.send(topic, value, key, headers=headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def time_rows(
    database_url: str, table: str, target: int, timeout_s: float = 600, where: str = "true"
) -> float:
    """Seconds from the first row of `table` (matching `where`) appearing to `target` such rows
    (polled every 10 ms)."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        query = f"SELECT count(*) FROM {table} WHERE {where}"  # noqa: S608 - our own SQL
        deadline = time.perf_counter() + timeout_s
        while not await conn.fetchval(query):
            await asyncio.sleep(0.005)
        start = time.perf_counter()
        while await conn.fetchval(query) < target:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{table}: fewer than {target} rows after {timeout_s}s")
            await asyncio.sleep(0.01)
        return time.perf_counter() - start
    finally:
        await conn.close()
