"""The consumer-group member over AIOKafkaConsumer: the loop's `GroupMember` port.

A membership is (generation, member id, rebalances begun): a rebalance begins with the revoke
callback, which first awaits the loop's hook (the batch in flight settles and commits under the
old membership), then ends that membership. aiokafka resets every position to the committed
offset at each assignment, so the records of a batch dropped because its membership ended are
fetched again (by this member or by the partition's new owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Hashable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from consumer.kafka.aiokafka_internals import GroupInternals, InternalsError
from consumer.ports import MembershipLostError, Partition, Polled, RevokeHook
from schemas.errors import BrokerUnavailableError

log = logging.getLogger(__name__)

STOP_S = 10.0
"""How long a stop waits for the client to leave the group before it abandons the client."""

_GROUP_MOVED_ON = (
    CommitFailedError,
    IllegalGenerationError,
    IllegalStateError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


class KafkaGroupMember:
    """One member of the consumer group, subscribed to `topics`; `start()` joins it."""

    def __init__(self, consumer: AIOKafkaConsumer, topics: Sequence[str]) -> None:
        self._consumer = consumer
        self._internals: GroupInternals | None = None
        self._hook: RevokeHook | None = None
        self._rebalances = 0
        consumer.subscribe(list(topics), listener=_Listener(self))

    def on_revoke(self, hook: RevokeHook) -> None:
        self._hook = hook

    async def start(self) -> None:
        """Join the group; checks the aiokafka internals this member relies on."""
        await self._consumer.start()
        self._internals = GroupInternals(self._consumer)

    async def stop(self) -> None:
        """Leave the group (commits nothing: the loop committed what it settled).

        Bounded: aiokafka's stop first waits for its group coordination, which has no bound of
        its own; a client whose coordination is stuck is abandoned after `STOP_S` instead (its
        tasks cancelled, its connections closed; the broker drops the member at the session
        timeout)."""
        internals, self._internals = self._internals, None
        stopping = asyncio.ensure_future(self._consumer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=STOP_S)
        if stopping in done:
            stopping.result()
            return
        if internals is None:  # not started, or a start given up midway
            try:
                internals = GroupInternals(self._consumer)
            except InternalsError:  # no group coordination yet: nothing of it holds the stop
                await stopping
                return
        log.warning("the Kafka client did not stop within %.0fs (%s): abandoned",
                    STOP_S, internals.coordination_state())  # fmt: skip
        await internals.abandon(stopping, STOP_S)
        if not stopping.done():
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stopping

    def _group(self) -> GroupInternals:
        if self._internals is None:
            raise RuntimeError("KafkaGroupMember used before start()")
        return self._internals

    def _membership(self) -> Hashable:
        return (*self._group().membership(), self._rebalances)

    async def poll(self, timeout_ms: int, max_records: int) -> Polled:
        records = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        # Read right after the fetch returns (no await between): aiokafka hands out only the
        # records of the assignment active now, made under this membership.
        return Polled(records, self._membership())

    def is_current(self, membership: Hashable) -> bool:
        return self._internals is not None and membership == self._membership()

    async def commit(self, offsets: Mapping[Partition, int], membership: Hashable) -> None:
        try:
            await self._group().commit(offsets, lambda: self.is_current(membership))
        except _GROUP_MOVED_ON as exc:
            raise MembershipLostError(f"the group moved on: {exc!r}") from exc
        except KafkaError as exc:
            transient = exc.retriable or isinstance(exc, KafkaTimeoutError)
            raise BrokerUnavailableError(
                f"offset commit failed: {exc!r}", retriable=transient
            ) from exc

    def rejoin(self) -> None:
        group = self._group()
        log.info("joining the group again (%s)", group.coordination_state())
        group.rejoin()

    def set_fetch_wait(self, wait_ms: int) -> None:
        group = self._group()
        if group.fetch_wait() != wait_ms:
            group.set_fetch_wait(wait_ms)

    def assignment(self) -> set[Partition]:
        return set(self._consumer.assignment())

    def highwater(self, partition: Partition) -> int | None:
        """The log end of an assigned partition as the last fetch saw it (None before one)."""
        end: int | None = self._consumer.highwater(TopicPartition(*partition))
        return end

    def pause(self, *partitions: Partition) -> None:
        self._consumer.pause(*(TopicPartition(*p) for p in partitions))

    def resume(self, *partitions: Partition) -> None:
        self._consumer.resume(*(TopicPartition(*p) for p in partitions))

    def paused(self) -> set[Partition]:
        return set(self._consumer.paused())

    async def before_rebalance(self) -> None:
        """Called as a rebalance begins: the loop's hook, then the membership ends."""
        if self._hook is not None:
            await self._hook()
        self._rebalances += 1


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    def __init__(self, member: KafkaGroupMember) -> None:
        self._member = member

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._member.before_rebalance()
        log.info("partitions revoked: %s", _names(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned: %s", _names(assigned))


def _names(partitions: set[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}-{tp.partition}" for tp in partitions)
