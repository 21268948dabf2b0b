"""A test-side Kafka client: publishes task-start records and collects every reply."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import text

from consumer.db.engine import build_engine
from schemas import wire
from tests.servers import StackSettings

SOURCE = "urn:ucs-tasks:tests"


@dataclass
class Reply:
    topic: str
    headers: list[tuple[str, bytes]]
    payload: dict[str, Any]


@dataclass
class TaskClient:
    settings: StackSettings
    replies: dict[str, list[Reply]] = field(default_factory=dict)
    dead_letters: list[Any] = field(default_factory=list)
    _producer: AIOKafkaProducer | None = None
    _listener: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        options = self.settings.kafka.client_options()
        self._producer = AIOKafkaProducer(
            **options, enable_idempotence=False, linger_ms=2, max_request_size=4 * 1024 * 1024
        )
        await self._producer.start()
        # No consumer group: assigning every partition directly needs no rebalance.
        self._listener = AIOKafkaConsumer(**options, auto_offset_reset="earliest")
        await self._listener.start()
        topics = (
            self.settings.topics.created,
            self.settings.topics.rejected,
            self.settings.topics.dead_letter,
        )
        self._listener.assign(
            [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in self._listener.partitions_for_topic(topic) or ()
            ]
        )
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            await self._listener.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _listen(self) -> None:
        assert self._listener is not None
        async for record in self._listener:
            if record.topic == self.settings.topics.dead_letter:
                self.dead_letters.append(record)
                continue
            payload = orjson.loads(record.value)
            key = wire.reply_correlation(record.headers) or payload["event"]["id"]
            self.replies.setdefault(key, []).append(
                Reply(record.topic, list(record.headers), payload)
            )

    async def send(
        self,
        body: bytes,
        service_id: int | str = 21456878,
        event_id: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish a binary-mode event; returns the correlation id its reply will carry."""
        assert self._producer is not None
        correlation_id = correlation_id or uuid.uuid4().hex
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", (event_id or uuid.uuid4().hex).encode()),
            ("ce_source", SOURCE.encode()),
            ("ce_type", wire.TYPE_TASK_START.encode()),
            ("ce_serviceid", str(service_id).encode()),
            ("ce_correlationid", correlation_id.encode()),
            ("content-type", b"application/json"),
        ]
        await self._producer.send_and_wait(
            self.settings.topics.requests, value=body, key=str(service_id).encode(), headers=headers
        )
        return correlation_id

    async def send_raw(
        self,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.topics.requests, value=value, key=key, headers=headers or []
        )

    async def reply(self, correlation_id: str, timeout: float = 20.0, count: int = 1) -> Reply:
        """The first reply to this correlation id (waits until `count` replies arrived)."""
        async with asyncio.timeout(timeout):
            while len(self.replies.get(correlation_id, [])) < count:
                await asyncio.sleep(0.02)
        return self.replies[correlation_id][0]

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)


async def rows_per_event(database_url: str, event_ids: list[str]) -> dict[str, int]:
    """How many task rows each event id sent by a TaskClient has (ids with none are absent)."""
    engine = build_engine(database_url, 1)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT event_id, count(*) FROM tasks"
                    " WHERE event_source = :source AND event_id = ANY(:ids) GROUP BY event_id"
                ),
                {"source": SOURCE, "ids": event_ids},
            )
            return dict(rows.all())
    finally:
        await engine.dispose()
