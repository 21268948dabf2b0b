"""Settling a batch: the service answers each record, the answers are published, and a
transient failure (broker or database away) makes the whole batch settle again after a back-off.

A batch settles as concurrent lanes of whole partitions, each its own transaction and publish:
one lane's database round trip and broker acknowledgements overlap the other's work, and a
partition stays in one lane, so per-partition order holds. The same identity in two lanes is
still one task (the unique key decides; a rare deadlock is a retriable error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from consumer.domain import Outcome, Undecodable
from consumer.kafka.backoff import backoff_s, sleep_unless
from consumer.kafka.codec import Replies
from consumer.ports import Inbound, OutRecord, ReplyPublisher, UnitOfWorkFactory
from consumer.service import handle
from consumer.telemetry import Telemetry
from schemas.errors import BrokerUnavailableError, ServiceError
from schemas.settings import RetrySettings

log = logging.getLogger(__name__)

LANE_MIN_RECORDS = 200
"""A batch gets one more concurrent lane per this many records (up to `consumer_lanes`): a lane
costs a transaction, a publish and their round trips, worth it on a backlog's big batches, not
on the small ones of a steady flow (one lane at 780 req/s through the bridge took ~15% less CPU
per request and cut its p99 by a quarter)."""


class Settler:
    """Settles batches: service, replies, publish; retries transient failures."""

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

    async def settle(self, inbound: Sequence[Inbound], stopping: asyncio.Event) -> bool:
        """Settle the batch, retrying transient failures with back-off; False if abandoned
        because the consumer is stopping (nothing is committed: the batch is redelivered)."""
        attempt = 0
        while True:
            try:
                await self._in_lanes(inbound)
            except ServiceError as exc:
                if not exc.retriable:
                    raise
                self._telemetry.retry(exc)
                if stopping.is_set():
                    log.warning("stopping with an unsettled batch: it will be redelivered")
                    return False
                delay = backoff_s(self._retry, attempt)
                attempt += 1
                log.warning(
                    "transient failure (attempt %d), retrying in %.2fs: %s", attempt, delay, exc
                )
                await sleep_unless(stopping, delay)
                continue
            self._telemetry.recovered()
            return True

    async def _in_lanes(self, inbound: Sequence[Inbound]) -> None:
        count = max(1, min(self._lanes, len(inbound) // LANE_MIN_RECORDS))
        if count == 1:
            await self._lane(inbound)
            return
        lanes: list[list[Inbound]] = [[] for _ in range(count)]
        for item in inbound:  # one subscribed topic: the partition number picks the lane
            lanes[item.position.partition % count].append(item)
        settling = [asyncio.ensure_future(self._lane(lane)) for lane in lanes if lane]
        try:
            await asyncio.gather(*settling)
        except BaseException:
            # One lane failed: stop the others before the batch is retried as a whole.
            for task in settling:
                task.cancel()
            await asyncio.gather(*settling, return_exceptions=True)
            raise

    async def _lane(self, inbound: Sequence[Inbound]) -> None:
        telemetry = self._telemetry
        with telemetry.timed_database():
            outcomes = await self._outcomes(inbound)
        records = self._replies.records(inbound, outcomes)
        with telemetry.timed_publish():
            await self._deliver(records)
        telemetry.outcomes(inbound, outcomes)

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

    async def _deliver(self, records: Sequence[OutRecord]) -> None:
        """Publish; what the broker refuses for good is replaced by a dead letter (then by a
        dead letter of headers only), so every record is accounted for."""
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


_ROLES = ("a reply", "a reply copy", "a dead letter", "a last-resort dead letter")
