"""Settling a batch in two steps: `decide` (the service answers each record, in the database)
and `answer` (the answers are built and published). A transient failure (broker or database
away) makes the step settle again after a back-off.

The steps are separate so that the consume loop can decide the next batch while this one is
answered: one batch's database round trip overlaps the other's replies and acknowledgements.
`decide` runs as concurrent lanes of whole partitions, each its own transaction: one lane's
database round trip overlaps the other's work, and a partition stays in one lane, so
per-partition order holds. The same identity in two lanes is still one task (the unique key
decides; a rare deadlock is a retriable error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, TypeVar

from consumer.domain import Outcome, Undecodable
from consumer.kafka.backoff import backoff_s, sleep_unless
from consumer.kafka.codec import Replies
from consumer.ports import Inbound, OutRecord, ReplyPublisher, UnitOfWorkFactory
from consumer.service import handle
from consumer.telemetry import Telemetry, dependency_of
from schemas.errors import BrokerUnavailableError, ServiceError
from schemas.settings import RetrySettings

log = logging.getLogger(__name__)

_T = TypeVar("_T")

LANE_MIN_RECORDS = 200
"""A batch gets one more concurrent lane per this many records (up to `consumer_lanes`): a lane
costs a transaction and its round trips, worth it on a backlog's big batches, not on the small
ones of a steady flow (one lane at 780 req/s through the bridge, when each lane also published
its own replies, took ~15% less CPU per request and cut its p99 by a quarter)."""


class Lane(NamedTuple):
    """Records of whole partitions, and the service's outcome of each, in the same order."""

    inbound: Sequence[Inbound]
    outcomes: list[Outcome]


Decided = list[Lane]
"""A batch the service has answered, lane by lane: what `Settler.answer` publishes."""


class Settler:
    """Settles batches: `decide` (the service), then `answer` (replies, publish); each step
    retries transient failures."""

    def __init__(
        self,
        publisher: ReplyPublisher,
        uow_factory: UnitOfWorkFactory,
        replies: Replies,
        lanes: int,
        retry: RetrySettings,
        *,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._publisher = publisher
        self._uow_factory = uow_factory
        self._replies = replies
        self._lanes = lanes
        self._retry = retry
        self._telemetry = telemetry or Telemetry()

    async def decide(self, inbound: Sequence[Inbound], stopping: asyncio.Event) -> Decided | None:
        """The service's outcome of every record, in lanes; None if abandoned because the consumer
        is stopping while the database is away (nothing was decided: the batch is redelivered)."""
        return await self._retrying(lambda: self._in_lanes(inbound), stopping)

    async def answer(self, decided: Decided, stopping: asyncio.Event) -> bool:
        """Publish every record's answer; False if abandoned because the consumer is stopping
        while the broker is away (the batch stays uncommitted: it is redelivered, and its
        replays answered with the same tasks)."""
        records = [
            r for lane in decided for r in self._replies.records(lane.inbound, lane.outcomes)
        ]
        if await self._retrying(lambda: self._deliver(records), stopping) is None:
            return False
        for lane in decided:
            self._telemetry.outcomes(lane.inbound, lane.outcomes)
        return True

    async def _retrying(
        self, step: Callable[[], Awaitable[_T]], stopping: asyncio.Event
    ) -> _T | None:
        """`step()`, retried with back-off while it fails for a transient reason; None if the
        consumer is stopping meanwhile. Once it goes through, the dependencies its failures named
        are reported answering again (only those: while one batch's publish waits for the
        broker, the next batch's transaction going through says nothing about the broker)."""
        attempt = 0
        failed: set[str] = set()
        while True:
            try:
                done = await step()
            except ServiceError as exc:
                if not exc.retriable:
                    raise
                self._telemetry.retry(exc)
                failed.add(dependency_of(exc))
                if stopping.is_set():
                    log.warning("stopping with an unsettled batch: it will be redelivered")
                    return None
                delay = backoff_s(self._retry, attempt)
                attempt += 1
                log.warning(
                    "transient failure (attempt %d), retrying in %.2fs: %s", attempt, delay, exc
                )
                await sleep_unless(stopping, delay)
                continue
            self._telemetry.recovered(failed)
            return done

    async def _in_lanes(self, inbound: Sequence[Inbound]) -> Decided:
        count = max(1, min(self._lanes, len(inbound) // LANE_MIN_RECORDS))
        if count == 1:
            return [await self._lane(inbound)]
        lanes: list[list[Inbound]] = [[] for _ in range(count)]
        for item in inbound:  # one subscribed topic: the partition number picks the lane
            lanes[item.position.partition % count].append(item)
        deciding = [asyncio.ensure_future(self._lane(lane)) for lane in lanes if lane]
        try:
            return await asyncio.gather(*deciding)
        except BaseException:
            # One lane failed: stop the others before the batch is retried as a whole.
            for task in deciding:
                task.cancel()
            await asyncio.gather(*deciding, return_exceptions=True)
            raise

    async def _lane(self, inbound: Sequence[Inbound]) -> Lane:
        with self._telemetry.timed_database():
            return Lane(inbound, await self._outcomes(inbound))

    async def _outcomes(self, inbound: Sequence[Inbound]) -> list[Outcome]:
        try:
            return await handle([item.command for item in inbound], self._uow_factory)
        except ServiceError:
            raise
        except Exception:  # find the record(s) to blame, one by one
            log.exception("the service failed on a batch: settling its records one by one")
        outcomes: list[Outcome] = []
        for item in inbound:
            try:
                outcomes += await handle([item.command], self._uow_factory)
            except ServiceError:
                raise
            except Exception as exc:  # one record must not stop its partition
                log.exception("the service failed on the record at %s", item.position)
                reason = f"the record could not be processed: {exc!r}"
                outcomes.append(Undecodable(item.position, reason))
        return outcomes

    async def _deliver(self, records: Sequence[OutRecord]) -> bool:
        """Publish (True once done); what the broker refuses for good is replaced by a dead letter
        (then by a dead letter of headers only), so every record is accounted for."""
        with self._telemetry.timed_publish():
            refused = await self._publisher.publish(records)
        while refused:
            instead: list[OutRecord] = []
            for undelivered in refused:
                replacement = self._replies.instead_of(undelivered)
                if replacement is None:
                    raise BrokerUnavailableError(
                        f"the dead-letter topic refuses even a record of headers only:"
                        f" {undelivered.problem}",
                        retriable=True,
                    )
                instead.append(replacement)
                self._telemetry.dead_lettered(
                    undelivered.record.origin, "refused_by_broker", undelivered.problem
                )
            log.warning(
                "%d record(s) refused by the broker (first: %s to %s: %s): dead-lettered instead",
                len(refused), _ROLES[refused[0].record.role], refused[0].record.topic,
                refused[0].problem,
            )  # fmt: skip
            refused = await self._publisher.publish(instead)
        return True


_ROLES = ("a reply", "a reply copy", "a dead letter", "a last-resort dead letter")
