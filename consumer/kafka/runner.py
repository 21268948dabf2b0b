"""The consume loop: poll a batch, translate, run the service, publish replies, then commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from aiokafka.util import commit_structure_validate

from consumer.domain import Position
from consumer.kafka.codec import (
    Inbound,
    OutRecord,
    created_records,
    dead_letter_record,
    now_iso,
    rejected_records,
    translate,
)
from consumer.kafka.publisher import KafkaPublisher
from consumer.ports import UnitOfWorkFactory
from consumer.service import start_tasks
from consumer.settings import ConsumerConfig
from schemas.errors import ServiceError

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
REVOKE_WAIT_S = 30.0
LANE_MIN_RECORDS = 200
"""A batch gets one more concurrent lane per this many records (up to `consumer_lanes`)."""


class Fetched(NamedTuple):
    """One poll: the records by partition and their translations, in the same order."""

    records: dict[TopicPartition, list[Any]]
    inbound: list[Inbound]
    assignment: int
    """`Runner.assignments` when fetched: a batch from an earlier assignment is not committed."""
    membership: tuple[int, str] | None
    """(generation, member id) when fetched: the only membership its offsets are committed under."""


class SettleOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """Before partitions go, let the in-flight batch finish (and commit) or give up on it."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            async with asyncio.timeout(REVOKE_WAIT_S):
                await self._runner.in_flight.acquire()
            self._runner.in_flight.release()
        except TimeoutError:
            log.warning("in-flight batch still running at revoke: it will be redelivered")
        log.info("partitions revoked: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._runner.assignments += 1
        log.info("partitions assigned: %s", sorted(f"{tp.topic}-{tp.partition}" for tp in assigned))


class Runner:
    """Drives one consumer-group member until `stopping` is set."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        publisher: KafkaPublisher,
        uow_factory: UnitOfWorkFactory,
        settings: ConsumerConfig,
    ) -> None:
        self._consumer = consumer
        self._publisher = publisher
        self._uow_factory = uow_factory
        self._settings = settings
        self._limits = settings.contract.limits
        self.in_flight = asyncio.Lock()
        self.processed = 0
        self.assignments = 0
        """Partition assignments so far (the rebalance listener counts them)."""
        self._linger_s = settings.consumer.batch_linger_ms / 1000
        self._last_batch_at = 0.0

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll, process and commit batches; return after the in-flight batch once stopping.

        After a full batch (a backlog), the next one is fetched and translated while the current
        one waits on the database and the broker (CPU work overlapping I/O). It is settled only
        after the current batch is committed, so offsets still advance strictly in order; a
        prefetched batch dropped at shutdown was never answered nor committed, and is
        redelivered.

        After a partial batch, fetching pauses until it is committed: a fetch made meanwhile
        would return the few records there at that moment, the next batch would be those few,
        and the ones arriving after them would wait a batch longer. Resumed, one fetch brings
        everything that arrived, once `batch_linger_ms` has passed since the batch began.
        """
        prefetch: asyncio.Task[Fetched] | None = None
        try:
            while not stopping.is_set():
                fetched = await (prefetch if prefetch is not None else self._fetch())
                prefetch = None
                if not fetched.records:
                    continue
                if len(fetched.inbound) >= self._settings.consumer.batch_max_records:
                    prefetch = asyncio.create_task(self._fetch())
                else:
                    self._consumer.pause(*self._consumer.assignment())
                async with self.in_flight:
                    if await self._process(fetched, stopping):
                        await self._commit(fetched)
        finally:
            if prefetch is not None:
                prefetch.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await prefetch

    async def _fetch(self) -> Fetched:
        assignment, membership = self.assignments, _membership(self._consumer)
        paused = self._consumer.paused()
        if paused:
            # Under a steady load this makes a batch of several records, one transaction, one
            # publish and one commit for them all; an idle consumer's last batch is older than
            # the linger, so it resumes at once.
            linger_left_s = self._last_batch_at + self._linger_s - time.monotonic()
            if linger_left_s > 0:
                await asyncio.sleep(linger_left_s)
            self._consumer.resume(*paused)
        records = await self._consumer.getmany(
            timeout_ms=POLL_TIMEOUT_MS, max_records=self._settings.consumer.batch_max_records
        )
        if records:
            self._last_batch_at = time.monotonic()
        self._set_fetch_wait(busy=bool(records))
        inbound = [
            translate(
                Position(r.topic, r.partition, r.offset), r.key, r.value, r.headers, self._limits
            )
            for batch in records.values()
            for r in batch
        ]
        return Fetched(records, inbound, assignment, membership)

    def _set_fetch_wait(self, *, busy: bool) -> None:
        """`fetch_busy_wait_ms` while records keep coming, `fetch_max_wait_ms` once idle.

        A broker holds a fetch that finds no record for this long; Kafka answers as soon as one
        arrives, but some brokers (tansu) only at the end of the wait. Between two batches of a
        steady load the next records are close: a short wait takes them soon after they land. An
        idle consumer (a whole poll without records) goes back to the long wait, which costs
        the broker and this process far fewer empty fetches.
        """
        s = self._settings.consumer
        wait_ms = s.fetch_busy_wait_ms if busy else s.fetch_max_wait_ms
        fetcher = getattr(self._consumer, "_fetcher", None)  # aiokafka has no public setter
        if getattr(fetcher, "_fetch_max_wait_ms", wait_ms) != wait_ms:
            fetcher._fetch_max_wait_ms = wait_ms  # type: ignore[union-attr]  # read per fetch

    async def _process(self, fetched: Fetched, stopping: asyncio.Event) -> bool:
        """Settle the batch, retrying transient failures with back-off; False if abandoned."""
        inbound = fetched.inbound
        attempt = 0
        while True:
            try:
                await self._settle_lanes(inbound)
            except ServiceError as exc:
                if not exc.retriable:
                    raise
                if stopping.is_set():
                    log.warning("stopping with an unsettled batch: it will be redelivered")
                    return False
                delay = self._backoff(attempt)
                attempt += 1
                log.warning(
                    "transient failure (attempt %d), retrying in %.2fs: %s", attempt, delay, exc
                )
                await _sleep_unless(stopping, delay)
                continue
            self.processed += len(inbound)
            return True

    def _backoff(self, attempt: int) -> float:
        delay = self._settings.retry.delay_s(attempt)
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto

    async def _settle_lanes(self, inbound: Sequence[Inbound]) -> None:
        """Settle a batch as concurrent lanes of whole partitions, each its own transaction.

        One lane's database round trip and broker acknowledgements overlap the other's work;
        a partition stays in one lane, so per-partition order holds. The same identity in two
        lanes is still one task (the unique key decides; a rare deadlock is a retriable error).
        """
        # A lane costs a transaction, a publish and their round trips: worth it on a backlog's
        # big batches, not on the small ones of a steady flow (measured: one lane at 780 req/s
        # through the bridge took ~15% less CPU per request and cut its p99 by a quarter).
        count = max(
            1, min(self._settings.consumer.consumer_lanes, len(inbound) // LANE_MIN_RECORDS)
        )
        lanes: list[list[Inbound]] = [[] for _ in range(count)]
        for item in inbound:  # one subscribed topic: the partition number picks the lane
            lanes[item.position.partition % len(lanes)].append(item)
        settling = [asyncio.ensure_future(self._settle(lane)) for lane in lanes if lane]
        try:
            await asyncio.gather(*settling)
        except BaseException:
            # One lane failed: stop the others before the batch is retried as a whole.
            for task in settling:
                task.cancel()
            await asyncio.gather(*settling, return_exceptions=True)
            raise

    async def _settle(self, inbound: Sequence[Inbound]) -> None:
        s = self._settings.topics
        commands = [i.command for i in inbound if i.command is not None]
        refused = [i.rejection for i in inbound if i.rejection is not None]
        outcome = await start_tasks(commands, refused, self._uow_factory)
        out: list[OutRecord] = []
        now = now_iso()
        for item in inbound:
            if item.dead_letter is not None:
                out.append(dead_letter_record(item, s.dead_letter))
                continue
            identity = (item.command or item.rejection).identity  # type: ignore[union-attr]
            task = outcome.tasks.get(identity) if item.command is not None else None
            if task is not None:
                location = self._settings.contract.location(task.service_id, task.task_id)
                out += created_records(item, task, location, s.created, now)
            else:
                rejection = outcome.rejections.get(identity) or item.rejection
                assert rejection is not None  # noqa: S101 - the service answers every identity
                out += rejected_records(item, rejection, s.rejected, now)
        await self._publisher.publish(out)

    async def _commit(self, fetched: Fetched) -> None:
        """Commit the batch's offsets under the group membership it was fetched under, or not at
        all (a batch left uncommitted is redelivered, and replays are idempotent)."""
        offsets = {tp: records[-1].offset + 1 for tp, records in fetched.records.items()}
        coordinator = getattr(self._consumer, "_coordinator", None)  # no public accessor
        if (find := getattr(coordinator, "ensure_coordinator_known", None)) is not None:
            # aiokafka's commit would wait for a lost coordinator itself, across a re-join, then
            # send the offsets under whatever membership holds by then: wait for it here, check.
            await find()
        if fetched.assignment != self.assignments or fetched.membership != _membership(
            self._consumer
        ):
            # Fetched under an earlier assignment, or before the broker forgot this member: the
            # offsets may belong to a log the broker no longer has (a restarted memory-only
            # broker numbers from 0 again), and a commit under the new membership would skip
            # the new log's records below them.
            log.warning(
                "batch fetched under an earlier group membership or assignment:"
                " offsets not committed (will be redelivered)"
            )
            return
        if fetched.membership is not None and fetched.membership[0] == _NO_GENERATION:
            log.warning("no longer a group member: offsets not committed (will be redelivered)")
            return
        try:
            await _commit_as(self._consumer, coordinator, offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Partitions moved to another member: it will redeliver, and replays are idempotent.
            log.warning(
                "offset commit refused after a rebalance (safe, will be redelivered): %s", exc
            )
        except KafkaError as exc:
            log.warning("offset commit failed (safe, will be redelivered): %r", exc)


_NO_GENERATION = -1
_REFUSED = (UnknownMemberIdError, IllegalGenerationError, RebalanceInProgressError)


def _membership(consumer: AIOKafkaConsumer) -> tuple[int, str] | None:
    """(generation, member id) of this group member; None for a consumer without a group
    coordinator (the unit tests' fakes). Generation -1 means the coordinator has reset the
    membership after the broker forgot the member: a commit then goes out *standalone*, which
    a broker with no live member in the group accepts blindly (the Java client refuses it)."""
    coordinator = getattr(consumer, "_coordinator", None)  # aiokafka has no public accessor
    if coordinator is None:
        return None
    return (coordinator.generation, getattr(coordinator, "member_id", ""))


async def _commit_as(
    consumer: AIOKafkaConsumer, coordinator: Any, offsets: dict[TopicPartition, int]
) -> None:
    """One offset commit carrying the membership checked just before (no await in between).

    `AIOKafkaConsumer.commit` starts the request in a new task and retries retriable failures
    after a back-off, each time under the membership of that moment: across a re-join that
    stores the old batch's offsets under the new membership. A failed commit is safe to drop.
    """
    do_commit = getattr(coordinator, "_do_commit_offsets", None)
    subscription = getattr(getattr(consumer, "_subscription", None), "subscription", None)
    assignment = getattr(subscription, "assignment", None)
    if do_commit is None or assignment is None:
        await consumer.commit(offsets)  # another client shape (the unit tests' fakes)
        return
    try:
        await do_commit(assignment, commit_structure_validate(offsets))
    except _REFUSED as exc:
        raise CommitFailedError(f"the group moved on: {exc!r}") from exc


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        pass
