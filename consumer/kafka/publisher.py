"""The reply publisher: sends a batch of records and returns once every one is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from consumer.kafka.codec import OutRecord


class BrokerUnavailableError(Exception):
    """Publishing failed; `retriable` tells whether backing off and retrying can help."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable


class KafkaPublisher:
    """Publishes replies and dead letters with `acks=all`; refuses use before `start()`."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._started = False

    async def start(self) -> None:
        await self._producer.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def publish(self, records: Sequence[OutRecord]) -> None:
        """Send all records (per-partition order kept) and wait for every acknowledgement."""
        if not self._started:
            raise RuntimeError("KafkaPublisher.publish() called before start()")
        try:
            pending = [
                await self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers)
                for r in records
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"publishing {len(records)} records failed: {exc!r}",
                retriable=bool(getattr(exc, "retriable", False)),
            ) from exc
