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
        reply = self._pending.register(correlation_id, identity)
        try:
            await self._publisher.publish(
                request, identity, correlation_id=correlation_id, trace=trace
            )
            # A timer rather than asyncio.timeout(): half its cost, on every request.
            expiry = asyncio.get_running_loop().call_later(self._reply_timeout_s, _expire, reply)
            try:
                return await reply
            except _ReplyTimeoutError:
                return NoReplyYet(identity)
            finally:
                expiry.cancel()
        finally:
            self._pending.discard(correlation_id)


class _ReplyTimeoutError(Exception):
    """The reply timeout passed (raised only into the request's own future)."""


def _expire(reply: asyncio.Future[Reply]) -> None:
    if not reply.done():
        reply.set_exception(_ReplyTimeoutError())
