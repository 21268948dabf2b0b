"""The consume loop over fakes of its collaborators: retry, commit after replies, offset + 1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import orjson
import pytest

from consumer.domain import EventIdentity
from consumer.kafka import runner as runner_module
from consumer.kafka.codec import OutRecord
from consumer.kafka.publisher import BrokerUnavailableError
from consumer.kafka.runner import Runner, SettleOnRevoke
from consumer.ports import UnitOfWorkFactory
from schemas import wire
from tests.fakes import (
    Batch,
    FakeConsumer,
    FakePartition,
    FakePublisher,
    FakeRecord,
    FakeStore,
    FakeUnitOfWork,
    FlakyDatabase,
)
from tests.servers import StackSettings

REQUESTS = "requests"
P0 = FakePartition(REQUESTS, 0)
P1 = FakePartition(REQUESTS, 1)
SETTINGS = StackSettings.of(
    topic_requests=REQUESTS,
    topic_created="created",
    topic_rejected="rejected",
    topic_dead_letter="dlq",
    retry_backoff_initial_ms=1,
    retry_backoff_max_ms=4,
    consumer_lanes=1,  # one publish per batch: the tests below count them
)


def event(partition: int, offset: int, body: bytes = b'{"state_id": 1}') -> FakeRecord:
    key, value, headers = wire.encode_request_binary(
        service_id=7,
        body=body,
        event_id=f"evt-{partition}-{offset}",
        source="urn:test",
        correlation_id=f"corr-{partition}-{offset}",
    )
    return FakeRecord(REQUESTS, partition, offset, key, value, tuple(headers))


def two_partitions() -> Batch:
    return {P0: [event(0, 5), event(0, 6), event(0, 7)], P1: [event(1, 10)]}


def store_factory(store: FakeStore) -> UnitOfWorkFactory:
    return lambda: FakeUnitOfWork(store)


async def run_until(
    runner: Runner, done: Callable[[], bool], stopping: asyncio.Event | None = None
) -> None:
    """Run the loop until `done()` holds, then stop it and wait for it to return."""
    stopping = stopping or asyncio.Event()
    loop = asyncio.create_task(runner.run(stopping))
    try:
        async with asyncio.timeout(5):
            while not done():
                if loop.done():
                    loop.result()  # surfaces the loop's exception
                    pytest.fail("the loop returned before the condition held")
                await asyncio.sleep(0.001)
    finally:
        stopping.set()
        async with asyncio.timeout(5):
            await loop


def replies_in(publisher: FakePublisher) -> list[dict[str, object]]:
    return [orjson.loads(r.value or b"") for call in publisher.published for r in call]


def make_runner(
    consumer: FakeConsumer,
    publisher: FakePublisher,
    uow_factory: UnitOfWorkFactory,
    settings: StackSettings = SETTINGS,
) -> Runner:
    # The fakes have the shapes the loop uses (getmany/commit, publish), not the adapter types.
    return Runner(consumer, publisher, uow_factory, settings)  # type: ignore[arg-type]


async def test_a_batch_is_committed_once_at_offset_plus_one_per_partition_after_its_replies() -> (
    None
):
    consumer = FakeConsumer(two_partitions())
    seen_at_publish: list[int] = []
    publisher = FakePublisher(on_attempt=lambda: seen_at_publish.append(len(consumer.committed)))
    store = FakeStore()
    runner = make_runner(consumer, publisher, store_factory(store))

    await run_until(runner, lambda: bool(consumer.committed))

    assert consumer.committed == [{P0: 8, P1: 11}]
    assert seen_at_publish == [0]
    assert len(store.tasks) == 4
    replies = replies_in(publisher)
    assert [r["kind"] for r in replies] == ["task.created"] * 4
    assert runner.processed == 4


async def test_partitions_settle_in_concurrent_lanes_and_one_commit_follows_every_lane(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner_module, "LANE_MIN_RECORDS", 2)  # 4 records: two lanes
    consumer = FakeConsumer(two_partitions())
    seen_at_publish: list[int] = []
    publisher = FakePublisher(on_attempt=lambda: seen_at_publish.append(len(consumer.committed)))
    store = FakeStore()
    runner = make_runner(
        consumer, publisher, store_factory(store), SETTINGS.with_(**{"consumer_lanes": 2})
    )

    await run_until(runner, lambda: bool(consumer.committed))

    assert seen_at_publish == [0, 0]  # one publish per lane (one partition each), both first
    assert consumer.committed == [{P0: 8, P1: 11}]
    assert len(store.tasks) == 4


async def test_a_batch_smaller_than_two_lanes_worth_settles_in_one() -> None:
    """A lane costs a transaction and a publish: the small batches of a steady flow take one."""
    consumer = FakeConsumer(two_partitions())
    publisher = FakePublisher()
    settings = SETTINGS.with_(**{"consumer_lanes": 2})
    runner = make_runner(consumer, publisher, store_factory(FakeStore()), settings)
    await run_until(runner, lambda: bool(consumer.committed))
    assert len(publisher.published) == 1
    assert len(publisher.published[0]) == 4


async def test_retriable_publish_failures_are_retried_and_nothing_is_committed_until_success() -> (
    None
):
    consumer = FakeConsumer(two_partitions())
    failures = [BrokerUnavailableError("not enough replicas", retriable=True) for _ in range(3)]
    commits_at_attempt: list[int] = []
    publisher = FakePublisher(
        failures, on_attempt=lambda: commits_at_attempt.append(len(consumer.committed))
    )
    store = FakeStore()
    runner = make_runner(consumer, publisher, store_factory(store))

    await run_until(runner, lambda: bool(consumer.committed))

    assert publisher.attempts == 4
    assert commits_at_attempt == [0, 0, 0, 0]
    assert consumer.committed == [{P0: 8, P1: 11}]
    assert len(publisher.published) == 1
    # Each retry ran the service again: the identities kept their first task ids.
    assert len(store.tasks) == 4
    task_ids = sorted(int(str(r["task_id"])) for r in replies_in(publisher))
    assert task_ids == sorted(t.task_id for t in store.tasks.values())


async def test_a_non_retriable_publish_failure_propagates_and_commits_nothing() -> None:
    consumer = FakeConsumer(two_partitions())
    publisher = FakePublisher([BrokerUnavailableError("record too large", retriable=False)])
    runner = make_runner(consumer, publisher, store_factory(FakeStore()))

    with pytest.raises(BrokerUnavailableError, match="record too large"):
        async with asyncio.timeout(5):
            await runner.run(asyncio.Event())

    assert publisher.attempts == 1
    assert consumer.committed == []


async def test_an_unreachable_database_is_retried_without_publishing_or_committing() -> None:
    consumer = FakeConsumer(two_partitions())
    publisher = FakePublisher()
    store = FakeStore()
    database = FlakyDatabase(store, outages=3)
    runner = make_runner(consumer, publisher, database)

    await run_until(runner, lambda: bool(consumer.committed))

    assert database.calls == 4
    assert publisher.attempts == 1
    assert consumer.committed == [{P0: 8, P1: 11}]
    assert len(store.tasks) == 4


async def test_stopping_while_retrying_abandons_the_batch_uncommitted_for_redelivery() -> None:
    consumer = FakeConsumer(two_partitions())
    publisher = FakePublisher(
        [BrokerUnavailableError("broker down", retriable=True) for _ in range(1000)]
    )
    runner = make_runner(consumer, publisher, store_factory(FakeStore()))

    await run_until(runner, lambda: publisher.attempts >= 3)

    assert consumer.committed == []
    assert publisher.published == []
    assert runner.processed == 0


async def test_every_record_of_a_mixed_batch_is_answered_before_the_batch_is_committed() -> None:
    garbage = FakeRecord(REQUESTS, 1, 11, b"k", b"\xff not an event", (("x-h", b"v"),))
    batch = {P0: [event(0, 0), event(0, 1, body=b'{"state_id": "x"}')], P1: [garbage]}
    consumer = FakeConsumer(batch)
    publisher = FakePublisher()
    store = FakeStore()
    runner = make_runner(consumer, publisher, store_factory(store))

    await run_until(runner, lambda: bool(consumer.committed))

    (records,) = publisher.published
    assert [r.topic for r in records] == ["created", "rejected", "dlq"]
    assert (records[2].key, records[2].value) == (b"k", b"\xff not an event")
    assert consumer.committed == [{P0: 2, P1: 12}]
    assert set(store.rejections) == {EventIdentity("urn:test", "evt-0-1")}


async def test_consecutive_batches_are_committed_in_order_each_after_its_own_replies() -> None:
    consumer = FakeConsumer({P0: [event(0, 0)]}, {P0: [event(0, 1)], P1: [event(1, 0)]})
    publisher = FakePublisher()
    runner = make_runner(consumer, publisher, store_factory(FakeStore()))

    await run_until(runner, lambda: len(consumer.committed) == 2)

    assert consumer.committed == [{P0: 1}, {P0: 2, P1: 1}]
    assert [len(call) for call in publisher.published] == [1, 2]


class RebalancedAfterFirstCommit(FakeConsumer):
    """A member whose partitions are assigned anew right after its first commit, while the
    next batch, fetched before that rebalance, is in hand."""

    def __init__(self, *batches: Batch) -> None:
        super().__init__(*batches)
        self.listener: SettleOnRevoke | None = None
        self.rebalance: asyncio.Task[None] | None = None

    async def commit(self, offsets: dict[FakePartition, int]) -> None:
        await super().commit(offsets)
        if len(self.committed) == 1 and self.listener is not None:
            self.rebalance = asyncio.create_task(self._rebalance(self.listener))
            await asyncio.sleep(0)  # the revoke now waits for the batch in flight (this one)

    async def _rebalance(self, listener: SettleOnRevoke) -> None:
        """As aiokafka's coordinator does, beside the loop: revoke (waits for the batch in
        flight), then assign."""
        await listener.on_partitions_revoked(self.assignment())
        await listener.on_partitions_assigned(self.assignment())


class YieldingPublisher(FakePublisher):
    """Publishes after a pause, as a broker round trip does (the prefetch runs meanwhile)."""

    async def publish(self, records: Sequence[OutRecord]) -> None:
        await asyncio.sleep(0.001)
        await super().publish(records)


async def test_a_batch_fetched_before_a_rebalance_is_answered_but_not_committed() -> None:
    """Its offsets may name records of a log the broker no longer has (a restarted memory-only
    broker numbers its new log from 0 again) and the new assignment already took its positions
    from the group: committing them would skip records. Left uncommitted, it is redelivered."""
    consumer = RebalancedAfterFirstCommit({P0: [event(0, 0)]}, {P0: [event(0, 1)]})
    publisher = YieldingPublisher()
    settings = SETTINGS.with_(**{"batch_max_records": 1})  # full batches: prefetch
    runner = make_runner(consumer, publisher, store_factory(FakeStore()), settings)
    consumer.listener = SettleOnRevoke(runner)
    await run_until(runner, lambda: len(publisher.published) == 2)
    await asyncio.sleep(0.01)  # where the second commit would follow its replies
    assert consumer.committed == [{P0: 1}]
    assert runner.assignments == 1


class Recording(FakeConsumer):
    """Logs every pause, resume and poll in `calls`, each poll with what was paused then."""

    def __init__(self, *batches: Batch) -> None:
        super().__init__(*batches)
        self.calls: list[tuple[str, float, int]] = []

    def pause(self, *partitions: FakePartition) -> None:
        super().pause(*partitions)
        self.calls.append(("pause", asyncio.get_running_loop().time(), len(partitions)))

    def resume(self, *partitions: FakePartition) -> None:
        super().resume(*partitions)
        self.calls.append(("resume", asyncio.get_running_loop().time(), len(partitions)))

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Batch:
        self.calls.append(("poll", asyncio.get_running_loop().time(), len(self.paused())))
        return await super().getmany(timeout_ms, max_records)


async def test_after_a_partial_batch_fetching_pauses_until_it_settled_and_its_linger_passed() -> (
    None
):
    """A fetch made while a small batch settles would bring back the few records there at that
    moment; paused, the next poll gathers everything that came during the batch's linger."""
    consumer = Recording(two_partitions())
    settings = SETTINGS.with_(**{"batch_max_records": 100, "batch_linger_ms": 30})
    runner = make_runner(consumer, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len([c for c in consumer.calls if c[0] == "poll"]) >= 2)
    kinds = [kind for kind, _, _ in consumer.calls]
    assert kinds[:4] == ["poll", "pause", "resume", "poll"], kinds
    assert consumer.calls[1][2] == 2, "both partitions of the assignment paused"
    assert all(paused == 0 for kind, _, paused in consumer.calls if kind == "poll")
    assert consumer.calls[3][1] - consumer.calls[0][1] >= 0.03 * 0.9, "polled before the linger"
    assert consumer.committed == [{P0: 8, P1: 11}]


async def test_after_a_full_batch_the_next_one_is_fetched_while_it_settles() -> None:
    consumer = Recording(two_partitions(), {P0: [event(0, 8)]})
    settings = SETTINGS.with_(**{"batch_max_records": 4, "batch_linger_ms": 100})
    runner = make_runner(consumer, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len(consumer.committed) == 2)
    kinds = [kind for kind, _, _ in consumer.calls]
    assert kinds[:3] == ["poll", "poll", "pause"], kinds  # the prefetch took the partial batch


class RejoiningCoordinator:
    """A group coordinator that was lost: finding it again takes a while, during which the
    member re-joins the group under a new member id (as after a broker restart)."""

    def __init__(self) -> None:
        self.generation = 3
        self.member_id = "member-a"

    async def ensure_coordinator_known(self) -> None:
        await asyncio.sleep(0)
        self.generation, self.member_id = 1, "member-b"


class LostCoordinator(FakeConsumer):
    def __init__(self, *batches: Batch) -> None:
        super().__init__(*batches)
        self._coordinator = RejoiningCoordinator()


async def test_a_batch_is_not_committed_under_a_membership_it_was_not_fetched_under() -> None:
    """aiokafka would wait for the coordinator inside its commit, then send the offsets under
    the new membership: after a restart of the memory-only broker that stored the old log's
    offsets in the new one, and the new log's first records were skipped."""
    consumer = LostCoordinator(two_partitions())
    publisher = FakePublisher()
    runner = make_runner(consumer, publisher, store_factory(FakeStore()))
    await run_until(runner, lambda: bool(publisher.published))
    await asyncio.sleep(0.01)  # where the commit would follow
    assert consumer.committed == []
    assert len(publisher.published[0]) == 4  # answered all the same
