"""Start a task over Kafka request-reply: publish the request, wait for the correlated reply.

The event identity is (`BRIDGE_SOURCE`, event id): the `Idempotency-Key` when the caller sent
one, so every bridge instance maps the same key to the same identity and the consumer answers a
retry with the same task; a fresh uuid4 otherwise. Each attempt has its own correlation id.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from producer_tools.bridge.kafka import PendingRequests, Reply
from schemas.replies import EventRef

BRIDGE_SOURCE = "urn:ucs-tasks:bridge"
"""The CloudEvents source of every event the bridge publishes (all instances alike)."""


class RequestPublisher(Protocol):
    """What the starter needs from the Kafka side (`KafkaLink`)."""

    async def publish(
        self,
        *,
        service_id: int,
        body: bytes,
        event_id: str,
        source: str,
        correlation_id: str,
        trace: Mapping[str, str],
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class NoReplyYet:
    """No reply came in time: the request was published and may still be processed."""

    identity: EventRef


def identity_for(idempotency_key: str | None) -> EventRef:
    """The event identity of a start request."""
    return EventRef(source=BRIDGE_SOURCE, id=idempotency_key or uuid.uuid4().hex)


class TaskStarter:
    """Publishes validated start requests and waits for their replies."""

    def __init__(
        self,
        publisher: RequestPublisher,
        pending: PendingRequests,
        reply_timeout_ms: int,
    ) -> None:
        self._publisher = publisher
        self._pending = pending
        self._reply_timeout_s = reply_timeout_ms / 1000
        # Correlation ids: a random prefix per starter (replies left on the reply topic by an
        # earlier process never match) and a counter: a sixth of the CPU time of a uuid4.
        self._correlation_prefix = secrets.token_hex(8)
        self._attempts = itertools.count()

    async def start(
        self,
        service_id: int,
        body: bytes,
        identity: EventRef,
        trace: Mapping[str, str] | None = None,
    ) -> Reply | NoReplyYet:
        """The reply to this request (one with its correlation id that answers `identity`), or
        NoReplyYet after the reply timeout.

        The timeout runs from the broker's acknowledgement; publishing has its own bound.
        `trace`: the caller's W3C trace context (`traceparent`, `tracestate`), sent along.
        Raises BrokerUnavailableError when the request could not be published.
        """
        correlation_id = f"{self._correlation_prefix}-{next(self._attempts):x}"
        with self._pending.expecting(correlation_id, identity) as reply:
            await self._publisher.publish(
                service_id=service_id,
                body=body,
                event_id=identity.id,
                source=identity.source,
                correlation_id=correlation_id,
                trace=trace or {},
            )
            try:
                async with asyncio.timeout(self._reply_timeout_s):
                    return await reply
            except TimeoutError:
                return NoReplyYet(identity)
