"""The consume loop: poll a batch, let the service answer it, publish the answers, commit.

It moves things and decides nothing about them: the codec turns each record into a command,
the service answers each command with one outcome, in order, the codec turns outcomes into
records (`settle.py`), and the offsets are committed under the membership the batch was fetched
under (`commits.py`). The group member and the publisher are ports (`consumer.ports`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from typing import Any, NamedTuple

from consumer.kafka.codec import Replies, Rules, consumed
from consumer.kafka.commits import Committer
from consumer.kafka.settle import Decided, Settler
from consumer.ports import GroupMember, Inbound, Partition, ReplyPublisher, UnitOfWorkFactory
from consumer.settings import ConsumerConfig
from consumer.telemetry import Telemetry

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 200
REVOKE_WAIT_S = 20.0
"""How long a rebalance waits for the batch in flight; below the group's rebalance timeout
(bootstrap.REBALANCE_TIMEOUT_MS), or this member would be dropped from the group meanwhile."""


TRANSLATE_SLICE = 256
"""Records translated per turn of the event loop (a few milliseconds of CPU)."""


class Batch(NamedTuple):
    """One poll, translated: the records in partition order, the offsets that settle them."""

    inbound: list[Inbound]
    offsets: dict[Partition, int]
    membership: Hashable
    started: float
    """time.monotonic() when it was polled."""


class Runner:
    """Drives one consumer-group member until `stopping` is set."""

    def __init__(
        self,
        member: GroupMember,
        publisher: ReplyPublisher,
        uow_factory: UnitOfWorkFactory,
        settings: ConsumerConfig,
        *,
        revoke_wait_s: float = REVOKE_WAIT_S,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._member = member
        self._telemetry = telemetry = telemetry or Telemetry()
        self._settings = settings.consumer
        self._rules = Rules.of(settings.topics, settings.contract)
        replies = Replies(settings.topics, settings.contract)
        self._settler = Settler(
            publisher,
            uow_factory,
            replies,
            settings.consumer.consumer_lanes,
            settings.retry,
            telemetry=telemetry,
        )
        self._committer = Committer(
            member,
            settings.retry,
            telemetry,
            stuck_s=settings.consumer.consumer_session_timeout_ms / 1000,
        )
        self._revoke_wait_s = revoke_wait_s
        self._in_flight = asyncio.Lock()
        """Held while a batch is decided, until its answer has begun."""
        self._answering: asyncio.Task[None] | None = None
        self._revoking = False
        """True while a rebalance waits for the batches in flight."""
        self._gap = False
        """A batch was left undecided or unanswered (stopping): no batch behind it is answered,
        as its commit would cover the records of the one left behind."""
        self._last_batch_at = 0.0
        self.processed = 0
        member.on_revoke(self._before_revoke)

    async def run(self, stopping: asyncio.Event) -> None:
        """Poll, settle and commit batches; return once stopping, after the batches in flight.

        A batch settles in two steps: the service decides it (the database), then it is
        answered (replies published, then its offsets committed). On a backlog (full batches)
        three batches are in flight at once: one being answered, the next being decided, and
        the one after being fetched and translated. So the CPU work of translating records and
        building replies overlaps the database's and the broker's round trips. Order still holds:
        a batch is decided only after the one before it was decided (its transaction committed)
        and answered only after the one before it was answered and committed, so replies and
        offsets advance in order. When a rebalance begins, the batch being answered is answered
        and committed under the membership it was fetched under (`_before_revoke` waits for it);
        the batches behind it are dropped unanswered, even one already decided (their records
        are fetched again, and replays are idempotent).

        After a partial batch, fetching pauses until it is committed: a fetch made meanwhile
        would return the few records there at that moment, the next batch would be those few,
        and the ones arriving after them would wait a batch longer. Resumed, one fetch brings
        everything that arrived, once `batch_linger_ms` has passed since the batch began.
        """
        prefetch: asyncio.Task[Batch] | None = None
        try:
            while not stopping.is_set():
                batch = await (prefetch if prefetch is not None else self._fetch())
                prefetch = None
                if self._answering is not None and self._answering.done():
                    await self._answered()  # surfaces its failure
                if not batch.inbound:
                    continue
                if len(batch.inbound) >= self._settings.batch_max_records:
                    prefetch = asyncio.create_task(self._fetch())
                # else `_fetch` paused the assignment as the poll returned
                await self._settle(batch, stopping)
                if prefetch is None:  # paused: the next fetch waits for this batch's commit
                    await self._answered()
            await self._answered()
        finally:
            if prefetch is not None:
                await _cancelled(prefetch)
            if self._answering is not None:  # leaving on an error: uncommitted, redelivered
                await _cancelled(self._answering)
                self._answering = None

    async def _settle(self, batch: Batch, stopping: asyncio.Event) -> None:
        """Decide the batch, then begin answering it once the batch before it is answered."""
        async with self._in_flight:
            if self._revoking or not self._member.is_current(batch.membership):
                log.info("a rebalance began since this batch was fetched: dropped")
                return
            decided = await self._settler.decide(batch.inbound, stopping)
            await self._answered()
            if decided is None:
                self._gap = True  # the consumer is stopping: redelivered
            if decided is None or self._gap:
                return
            if self._revoking or not self._member.is_current(batch.membership):
                log.info("a rebalance began while this batch was decided: left unanswered"
                         " (its records are fetched again; replays are idempotent)")  # fmt: skip
                return
            self._answering = asyncio.create_task(self._answer(batch, decided, stopping))

    async def _answer(self, batch: Batch, decided: Decided, stopping: asyncio.Event) -> None:
        if not await self._settler.answer(decided, stopping):
            self._gap = True  # the consumer is stopping: redelivered
            return
        self.processed += len(batch.inbound)
        await self._committer.commit(batch.offsets, batch.membership, stopping)
        self._telemetry.batch(len(batch.inbound), batch.started)

    async def _answered(self) -> None:
        """Wait for the batch being answered, if any, to be answered and committed."""
        answering = self._answering
        if answering is not None:
            try:
                await answering
            finally:
                if self._answering is answering:
                    self._answering = None

    async def _fetch(self) -> Batch:
        member, settings = self._member, self._settings
        paused = member.paused()
        if paused:
            # Under a steady load this makes a batch of several records, one transaction, one
            # publish and one commit for them all; an idle consumer's last batch is older than
            # the linger, so it resumes at once.
            linger_left_s = self._last_batch_at + settings.batch_linger_ms / 1000 - time.monotonic()
            if linger_left_s > 0:
                await asyncio.sleep(linger_left_s)
            member.resume(*paused)
        polled = await member.poll(POLL_TIMEOUT_MS, settings.batch_max_records)
        if polled.records:
            self._last_batch_at = time.monotonic()
            if sum(map(len, polled.records.values())) < settings.batch_max_records:
                # Before anything awaits: aiokafka sends its next fetch at the loop's next turn
                # after a poll drained its records, and that fetch's few records, held until
                # the broker's next look, would become the next batch (one or two records,
                # decided, published and committed on their own) while the rest wait behind it.
                member.pause(*member.assignment())
        # A broker holds a fetch that finds no record for the fetch wait; Kafka answers as soon
        # as one arrives, but some brokers look again only now and then (tansu: after half of
        # the wait left, so a record landing just after the fetch began waits half of it). While
        # records keep coming the next ones are close: a short wait takes them soon after they
        # land. An idle consumer goes back to the long wait (far fewer empty fetches).
        member.set_fetch_wait(
            settings.fetch_busy_wait_ms if polled.records else settings.fetch_max_wait_ms
        )
        rules = self._rules
        inbound: list[Inbound] = []
        for records in polled.records.values():
            for start in range(0, len(records), TRANSLATE_SLICE):
                inbound += [consumed(r, rules) for r in records[start : start + TRANSLATE_SLICE]]
                # A prefetched batch is translated while the one before it settles: between
                # slices, that one's database and broker answers are taken up, so its round
                # trips overlap this CPU work instead of waiting for all of it.
                await asyncio.sleep(0)
        offsets = {tp: records[-1].offset + 1 for tp, records in polled.records.items()}
        return Batch(inbound, offsets, polled.membership, time.monotonic())

    async def _before_revoke(self) -> None:
        """Awaited as a rebalance begins, under the old membership: the batches in flight settle
        and commit, or are given up after `revoke_wait_s` (their commits are then dropped)."""
        self._revoking = True  # a batch not being answered yet is dropped (fetched again)
        try:
            async with asyncio.timeout(self._revoke_wait_s):
                async with self._in_flight:
                    answering = self._answering
                if answering is not None:
                    await asyncio.wait([answering])  # its failure is the loop's to raise
        except TimeoutError:
            log.warning("the batch in flight is still settling as partitions are revoked:"
                        " its offsets will not be committed (redelivered)")  # fmt: skip
        finally:
            self._revoking = False


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end, whatever it ends with (the loop is leaving)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
