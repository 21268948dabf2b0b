"""Composition root: builds the real adapters from settings, runs the consumer, disposes all."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.engine import build_engine
from consumer.db.repository import translate_errors
from consumer.db.status import read_status
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import StorageUnavailableError
from consumer.health import Health, HealthServer, health_app
from consumer.kafka.aiokafka_internals import (
    install_closed_connection_errors,
    install_no_topic_auto_creation,
    install_tolerant_records,
)
from consumer.kafka.member import KafkaGroupMember
from consumer.kafka.publisher import KafkaPublisher
from consumer.kafka.runner import REVOKE_WAIT_S, Runner
from consumer.kafka.topics import require_service_topics as require_topics
from consumer.ports import MemberStuckError, UnitOfWork
from consumer.settings import ConsumerConfig
from consumer.telemetry import Telemetry

log = logging.getLogger(__name__)

REBALANCE_TIMEOUT_MS = 30_000
"""How long the group waits for its members to rejoin in a rebalance (aiokafka's default is the
session timeout: a revoke that waits for the batch in flight would outlast it)."""
if REVOKE_WAIT_S * 1000 >= REBALANCE_TIMEOUT_MS:
    raise RuntimeError("REVOKE_WAIT_S must stay below REBALANCE_TIMEOUT_MS")


def client_id() -> str:
    """Names this process in broker logs and group listings."""
    return f"ucs-tasks-consumer-{socket.gethostname()}-{os.getpid()}"


def build_producer(settings: ConsumerConfig) -> AIOKafkaProducer:
    """The reply producer (idempotence off: not every Kafka-protocol broker supports it)."""
    return AIOKafkaProducer(
        **settings.kafka.client_options(),
        client_id=client_id(),
        acks="all",
        enable_idempotence=False,
        linger_ms=settings.consumer.producer_linger_ms,
        max_request_size=2 * settings.contract.max_reply_record_bytes,
        max_batch_size=1024 * 1024,
    )


def build_consumer(settings: ConsumerConfig) -> AIOKafkaConsumer:
    """A consumer-group member with manual commits."""
    return AIOKafkaConsumer(
        **settings.kafka.client_options(),
        client_id=client_id(),
        group_id=settings.consumer.consumer_group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.consumer.fetch_max_wait_ms,
        session_timeout_ms=settings.consumer.consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.consumer.consumer_heartbeat_interval_ms,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        max_partition_fetch_bytes=settings.contract.max_reply_record_bytes,
        fetch_max_bytes=4 * settings.contract.max_reply_record_bytes,
    )


async def _unless_stopping(attempt: Callable[[], Awaitable[None]], stopping: asyncio.Event) -> bool:
    """Run one attempt, cancelled if `stopping` is set first; False if it was cancelled.

    An attempt can hang for long (a broker that accepts connections but never answers holds a
    start for its 40 s request timeout): a stop must not wait for it.
    """
    step = asyncio.ensure_future(attempt())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({step, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (step, stop):
            task.cancel()
        await asyncio.gather(step, stop, return_exceptions=True)
    if step.cancelled():
        return False
    step.result()  # the attempt's own error, if it failed
    return True


async def _until_ready(
    what: str,
    attempt: Callable[[], Awaitable[None]],
    settings: ConsumerConfig,
    stopping: asyncio.Event,
    health: Health | None = None,
) -> bool:
    """Retry a start-up step with capped back-off; False if asked to stop first. While it
    fails, `health` names the dependency (`/readyz`)."""
    dependency = "postgresql" if what == "database" else "kafka"
    delay = settings.retry.initial_ms / 1000
    while not stopping.is_set():
        try:
            if not await _unless_stopping(attempt, stopping):
                return False
        except (KafkaError, StorageUnavailableError, OSError) as exc:
            log.warning("%s not ready, retrying in %.1fs: %s", what, delay, exc)
            if health is not None:
                health.failing(dependency, f"{what} not ready: {exc}".splitlines()[0][:200])
            try:
                async with asyncio.timeout(delay):
                    await stopping.wait()
            except TimeoutError:
                pass
            delay = min(delay * 2, settings.retry.max_ms / 1000)
            continue
        if health is not None:
            health.recovered(dependency)
        return True
    return False


async def check_database(engine: AsyncEngine) -> None:
    """Fail fast on wiring: the database answers and is migrated."""
    with translate_errors():
        async with engine.connect() as conn:
            table = (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
            version = None
            if table is not None:
                query = text("SELECT version_num FROM alembic_version")
                version = (await conn.execute(query)).scalar()
    if version is None:
        raise StorageUnavailableError("database is not migrated: run `ucs-tasks db upgrade`")


REFRESH_S = 5.0
"""How often the lag per partition and the task ids used are read for the metrics."""


async def _refresh(telemetry: Telemetry, member: KafkaGroupMember, engine: AsyncEngine) -> None:
    """Keep the lag and id-space gauges current (from the member's view and the database)."""
    metrics = telemetry.metrics
    while True:
        for topic, partition in member.assignment():
            end = member.highwater((topic, partition))
            done = metrics.committed_offset.labels(topic, str(partition))._value.get()
            if end is not None:
                metrics.lag.labels(topic, str(partition)).set(max(0, end - int(done)))
        try:
            async with engine.connect() as conn:
                status = await read_status(conn)
            metrics.task_ids_used.set(status.ids_used)
            metrics.task_ids_remaining.set(status.ids_left)
        except Exception as exc:  # noqa: BLE001 - a gauge left stale; the loop reports outages
            log.debug("task id gauges not refreshed: %r", exc)
        await asyncio.sleep(REFRESH_S)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


GC_OBJECTS_PER_RECORD = 110
"""Young objects the consumer keeps alive per record of `batch_max_records` while three batches
are in flight (one answered, one decided, one fetched), with room to spare: bench/consumer.py's
peak generation-0 count was ~294,000 at 4,000 records per batch (~180,000 when two batches
were in flight, ~58,500 at 1,000 records per batch)."""
GC_YOUNG_MIN = 50_000
GC_YOUNG_MAX = 1_000_000
"""At most this many young objects before a collection, whatever the batch size (a collection
rescans them all: 11-14 ms per 50,000 here)."""


def gc_threshold(batch_max_records: int) -> tuple[int, int, int]:
    """The collector's thresholds: generation 0 above what the batches in flight keep alive.

    A collection frees nearly nothing here (reference counting frees a settled batch; 143 cyclic
    objects were left after 50,000 events), but one triggered mid-batch rescans every live
    object of the batch. Below the batches' own size that happened every few thousand records
    (~3 us per event, bench/consumer.py); above it a collection comes only once garbage piles up.
    """
    young = GC_OBJECTS_PER_RECORD * batch_max_records
    return (min(GC_YOUNG_MAX, max(GC_YOUNG_MIN, young)), 20, 100)


def tune_gc(batch_max_records: int) -> None:
    """Collect less often (cycles are rare here; reference counting frees nearly everything)."""
    gc.freeze()  # what start-up allocated is never garbage: keep it out of every collection
    gc.set_threshold(*gc_threshold(batch_max_records))


async def run_consumer(
    settings: ConsumerConfig,
    stopping: asyncio.Event,
    publisher_type: Callable[[AIOKafkaProducer], KafkaPublisher] = KafkaPublisher,
    consumer_type: Callable[[ConsumerConfig], AIOKafkaConsumer] = build_consumer,
) -> int | None:
    """Run one consumer until `stopping` is set; returns how many records it settled (None if
    it stopped before it was wired: database, producer and topics).

    A group client that stops making progress (MemberStuckError) is replaced by a new one; the
    database engine, the producer and the health server stay.

    `publisher_type` lets a test put a publisher in front of the real broker that refuses some
    records the way Apache Kafka would (the embedded broker accepts nearly everything), and
    `consumer_type` lets it reach the Kafka clients the consumer builds.
    """
    tune_gc(settings.consumer.batch_max_records)
    install_tolerant_records()
    install_no_topic_auto_creation()
    install_closed_connection_errors()
    telemetry = Telemetry(per_minute=settings.log.rate_per_minute)
    async with AsyncExitStack() as stack:
        telemetry.health.running = True
        stack.callback(setattr, telemetry.health, "running", False)
        health = settings.health
        server = HealthServer(
            health_app(telemetry.health, telemetry.metrics), health.host, health.port
        )
        await stack.enter_async_context(server)
        log.info(
            "health and metrics on http://%s:%d (/healthz, /readyz, /metrics)",
            health.host,
            server.port,
        )
        engine = build_engine(settings.database.dsn, settings.database.pool_size)
        stack.push_async_callback(engine.dispose)

        def uow_factory() -> UnitOfWork:
            return SqlUnitOfWork(engine)

        if not await _until_ready(
            "database", lambda: check_database(engine), settings, stopping, telemetry.health
        ):
            return None
        producer = build_producer(settings)
        # Closes a producer whose start failed or was abandoned too (a no-op after publisher.stop).
        stack.push_async_callback(producer.stop)
        publisher = publisher_type(producer)
        if not await _until_ready(
            "broker (producer)", publisher.start, settings, stopping, telemetry.health
        ):
            return None
        stack.push_async_callback(publisher.stop)
        # Before subscribing: a subscription would create a missing topic with broker defaults.
        topics = (settings.kafka, settings.topics, settings.contract)
        if not await _until_ready(
            "topics", lambda: require_topics(*topics), settings, stopping, telemetry.health
        ):
            return None
        processed = 0
        while not stopping.is_set():
            async with AsyncExitStack() as client:
                member = KafkaGroupMember(consumer_type(settings), [settings.topics.requests])
                client.push_async_callback(member.stop)  # safe on a consumer that never started
                client.callback(setattr, telemetry.health, "member", False)
                runner = Runner(member, publisher, uow_factory, settings, telemetry=telemetry)
                if not await _until_ready(
                    "broker (consumer)", member.start, settings, stopping, telemetry.health
                ):
                    break
                telemetry.health.member = True
                log.info(
                    "consuming %s as group %s; replies to %s / %s",
                    settings.topics.requests,
                    settings.consumer.consumer_group,
                    settings.topics.created,
                    settings.topics.rejected,
                )
                refresh = _refresh(telemetry, member, engine)
                client.push_async_callback(_cancel, asyncio.create_task(refresh, name="telemetry"))
                try:
                    await runner.run(stopping)
                except MemberStuckError as exc:
                    log.warning("the Kafka consumer client makes no progress in its group, replaced"
                                " by a new one (records since the last commit are answered again;"
                                " replays are idempotent): %s", exc)  # fmt: skip
                    telemetry.metrics.client_replacements.inc()
                finally:
                    processed += runner.processed
        log.info("stopped after %d records", processed)
        return processed
    return None
