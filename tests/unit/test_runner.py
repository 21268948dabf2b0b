"""The consume loop over fakes of its ports: retry, commit after replies, offset + 1, and the
commit rules (under the fetched membership, retried while it holds, dropped once it is gone or
has failed for a whole session timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence

import orjson
import pytest

from consumer.bootstrap import GC_OBJECTS_PER_RECORD, GC_YOUNG_MAX, GC_YOUNG_MIN, gc_threshold
from consumer.domain import StartCommand
from consumer.health import Health
from consumer.kafka import commits
from consumer.kafka import settle as settle_module
from consumer.kafka.runner import Runner
from consumer.ports import (
    MembershipLostError,
    MemberStuckError,
    OutRecord,
    Partition,
    Undelivered,
    UnitOfWorkFactory,
    UnparseableRecord,
)
from consumer.telemetry import Telemetry
from schemas import wire
from schemas.errors import BrokerUnavailableError
from tests.fakes import (
    Batch,
    FakeMember,
    FakePublisher,
    FakeRecord,
    FakeStore,
    FakeUnitOfWork,
    FlakyDatabase,
)
from tests.servers import StackSettings

REQUESTS = "requests"
P0 = (REQUESTS, 0)
P1 = (REQUESTS, 1)
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
    return [
        orjson.loads(r.value or b"")
        for call in publisher.published
        for r in call
        if r.topic != "dlq"
    ]


def make_runner(
    member: FakeMember,
    publisher: FakePublisher,
    uow_factory: UnitOfWorkFactory,
    settings: StackSettings = SETTINGS,
    revoke_wait_s: float = 5.0,
) -> Runner:
    return Runner(member, publisher, uow_factory, settings, revoke_wait_s=revoke_wait_s)


async def test_a_batch_is_committed_once_at_offset_plus_one_per_partition_after_its_replies() -> (
    None
):
    member = FakeMember(two_partitions())
    seen_at_publish: list[int] = []
    publisher = FakePublisher(on_attempt=lambda: seen_at_publish.append(len(member.committed)))
    store = FakeStore()
    runner = make_runner(member, publisher, store_factory(store))

    await run_until(runner, lambda: bool(member.committed))

    assert member.committed == [{P0: 8, P1: 11}]
    assert seen_at_publish == [0]
    assert len(store.tasks) == 4
    assert [r["kind"] for r in replies_in(publisher)] == ["task.created"] * 4
    assert runner.processed == 4


async def test_partitions_are_decided_in_concurrent_lanes_then_answered_and_committed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(settle_module, "LANE_MIN_RECORDS", 2)  # 4 records: two lanes
    member = FakeMember(two_partitions())
    store = FakeStore()
    seen_at_publish: list[tuple[int, int]] = []
    publisher = FakePublisher(
        on_attempt=lambda: seen_at_publish.append((store.commits, len(member.committed)))
    )
    runner = make_runner(member, publisher, store_factory(store), SETTINGS.with_(consumer_lanes=2))

    await run_until(runner, lambda: bool(member.committed))

    assert seen_at_publish == [(2, 0)]  # both lanes' transactions, then one publish, then commit
    assert [len(call) for call in publisher.published] == [4]
    assert member.committed == [{P0: 8, P1: 11}]
    assert len(store.tasks) == 4


async def test_a_batch_smaller_than_two_lanes_worth_settles_in_one() -> None:
    """A lane costs a transaction and a publish: the small batches of a steady flow take one."""
    member = FakeMember(two_partitions())
    publisher = FakePublisher()
    runner = make_runner(
        member, publisher, store_factory(FakeStore()), SETTINGS.with_(consumer_lanes=2)
    )
    await run_until(runner, lambda: bool(member.committed))
    assert len(publisher.published) == 1
    assert len(publisher.published[0]) == 4


async def test_retriable_publish_failures_are_retried_and_nothing_is_committed_until_success() -> (
    None
):
    member = FakeMember(two_partitions())
    failures = [BrokerUnavailableError("not enough replicas", retriable=True) for _ in range(3)]
    commits_at_attempt: list[int] = []
    publisher = FakePublisher(
        failures, on_attempt=lambda: commits_at_attempt.append(len(member.committed))
    )
    store = FakeStore()
    runner = make_runner(member, publisher, store_factory(store))

    await run_until(runner, lambda: bool(member.committed))

    assert publisher.attempts == 4
    assert commits_at_attempt == [0, 0, 0, 0]
    assert member.committed == [{P0: 8, P1: 11}]
    assert len(publisher.published) == 1
    # The batch was decided once; each retry published the same answers again.
    assert store.commits == 1
    assert len(store.tasks) == 4
    task_ids = sorted(int(str(r["task_id"])) for r in replies_in(publisher))
    assert task_ids == sorted(t.task_id for t in store.tasks.values())


async def test_a_non_retriable_publish_failure_propagates_and_commits_nothing() -> None:
    member = FakeMember(two_partitions())
    publisher = FakePublisher([BrokerUnavailableError("producer closed", retriable=False)])
    runner = make_runner(member, publisher, store_factory(FakeStore()))

    with pytest.raises(BrokerUnavailableError, match="producer closed"):
        async with asyncio.timeout(5):
            await runner.run(asyncio.Event())

    assert publisher.attempts == 1
    assert member.committed == []


async def test_an_unreachable_database_is_retried_without_publishing_or_committing() -> None:
    member = FakeMember(two_partitions())
    publisher = FakePublisher()
    store = FakeStore()
    database = FlakyDatabase(store, outages=3)
    runner = make_runner(member, publisher, database)

    await run_until(runner, lambda: bool(member.committed))

    assert database.calls == 4
    assert publisher.attempts == 1
    assert member.committed == [{P0: 8, P1: 11}]
    assert len(store.tasks) == 4


async def test_stopping_while_retrying_abandons_the_batch_uncommitted_for_redelivery() -> None:
    member = FakeMember(two_partitions())
    publisher = FakePublisher(
        [BrokerUnavailableError("broker down", retriable=True) for _ in range(1000)]
    )
    runner = make_runner(member, publisher, store_factory(FakeStore()))

    await run_until(runner, lambda: publisher.attempts >= 3)

    assert member.committed == []
    assert publisher.published == []
    assert runner.processed == 0


async def test_every_record_of_a_mixed_batch_is_answered_before_the_batch_is_committed() -> None:
    garbage = FakeRecord(REQUESTS, 1, 11, b"k", b"\xff not an event", (("x-h", b"v"),))
    batch: Batch = {P0: [event(0, 0), event(0, 1, body=b'{"state_id": "x"}')], P1: [garbage]}
    member = FakeMember(batch)
    publisher = FakePublisher()
    store = FakeStore()
    runner = make_runner(member, publisher, store_factory(store))

    await run_until(runner, lambda: bool(member.committed))

    (records,) = publisher.published
    assert [r.topic for r in records] == ["created", "rejected", "dlq"]
    assert (records[2].key, records[2].value) == (b"k", b"\xff not an event")
    assert member.committed == [{P0: 2, P1: 12}]
    assert len(store.rejections) == 1


async def test_consecutive_batches_are_committed_in_order_each_after_its_own_replies() -> None:
    member = FakeMember({P0: [event(0, 0)]}, {P0: [event(0, 1)], P1: [event(1, 0)]})
    publisher = FakePublisher()
    runner = make_runner(member, publisher, store_factory(FakeStore()))

    await run_until(runner, lambda: len(member.committed) == 2)

    assert member.committed == [{P0: 1}, {P0: 2, P1: 1}]
    assert [len(call) for call in publisher.published] == [1, 2]


class HeldPublisher(FakePublisher):
    """Holds its first publish until `release` is set, noting what the store had decided then."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self.release = asyncio.Event()
        self.decided_while_held = 0

    async def publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        if not self.release.is_set():
            await asyncio.sleep(0.05)  # the loop's other work, if any, goes on meanwhile
            self.decided_while_held = self.store.commits
            self.release.set()
        return await super().publish(records)


async def test_on_a_backlog_the_next_batch_is_decided_while_one_is_answered_commits_in_order() -> (
    None
):
    """Full batches overlap: the second batch's transaction runs while the first one's replies
    are being published; it is answered and committed only after the first one is committed."""
    member = FakeMember({P0: [event(0, 0)]}, {P1: [event(1, 0)]}, {P0: [event(0, 1)]})
    store = FakeStore()
    publisher = HeldPublisher(store)
    published_after: list[int] = []
    publisher.on_attempt = lambda: published_after.append(len(member.committed))
    settings = SETTINGS.with_(batch_max_records=1)  # every batch full: the next is prefetched
    runner = make_runner(member, publisher, store_factory(store), settings)

    await run_until(runner, lambda: len(member.committed) == 3)

    assert publisher.decided_while_held == 2, "the second batch waited for the first's publish"
    assert published_after == [0, 1, 2]  # each batch answered after the one before committed
    assert member.committed == [{P0: 1}, {P1: 1}, {P0: 2}]
    assert [len(call) for call in publisher.published] == [1, 1, 1]


async def test_an_answer_failing_for_good_ends_the_run_and_later_batches_stay_uncommitted() -> None:
    member = FakeMember({P0: [event(0, 0)]}, {P1: [event(1, 0)]})
    publisher = FakePublisher([BrokerUnavailableError("producer closed", retriable=False)])
    settings = SETTINGS.with_(batch_max_records=1)
    runner = make_runner(member, publisher, store_factory(FakeStore()), settings)

    with pytest.raises(BrokerUnavailableError, match="producer closed"):
        async with asyncio.timeout(5):
            await runner.run(asyncio.Event())

    assert member.committed == []
    assert publisher.published == []


async def test_while_a_publish_waits_for_the_broker_the_next_transaction_leaves_it_down() -> None:
    """The readiness check names what is failing: a batch's transaction going through while
    the batch ahead of it retries its publish says nothing about the broker."""
    health = Health(running=True, member=True)
    member = FakeMember({P0: [event(0, 0)]}, {P1: [event(1, 0)]})
    store = FakeStore()
    broker_down_at_attempt: list[tuple[int, bool]] = []
    failures = [BrokerUnavailableError("broker away", retriable=True) for _ in range(3)]
    publisher = FakePublisher(
        failures,
        on_attempt=lambda: broker_down_at_attempt.append((store.commits, "kafka" in health.down)),
    )
    settings = SETTINGS.with_(
        batch_max_records=1, retry_backoff_initial_ms=20, retry_backoff_max_ms=40
    )
    runner = Runner(
        member, publisher, store_factory(store), settings, telemetry=Telemetry(health=health)
    )

    await run_until(runner, lambda: len(member.committed) == 2)

    # First attempt: nothing failed yet. Then the second batch was decided (2 transactions)
    # while the first one's publish backed off, and the broker stayed down until it answered.
    assert broker_down_at_attempt[:4] == [(1, False), (2, True), (2, True), (2, True)]
    assert health.down == {}


async def test_a_batch_left_unanswered_at_a_stop_is_never_covered_by_a_later_batch_commit() -> None:
    """Stopping while the broker is away abandons a batch's answer; the batch decided behind it
    on the same partition must not be answered and committed, or that commit would cover the
    abandoned batch's records, never answered."""
    member = FakeMember({P0: [event(0, 0)]}, {P0: [event(0, 1)]})
    stopping = asyncio.Event()
    publisher = FakePublisher(
        [BrokerUnavailableError("broker away", retriable=True)], on_attempt=stopping.set
    )
    settings = SETTINGS.with_(batch_max_records=1)  # full batches: the second is prefetched
    runner = make_runner(member, publisher, store_factory(FakeStore()), settings)

    async with asyncio.timeout(5):
        await runner.run(stopping)

    assert member.committed == []
    assert publisher.published == []


async def test_the_fetch_wait_is_short_while_records_come_and_long_once_a_poll_finds_none() -> None:
    member = FakeMember({P0: [event(0, 0)]})
    settings = SETTINGS.with_(fetch_busy_wait_ms=10, fetch_max_wait_ms=50)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len(member.fetch_waits) >= 2)
    assert member.fetch_waits[:2] == [10, 50]


# --- the commit rules ------------------------------------------------------------------------


class RebalancingPublisher(FakePublisher):
    """Publishes after a pause, as a broker round trip does; its first publish starts a
    rebalance of `member` beside the loop (as aiokafka's coordinator would)."""

    def __init__(self, member: FakeMember, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]  # FakePublisher's own options
        self.member = member
        self.rebalance: asyncio.Task[None] | None = None

    async def publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        if self.rebalance is None:
            self.rebalance = asyncio.create_task(self.member.rebalance())
        await asyncio.sleep(0.01)
        return await super().publish(records)


async def test_a_rebalance_waits_for_the_batch_in_flight_to_commit_under_the_old_membership() -> (
    None
):
    member = FakeMember(two_partitions())
    publisher = RebalancingPublisher(member)
    runner = make_runner(member, publisher, store_factory(FakeStore()))
    await run_until(runner, lambda: member.rebalances == 1)
    assert member.committed == [{P0: 8, P1: 11}]


async def test_a_batch_fetched_before_a_rebalance_began_is_dropped_unanswered_and_uncommitted() -> (
    None
):
    """Prefetched under the old membership, it is not settled once a rebalance began: the new
    assignment takes its positions from the group's committed offsets, so its records come
    again (here: queued again), and are answered and committed under the new membership."""
    first, prefetched = {P0: [event(0, 0)]}, {P0: [event(0, 1)]}
    member = FakeMember(first, prefetched)
    publisher = RebalancingPublisher(member)
    settings = SETTINGS.with_(batch_max_records=1)  # full batches: the next one is prefetched
    runner = make_runner(member, publisher, store_factory(FakeStore()), settings)
    stopping = asyncio.Event()
    loop = asyncio.create_task(runner.run(stopping))
    async with asyncio.timeout(5):
        while member.rebalances == 0 or member.batches:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.05)  # where the prefetched batch would be settled
        assert [len(call) for call in publisher.published] == [1]
        assert member.committed == [{P0: 1}]
        member.batches.append(prefetched)  # fetched again from the committed offset
        while len(member.committed) < 2:
            await asyncio.sleep(0.001)
    stopping.set()
    await asyncio.wait_for(loop, 5)
    assert member.committed == [{P0: 1}, {P0: 2}]
    assert [len(call) for call in publisher.published] == [1, 1]


async def test_a_batch_that_outlasts_the_revoke_wait_is_answered_but_not_committed() -> None:
    member = FakeMember(two_partitions())
    publisher = RebalancingPublisher(member)
    runner = make_runner(member, publisher, store_factory(FakeStore()), revoke_wait_s=0.001)
    await run_until(runner, lambda: bool(publisher.published) and member.commit_attempts == 0)
    await asyncio.sleep(0.01)
    assert member.rebalances == 1
    assert member.committed == []
    assert member.commit_attempts == 0, "a commit under a membership known to be gone was sent"


async def test_a_commit_failing_for_a_retriable_reason_is_retried_under_the_same_membership() -> (
    None
):
    failures = [BrokerUnavailableError("coordinator moved", retriable=True) for _ in range(2)]
    member = FakeMember(two_partitions(), commit_failures=failures)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()))
    await run_until(runner, lambda: bool(member.committed))
    assert member.commit_attempts == 3
    assert member.committed == [{P0: 8, P1: 11}]
    assert member.rebalances == 0


async def test_a_commit_refused_because_the_group_moved_on_is_dropped_not_retried() -> None:
    member = FakeMember(two_partitions(), {P0: [event(0, 8)]}, commit_failures=[
        MembershipLostError("unknown member")])  # fmt: skip
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()))
    await run_until(runner, lambda: member.commit_attempts == 2)
    assert member.committed == [{P0: 9}]


async def test_a_stop_during_a_batch_still_commits_it_even_after_a_failed_commit_attempt() -> None:
    stopping = asyncio.Event()
    failures = [BrokerUnavailableError("request timed out", retriable=True)]
    member = FakeMember(two_partitions(), commit_failures=failures)
    publisher = FakePublisher(on_attempt=stopping.set)  # SIGTERM while the replies go out
    runner = make_runner(member, publisher, store_factory(FakeStore()))
    async with asyncio.timeout(5):
        await runner.run(stopping)
    assert member.committed == [{P0: 8, P1: 11}]
    assert member.commit_attempts == 2


class ForgottenGroup(FakeMember):
    """A coordinator restarted without its group state, as the memory-only broker restarts: the
    client still holds its membership, and no commit under it is ever answered (or each is
    refused as transient, `failure`) until the member joins the group again."""

    def __init__(self, *batches: Batch, failure: Exception | None = None) -> None:
        super().__init__(*batches)
        self.failure = failure

    async def commit(self, offsets: Mapping[Partition, int], membership: Hashable) -> None:
        if self.rejoins == 0:
            self.commit_attempts += 1
            if self.failure is not None:
                await asyncio.sleep(0.005)
                raise self.failure
            await asyncio.Event().wait()  # no answer: the attempt times out
        await super().commit(offsets, membership)


@pytest.mark.parametrize(
    "failure",
    [None, BrokerUnavailableError("coordinator not available", retriable=True)],
    ids=["no-answer", "transient-error"],
)
async def test_a_commit_failing_for_a_whole_session_is_dropped_and_the_group_joined_again(
    failure: Exception | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Retried for ever, the loop (which commits a batch before it settles the next) would
    answer nothing more; a broker restart did that. Dropped after the session timeout, the
    member rejoins, its positions go back to the committed offsets, and the batch comes again:
    answered again and committed under the new membership."""
    monkeypatch.setattr(commits, "ATTEMPT_S", 0.02)
    batch = two_partitions()
    member = ForgottenGroup(batch, failure=failure)
    publisher = FakePublisher()
    telemetry = Telemetry()
    settings = SETTINGS.with_(consumer_session_timeout_ms=200, consumer_heartbeat_interval_ms=50)
    runner = Runner(member, publisher, store_factory(FakeStore()), settings, telemetry=telemetry)
    stopping = asyncio.Event()
    started = asyncio.get_running_loop().time()
    loop = asyncio.create_task(runner.run(stopping))
    async with asyncio.timeout(5):
        while member.rebalances == 0:
            await asyncio.sleep(0.001)
        given_up_after = asyncio.get_running_loop().time() - started
        member.batches.append(batch)  # fetched again from the committed offset
        while not member.committed:
            await asyncio.sleep(0.001)
    stopping.set()
    await asyncio.wait_for(loop, 5)

    assert given_up_after >= 0.2, "dropped before a whole session timeout of failures"
    assert member.commit_attempts >= 2, "not retried before it was dropped"
    assert member.rejoins == 1
    assert member.committed == [{P0: 8, P1: 11}]
    assert [len(call) for call in publisher.published] == [4, 4], "answered, then again"
    commit_results = telemetry.metrics.registry.get_sample_value
    assert commit_results("ucs_consumer_commits_total", {"result": "failed"}) == 1
    assert commit_results("ucs_consumer_commits_total", {"result": "committed"}) == 1
    assert "dropped, and the group joined again" in caplog.text


class DeafGroup(ForgottenGroup):
    """A client whose group coordination stopped: no commit is ever answered, and a rejoin is
    counted but changes nothing (no rebalance, the same membership)."""

    def rejoin(self) -> None:
        self.rejoins += 1

    async def commit(self, offsets: Mapping[Partition, int], membership: Hashable) -> None:
        self.commit_attempts += 1
        await asyncio.Event().wait()


async def test_commits_stuck_again_under_the_membership_a_rejoin_was_asked_under_end_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rejoin that changed nothing cannot be helped from inside the client: the loop ends
    with MemberStuckError (the composition root builds a new client), after one rejoin and
    neither batch committed."""
    monkeypatch.setattr(commits, "ATTEMPT_S", 0.02)
    member = DeafGroup(two_partitions(), {P0: [event(0, 8)], P1: [event(1, 11)]})
    telemetry = Telemetry()
    settings = SETTINGS.with_(consumer_session_timeout_ms=100, consumer_heartbeat_interval_ms=30)
    runner = Runner(
        member, FakePublisher(), store_factory(FakeStore()), settings, telemetry=telemetry
    )
    with pytest.raises(MemberStuckError, match="a rejoin was asked under"):
        async with asyncio.timeout(5):
            await runner.run(asyncio.Event())
    assert member.rejoins == 1
    assert member.committed == []
    assert member.batches == [], "the second batch was not the one that ended the run"
    commit_results = telemetry.metrics.registry.get_sample_value
    assert commit_results("ucs_consumer_commits_total", {"result": "failed"}) == 2


async def test_a_rejoin_that_worked_leaves_the_next_stuck_commit_to_another_rejoin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a rejoin, a batch under the new membership that gets stuck is the first of its
    kind: a rejoin again, not the end of the client."""
    monkeypatch.setattr(commits, "ATTEMPT_S", 0.02)

    class Forgetful(DeafGroup):
        def rejoin(self) -> None:
            FakeMember.rejoin(self)  # a rebalance: the membership changes

    member = Forgetful(two_partitions())
    settings = SETTINGS.with_(consumer_session_timeout_ms=100, consumer_heartbeat_interval_ms=30)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    stopping = asyncio.Event()
    loop = asyncio.create_task(runner.run(stopping))
    async with asyncio.timeout(5):
        while member.rebalances < 1:
            await asyncio.sleep(0.001)
        member.batches.append(two_partitions())  # fetched again, under the new membership
        while member.rebalances < 2:
            await asyncio.sleep(0.001)
    stopping.set()
    await asyncio.wait_for(loop, 5)  # no MemberStuckError
    assert member.rejoins == 2


async def test_a_commit_failing_for_less_than_a_session_is_retried_without_a_rejoin() -> None:
    failures = [BrokerUnavailableError("request timed out", retriable=True) for _ in range(5)]
    member = FakeMember(two_partitions(), commit_failures=failures)
    settings = SETTINGS.with_(consumer_session_timeout_ms=2000, consumer_heartbeat_interval_ms=500)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: bool(member.committed))
    assert member.commit_attempts == 6
    assert (member.rejoins, member.rebalances) == (0, 0)
    assert member.committed == [{P0: 8, P1: 11}]


# --- pausing and prefetching -----------------------------------------------------------------


class Recording(FakeMember):
    """Logs every pause, resume and poll in `calls`, each poll with what was paused then."""

    def __init__(self, *batches: Batch) -> None:
        super().__init__(*batches)
        self.calls: list[tuple[str, float, int]] = []

    def pause(self, *partitions: tuple[str, int]) -> None:
        super().pause(*partitions)
        self.calls.append(("pause", asyncio.get_running_loop().time(), len(partitions)))

    def resume(self, *partitions: tuple[str, int]) -> None:
        super().resume(*partitions)
        self.calls.append(("resume", asyncio.get_running_loop().time(), len(partitions)))

    async def poll(self, timeout_ms: int, max_records: int) -> object:  # type: ignore[override]  # the same Polled
        self.calls.append(("poll", asyncio.get_running_loop().time(), len(self.paused())))
        return await super().poll(timeout_ms, max_records)


async def test_after_a_partial_batch_fetching_pauses_until_it_settled_and_its_linger_passed() -> (
    None
):
    """A fetch made while a small batch settles would bring back the few records there at that
    moment; paused, the next poll gathers everything that came during the batch's linger."""
    member = Recording(two_partitions())
    settings = SETTINGS.with_(batch_max_records=100, batch_linger_ms=30)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len([c for c in member.calls if c[0] == "poll"]) >= 2)
    kinds = [kind for kind, _, _ in member.calls]
    assert kinds[:4] == ["poll", "pause", "resume", "poll"], kinds
    assert member.calls[1][2] == 2, "both partitions of the assignment paused"
    assert all(paused == 0 for kind, _, paused in member.calls if kind == "poll")
    assert member.calls[3][1] - member.calls[0][1] >= 0.03 * 0.9, "polled before the linger"
    assert member.committed == [{P0: 8, P1: 11}]


class TurnRecording(Recording):
    """Also logs the event loop's next turn after a poll that returned records, with what was
    paused then: where aiokafka's fetcher, woken by the drained records, sends its next fetch
    for every partition not paused."""

    async def poll(self, timeout_ms: int, max_records: int) -> object:  # type: ignore[override]  # the same Polled
        polled = await super().poll(timeout_ms, max_records)
        if polled.records:  # type: ignore[attr-defined]  # a Polled
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: self.calls.append(("turn", loop.time(), len(self.paused()))))
        return polled


async def test_a_partial_batch_pauses_its_partitions_before_the_fetcher_can_fetch_again() -> None:
    """Paused only later (after a first slice of translation yields), the fetcher's next fetch
    goes out meanwhile and its few records, held until the broker's next look, become a batch
    of their own: one or two records decided, published and committed while the rest wait."""
    member = TurnRecording(two_partitions(), {P0: [event(0, 8)]})
    settings = SETTINGS.with_(batch_max_records=100, batch_linger_ms=0)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len(member.committed) == 2)
    turns = [(kind, paused) for kind, _, paused in member.calls if kind in ("poll", "turn")]
    assert turns[:4] == [("poll", 0), ("turn", 2), ("poll", 0), ("turn", 2)], member.calls
    assert member.committed == [{P0: 8, P1: 11}, {P0: 9}]


async def test_after_a_full_batch_the_next_one_is_fetched_while_it_settles() -> None:
    member = Recording(two_partitions(), {P0: [event(0, 8)]})
    settings = SETTINGS.with_(batch_max_records=4, batch_linger_ms=100)
    runner = make_runner(member, FakePublisher(), store_factory(FakeStore()), settings)
    await run_until(runner, lambda: len(member.committed) == 2)
    kinds = [kind for kind, _, _ in member.calls]
    assert kinds[:3] == ["poll", "poll", "pause"], kinds  # the prefetch took the partial batch


# --- records that cannot be answered as they are -----------------------------------------------


async def test_a_record_the_client_cannot_parse_is_dead_lettered_and_the_partition_moves_on() -> (
    None
):
    poison = UnparseableRecord(REQUESTS, 0, 1, b"k", b"v", ((b"\xff", b"1"),), "not UTF-8")
    member = FakeMember({P0: [event(0, 0), poison, event(0, 2)]})
    publisher = FakePublisher()
    runner = make_runner(member, publisher, store_factory(FakeStore()))
    await run_until(runner, lambda: bool(member.committed))
    (records,) = publisher.published
    assert [r.topic for r in records] == ["created", "dlq", "created"]
    assert (records[1].key, records[1].value) == (b"k", b"v")
    assert member.committed == [{P0: 3}]


async def test_a_reply_the_broker_refuses_is_replaced_by_a_dead_letter_and_the_batch_commits() -> (
    None
):
    def refuse(record: OutRecord) -> str | None:
        too_large = record.topic == "created" and b"evt-0-6" in (record.value or b"")
        return "MessageSizeTooLargeError" if too_large else None

    member = FakeMember(two_partitions())
    publisher = FakePublisher(refuse=refuse)
    runner = make_runner(member, publisher, store_factory(FakeStore()))
    await run_until(runner, lambda: bool(member.committed))
    first, instead = publisher.published
    assert len(first) == 3
    (dead,) = instead
    assert (dead.topic, dead.value) == ("dlq", event(0, 6).value)
    assert member.committed == [{P0: 8, P1: 11}]


async def test_a_dead_letter_topic_refusing_even_headers_only_holds_the_batch_uncommitted() -> None:
    member = FakeMember({P0: [FakeRecord(REQUESTS, 0, 0, b"k", b"garbage")]})
    publisher = FakePublisher(refuse=lambda r: "TopicAuthorizationFailedError")
    runner = make_runner(member, publisher, store_factory(FakeStore()))
    await run_until(runner, lambda: publisher.attempts >= 9)  # 3 rounds: letter, last resort
    assert member.committed == []
    assert runner.processed == 0


class BuggyOnOneEvent(FakeUnitOfWork):
    """A unit of work whose repository fails (a bug, not an outage) on one event id."""

    async def __aenter__(self) -> BuggyOnOneEvent:
        await super().__aenter__()
        add_or_get = self.tasks.add_or_get

        async def failing(commands: Sequence[StartCommand]) -> object:
            if any(c.identity.id == "evt-0-6" for c in commands):
                raise KeyError("a bug one record sets off")
            return await add_or_get(commands)

        self.tasks.add_or_get = failing  # type: ignore[method-assign, assignment]  # the fault
        return self


async def test_a_service_failure_on_one_record_dead_letters_it_alone_and_the_batch_commits() -> (
    None
):
    member = FakeMember(two_partitions())
    publisher = FakePublisher()
    store = FakeStore()
    runner = make_runner(member, publisher, lambda: BuggyOnOneEvent(store))
    await run_until(runner, lambda: bool(member.committed))
    records = [r for call in publisher.published for r in call]
    assert [r.topic for r in records] == ["created", "dlq", "created", "created"]
    assert b"KeyError" in dict(records[1].headers)[wire.DLQ_ERROR]
    assert len(store.tasks) == 3
    assert member.committed == [{P0: 8, P1: 11}]


def test_the_collector_waits_for_more_young_objects_than_three_batches_keep_alive() -> None:
    default = SETTINGS.consumer.batch_max_records
    assert gc_threshold(default)[0] == GC_OBJECTS_PER_RECORD * default
    assert gc_threshold(default)[0] > 294_000  # bench/consumer.py's peak at 4,000 records
    assert gc_threshold(10)[0] == GC_YOUNG_MIN  # small batches: still not every few records
    assert gc_threshold(1_000_000)[0] == GC_YOUNG_MAX  # huge ones: a bounded pile of garbage
    assert gc_threshold(default)[1:] == (20, 100)
