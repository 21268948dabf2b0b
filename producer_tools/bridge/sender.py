"""Send a request over Kafka request-reply: publish it, wait for the correlated reply.

Each attempt has its own correlation id; the reply must carry it AND answer the request's
identity (`pending`). The identity itself (`messages.identity_for`) is the caller's business:
the same Idempotency-Key gives the same identity on every bridge instance.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from producer_tools.bridge.messages import PendingRequests, Reply
from schemas.replies import EventRef
from schemas.requests import TaskRequest


class RequestPublisher(Protocol):
    """What the sender needs from the Kafka side (`KafkaLink`)."""

    async def publish(
        self,
        request: TaskRequest,
        identity: EventRef,
        *,
        correlation_id: str,
        trace: Mapping[str, str] | None = None,
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class NoReplyYet:
    """No reply came in time: the request was published and may still be processed."""

    identity: EventRef


class RequestSender:
    """Publishes validated requests (start, end, extension) and waits for their replies."""

    def __init__(
        self,
        publisher: RequestPublisher,
        pending: PendingRequests,
        reply_timeout_ms: int,
    ) -> None:
        self._publisher = publisher
        self._pending = pending
        self._reply_timeout_s = reply_timeout_ms / 1000
        # Correlation ids: a random prefix per sender (replies left on the reply topic by an
        # earlier process never match) and a counter: a sixth of the CPU time of a uuid4.
        self._correlation_prefix = secrets.token_hex(8)
        self._attempts = itertools.count()

    async def send(
        self,
        request: TaskRequest,
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
                request, identity, correlation_id=correlation_id, trace=trace
            )
            try:
                async with asyncio.timeout(self._reply_timeout_s):
                    return await reply
            except TimeoutError:
                return NoReplyYet(identity)
