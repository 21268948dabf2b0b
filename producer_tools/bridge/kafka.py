"""The bridge's Kafka side: the request publisher and the listener on its own reply topic.

`KafkaLink` owns both clients and their lifecycle. `start()` makes one bounded connection
attempt and then keeps (re)connecting in the background, so the bridge serves (503s, /healthz,
/readyz) while the broker is away. Connecting means, in order: create the reply topic if missing,
assign *all* its partitions to a group-less consumer positioned at their end, then start the
producer; only then are requests accepted, so no reply can be written before we listen.

While connected, a probe asks the broker for metadata every second (at once after a failed
send, or one slower than `SLOW_SEND_S`); a failed probe marks the link down, so `publish()`
fails at once (the fast path), sends in flight included, instead of waiting out a send timeout,
and both clients are rebuilt once the broker answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from consumer.admin import (
    create_topics,
    install_closed_connection_errors,
    install_no_topic_auto_creation,
)
from observability import tracing
from producer_tools.bridge.batches import RequestBatches
from producer_tools.bridge.messages import PendingRequests, dispatch_reply
from producer_tools.bridge.settings import BridgeConfig
from schemas.errors import BrokerUnavailableError
from schemas.replies import EventRef
from schemas.requests import TaskRequest

log = logging.getLogger(__name__)


REPLY_TOPIC_PREFIX = "ucs.tasks.replies."
REPLY_RETENTION_MS = 3_600_000
"""Replies matter for seconds: the reply topic keeps them an hour."""
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 5.0
SLOW_SEND_S = 0.25
"""A send not acknowledged within this long has the probe check the broker at once: a dead
broker is then found (and the sends waiting on it failed) well before the next probe is due."""
"""A dead broker refuses the probe at once; a slow one gets this long before it counts as down."""
_CONNECT_ERRORS = (KafkaError, OSError, TimeoutError)
_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9.-]+")


def reply_topic(settings: BridgeConfig) -> str:
    """This instance's reply topic: the setting, else one derived from host name and port.

    Derived names are stable across restarts, and distinct for instances on distinct hosts or
    ports, so each instance reads only the replies to its own requests.
    """
    if settings.bridge.reply_topic:
        return settings.bridge.reply_topic
    host = _TOPIC_CHARS.sub("-", socket.gethostname()).strip("-.") or "localhost"
    return f"{REPLY_TOPIC_PREFIX}{host}-{settings.bridge.port}"[:249]


def _describe(exc: BaseException) -> str:
    """`Type: text` once (aiokafka's texts already start with their type's name)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(name) else f"{name}: {text}".rstrip(": ")


class KafkaLink:
    """Publishes task requests and resolves `pending` from the replies to them."""

    def __init__(
        self, settings: BridgeConfig, pending: PendingRequests, topic: str | None = None
    ) -> None:
        self._settings = settings
        self._pending = pending
        self.reply_topic = topic or reply_topic(settings)
        self._send_timeout_s = settings.bridge.send_timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = None
        self._batches: RequestBatches | None = None
        self._listener: AIOKafkaConsumer | None = None
        self._listening: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._in_flight: set[asyncio.Future[None]] = set()
        """A waiter per unacknowledged send: failed at once when the link goes down."""
        self._started = False
        self._stopped = False
        self._ready = False
        self._down_reason = "not connected to the broker yet"

    @property
    def ready(self) -> bool:
        """Connected, listening, and the last probe or send succeeded."""
        return self._ready

    @property
    def down_reason(self) -> str:
        """Why the link is not ready (meaningless while it is)."""
        return self._down_reason

    async def start(self) -> None:
        """One connection attempt now, then the background supervisor (idempotent)."""
        if self._started:
            return
        self._started = True
        # A broker that creates topics on request would otherwise create the requests topic,
        # with its defaults, for a bridge that publishes before the topic is (re-)created.
        install_no_topic_auto_creation()
        # Under uvloop a request written to a connection the broker just closed would otherwise
        # raise past aiokafka and end its metadata task for good.
        install_closed_connection_errors()
        await self._try_connect()
        self._supervisor = asyncio.create_task(self._supervise(), name="bridge-kafka-link")

    async def stop(self) -> None:
        """Stop the supervisor and both clients (idempotent)."""
        if not self._started:
            return
        self._started = False
        self._stopped = True
        self._ready = False
        self._down_reason = "the bridge is shutting down"
        if self._supervisor is not None:
            await _finish(self._supervisor, cancel=True)
            self._supervisor = None
        await self._disconnect()

    async def __aenter__(self) -> KafkaLink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def publish(
        self,
        request: TaskRequest,
        identity: EventRef,
        *,
        correlation_id: str,
        trace: Mapping[str, str] | None = None,
    ) -> None:
        """Send one request as a binary-mode record (`TaskRequest.record`: the body
        untouched) under `identity`, and wait for the broker's acknowledgement.

        `trace` (W3C `traceparent` / `tracestate`) goes along as headers of those names, which
        the consumer copies onto the reply; with spans exported, a `publish` span is its parent.

        Raises BrokerUnavailableError at once while the link is down, as soon as the link is
        found down while the send waits, or after at most `bridge_send_timeout_ms` when the
        send fails.
        """
        if not self._started and not self._stopped:
            raise RuntimeError("KafkaLink.publish() called before start()")
        batches = self._batches
        if not self._ready or batches is None:
            raise BrokerUnavailableError(f"The Kafka broker is unavailable: {self._down_reason}.")
        key, value, headers = request.record(
            event_id=identity.id,
            source=identity.source,
            reply_to=self.reply_topic,
            correlation_id=correlation_id,
        )
        with tracing.span(
            "publish", kind="producer", parent=trace, attributes={"messaging.system": "kafka"}
        ):
            context = tracing.current_headers() or dict(trace or {})
            headers.extend((name, text.encode()) for name, text in context.items())
            await self._send(batches, key, value, headers)

    async def _send(
        self,
        batches: RequestBatches,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
    ) -> None:
        acked = batches.add(key, value, headers)
        self._in_flight.add(acked)
        loop = asyncio.get_running_loop()
        nudge = loop.call_later(SLOW_SEND_S, self._wake.set)
        expiry = loop.call_later(self._send_timeout_s, _expire, acked)
        try:
            await acked  # the acknowledgement, or the link found down meanwhile
        except (KafkaError, TimeoutError) as exc:
            # A failed send may mean a dead broker or only a slow one: the probe, run now,
            # decides; one overloaded moment must not turn every request away.
            self._wake.set()
            reason = f"publishing failed: {_describe(exc)}"
            raise BrokerUnavailableError(f"The Kafka broker is unavailable: {reason}.") from exc
        finally:
            nudge.cancel()
            expiry.cancel()
            self._in_flight.discard(acked)

    def _mark_down(self, reason: str) -> None:
        if self._ready:
            log.warning("Kafka link down: %s", reason)
        self._ready = False
        self._down_reason = reason
        # Sends still waiting would wait out the send timeout for a broker known to be gone.
        for waiter in self._in_flight:
            if not waiter.done():
                waiter.set_exception(
                    BrokerUnavailableError(f"The Kafka broker is unavailable: {reason}.")
                )

    # --- connection management

    async def _supervise(self) -> None:
        s = self._settings
        delay = s.retry.initial_ms / 1000
        while True:
            if self._producer is None:
                await asyncio.sleep(delay)
                if not await self._try_connect():
                    delay = min(delay * 2, s.retry.max_ms / 1000)
                    continue
                delay = s.retry.initial_ms / 1000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_INTERVAL_S):
                    await self._wake.wait()
            self._wake.clear()
            problem = await self._probe()
            if problem is None:
                if not self._ready:
                    log.info("Kafka link up again")
                self._ready = True
                continue
            self._mark_down(problem)
            await self._disconnect()  # rebuilt from scratch once the broker answers

    async def _probe(self) -> str | None:
        """None when healthy, else what is wrong."""
        if self._listening is None or self._listening.done():
            return "the reply listener stopped"
        assert self._producer is not None  # noqa: S101 - connected
        try:
            async with asyncio.timeout(max(self._send_timeout_s, PROBE_TIMEOUT_S)):
                answered = await self._producer.client.force_metadata_update()
        except _CONNECT_ERRORS:
            answered = False
        return None if answered else "the broker does not answer metadata requests"

    async def _try_connect(self) -> bool:
        try:
            async with asyncio.timeout(max(3 * self._send_timeout_s, 10.0)):
                await self._connect()
        except Exception as exc:  # every failure to connect is retried; unexpected ones loudly
            self._down_reason = "cannot connect to the broker"  # answered by /readyz: no details
            expected = isinstance(exc, _CONNECT_ERRORS)
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "Kafka link: cannot connect: %s (retrying in the background)",
                _describe(exc),
                exc_info=not expected,
            )
            await self._disconnect()
            return False
        self._ready = True
        log.info("Kafka link up: requests to %s, replies on %s", *self._topics)
        return True

    @property
    def _topics(self) -> tuple[str, str]:
        return self._settings.topics.requests, self.reply_topic

    async def _connect(self) -> None:
        s = self._settings
        options = s.kafka.client_options()
        partitions = await self._ensure_reply_topic()
        self._listener = AIOKafkaConsumer(
            **options,
            client_id=f"ucs-tasks-bridge-{self.reply_topic}",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=s.bridge.reply_fetch_wait_ms,
            max_partition_fetch_bytes=s.contract.max_reply_record_bytes,
            fetch_max_bytes=4 * s.contract.max_reply_record_bytes,
        )
        await self._listener.start()
        assigned = [TopicPartition(self.reply_topic, p) for p in partitions]
        self._listener.assign(assigned)
        await self._listener.seek_to_end(*assigned)
        for tp in assigned:  # resolve the end offsets now, before any request goes out
            await self._listener.position(tp)
        self._listening = asyncio.create_task(self._listen(self._listener), name="bridge-replies")
        self._producer = AIOKafkaProducer(
            **options,
            client_id="ucs-tasks-bridge",
            acks="all",
            enable_idempotence=False,  # not every Kafka-protocol broker supports it
            linger_ms=s.bridge.linger_ms,
            request_timeout_ms=s.bridge.send_timeout_ms,
            max_request_size=s.contract.max_body_bytes + 64 * 1024,
        )
        await self._producer.start()
        self._batches = RequestBatches(self._producer, s.topics.requests)

    async def _ensure_reply_topic(self) -> list[int]:
        """Create the reply topic if missing; its partition numbers."""
        s = self._settings
        configs = {
            "retention.ms": str(REPLY_RETENTION_MS),
            "max.message.bytes": str(s.contract.max_reply_record_bytes),
            "min.insync.replicas": str(s.topics.min_insync_replicas),
        }
        found = await create_topics(
            s.kafka,
            [self.reply_topic],
            s.bridge.reply_partitions,
            configs,
            request_timeout_ms=s.bridge.send_timeout_ms,
            replication_factor=s.topics.replication_factor,
        )
        return found[self.reply_topic]

    async def _disconnect(self) -> None:
        self._ready = False
        if self._batches is not None:
            down = f"The Kafka broker is unavailable: {self._down_reason}."
            self._batches.close(BrokerUnavailableError(down))
            self._batches = None
        listening, self._listening = self._listening, None
        if listening is not None:
            await _finish(listening, cancel=True)
        for client in (self._producer, self._listener):
            if client is not None:
                await _finish(asyncio.ensure_future(client.stop()), timeout_s=self._send_timeout_s)
        self._producer = self._listener = None

    # --- replies

    async def _listen(self, listener: AIOKafkaConsumer) -> None:
        """Resolve waiting requests from the reply topic until cancelled.

        While no request waits, fetching pauses: an idle bridge would otherwise fetch every
        `bridge_reply_fetch_wait_ms`. A paused listener keeps its position, so nothing written
        meanwhile is skipped (only dropped, as nobody waits for it).
        """
        assigned = listener.assignment()
        while True:
            if not self._pending:
                listener.pause(*assigned)
                await self._pending.wait_until_awaited()
                listener.resume(*assigned)
            batch = await listener.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    dispatch_reply(self._pending, record.headers, record.value)


def _expire(acked: asyncio.Future[None]) -> None:
    """The send timeout: a send not acknowledged by now fails (its batch may still arrive)."""
    if not acked.done():
        acked.set_exception(TimeoutError())


async def _finish(
    task: asyncio.Future[Any], *, cancel: bool = False, timeout_s: float | None = None
) -> None:
    """Wait for a background task (cancelled first, or after `timeout_s`) and log its failure.

    `asyncio.wait` never raises the task's own outcome: a cancellation or error inside (aiokafka's
    fetcher re-raises the cancellation of its back-off sleep when closed) cannot leak into the
    caller, while a cancellation *of the caller* still propagates.
    """
    if cancel:
        task.cancel()
    await asyncio.wait({task}, timeout=timeout_s)
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("Kafka client stopped with an error: %r", error)
