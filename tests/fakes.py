"""Fakes of our own ports, with observable state (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import orjson

from consumer.domain import (
    TASK_ID_MAX,
    ChangeCommand,
    ChangeKind,
    ChangeOutcome,
    ChangeStatus,
    Completion,
    EndCommand,
    EventIdentity,
    IdSpaceExhaustedError,
    RecordedChange,
    Rejection,
    StartCommand,
    StorageUnavailableError,
    Task,
    UnstorableEventError,
)
from consumer.ports import (
    MembershipLostError,
    OutRecord,
    Partition,
    Polled,
    RevokeHook,
    Undelivered,
    UnparseableRecord,
)


class FakeStore:
    """What a database would hold; shared by every unit of work the factory makes."""

    def __init__(self, next_id: int = 1) -> None:
        self.next_id = next_id
        self.tasks: dict[EventIdentity, Task] = {}
        self.rejections: dict[EventIdentity, Rejection] = {}
        self.unstorable: set[EventIdentity] = set()
        self.changes: dict[EventIdentity, RecordedChange] = {}
        self.commits = 0

    def by_id(self, task_id: int) -> tuple[EventIdentity, Task] | None:
        for identity, task in self.tasks.items():
            if task.task_id == task_id:
                return identity, task
        return None


class FakeRepository:
    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self.pending: dict[EventIdentity, Task] = {}
        self.pending_rejections: dict[EventIdentity, Rejection] = {}
        self.next_id = store.next_id

    async def add_or_get(
        self, commands: Sequence[StartCommand]
    ) -> dict[EventIdentity, tuple[Task, bool]]:
        found: dict[EventIdentity, tuple[Task, bool]] = {}
        for c in commands:
            if c.identity in self._store.unstorable:
                raise UnstorableEventError(f"cannot store {c.identity.id}")
            known = self._store.tasks.get(c.identity) or self.pending.get(c.identity)
            if known is not None:
                found[c.identity] = (known, False)
                continue
            if self.next_id > TASK_ID_MAX:
                raise IdSpaceExhaustedError("sequence exhausted")
            fields = dict(c.fields)
            fields.setdefault("timestamp", datetime.now(UTC))
            task = Task(
                task_id=self.next_id,
                service_id=c.service_id,
                fields=fields,
                attached_data_json=orjson.dumps(c.attached_data).decode(),
                identity=c.identity,
                received_at=datetime.now(UTC),
                position=c.position,
            )
            self.next_id += 1
            self.pending[c.identity] = task
            found[c.identity] = (task, True)
        return found

    async def get_by_identity(
        self, identities: Sequence[EventIdentity]
    ) -> dict[EventIdentity, Task]:
        return {i: self._store.tasks[i] for i in identities if i in self._store.tasks}

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        for r in rejections:
            self.pending_rejections.setdefault(r.identity, r)

    async def apply_changes(self, commands: Sequence[ChangeCommand]) -> list[ChangeOutcome]:
        """The repository's rules, in memory: recorded identities answer again, unknown tasks
        (other service or tenant) are not found, the first completion stands."""
        outcomes = []
        for c in commands:
            if c.identity in self._store.unstorable:
                raise UnstorableEventError(f"cannot store {c.identity.id}")
            outcomes.append(self._apply(c))
        return outcomes

    def _apply(self, c: ChangeCommand) -> ChangeOutcome:
        store = self._store
        recorded = store.changes.get(c.identity)
        found = store.by_id(c.task_id)
        if recorded is not None and found is not None:
            return ChangeOutcome(c.identity, ChangeStatus.REPLAYED, found[1], recorded)
        if found is None or found[1].service_id != c.service_id or found[1].tenant != c.tenant:
            return ChangeOutcome(c.identity, ChangeStatus.NOT_FOUND)
        key, task = found
        if isinstance(c, EndCommand):
            if task.completion is not None:
                return ChangeOutcome(c.identity, ChangeStatus.ALREADY_COMPLETED, task)
            at = c.fields.get("timestamp", datetime.now(UTC))
            if at < task.fields["timestamp"]:
                return ChangeOutcome(c.identity, ChangeStatus.END_BEFORE_START, task)
            duration = int((at - task.fields["timestamp"]).total_seconds() * 1000)
            end_json = orjson.dumps({**c.fields, "timestamp": at.isoformat()}).decode()
            completion = Completion(
                at, duration, c.fields.get("disposition"), None, end_json, c.identity
            )
            task = task._replace(completion=completion)
            change = RecordedChange(c.identity, task.task_id, ChangeKind.END, None, None)
        else:
            attached = orjson.loads(task.attached_data_json) | {c.name: c.value}
            task = task._replace(attached_data_json=orjson.dumps(attached).decode())
            value = orjson.dumps(c.value).decode()
            change = RecordedChange(c.identity, task.task_id, ChangeKind.EXTENSION, c.name, value)
        store.tasks[key] = task  # changes are committed with the fake at once
        store.changes[c.identity] = change
        return ChangeOutcome(c.identity, ChangeStatus.APPLIED, task, change)


class FakeUnitOfWork:
    def __init__(self, store: FakeStore) -> None:
        self._store = store
        self.tasks = FakeRepository(store)

    async def __aenter__(self) -> Self:
        self.tasks = FakeRepository(self._store)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.rollback()

    async def commit(self) -> None:
        self._store.tasks.update(self.tasks.pending)
        for identity, rejection in self.tasks.pending_rejections.items():
            self._store.rejections.setdefault(identity, rejection)
        self._store.next_id = self.tasks.next_id
        self._store.commits += 1
        self.tasks = FakeRepository(self._store)

    async def rollback(self) -> None:
        # Like a sequence, ids handed out in a rolled-back transaction stay used.
        self._store.next_id = self.tasks.next_id
        self.tasks = FakeRepository(self._store)


# --- the consume loop's ports (tests/unit/test_runner.py) --------------------------------------


@dataclass(frozen=True)
class FakeRecord:
    """A consumed record (the ConsumedRecord port)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


Batch = dict[Partition, list[FakeRecord | UnparseableRecord]]


class FakeMember:
    """A consumer-group member (the GroupMember port): hands out queued batches, records every
    commit in `committed`, raises `commit_failures` in turn first.

    A membership is (generation, rebalances begun); `rebalance()` does what a rebalance does to
    a member: awaits the loop's revoke hook under the old membership, then starts a new one
    (`rejoin()` starts one beside the loop and counts it in `rejoins`).
    Assigned the partitions of its batches; `pause`/`resume` keep `paused()`.
    """

    def __init__(self, *batches: Batch, commit_failures: Sequence[Exception] = ()) -> None:
        self.batches = list(batches)
        self.committed: list[dict[Partition, int]] = []
        self.commit_attempts = 0
        self.commit_failures = list(commit_failures)
        self.polls = 0
        self.fetch_waits: list[int] = []
        self.generation = 1
        self.rebalances = 0
        self.rejoins = 0
        self._hook: RevokeHook | None = None
        self._rejoining: asyncio.Task[None] | None = None
        self._assigned = {tp for batch in batches for tp in batch}
        self._paused: set[Partition] = set()

    def on_revoke(self, hook: RevokeHook) -> None:
        self._hook = hook

    @property
    def membership(self) -> tuple[int, int]:
        return (self.generation, self.rebalances)

    async def rebalance(self) -> None:
        if self._hook is not None:
            await self._hook()
        self.rebalances += 1
        self.generation += 1

    async def poll(self, timeout_ms: int, max_records: int) -> Polled:
        self.polls += 1
        if self.batches:
            return Polled(self.batches.pop(0), self.membership)
        await asyncio.sleep(min(timeout_ms, 5) / 1000)  # an idle poll, kept short for fast tests
        return Polled({}, self.membership)

    def is_current(self, membership: Hashable) -> bool:
        return membership == self.membership

    async def commit(self, offsets: Mapping[Partition, int], membership: Hashable) -> None:
        self.commit_attempts += 1
        await asyncio.sleep(0)  # a round trip: anything else may run meanwhile
        if self.commit_failures:
            raise self.commit_failures.pop(0)
        if membership != self.membership:
            raise MembershipLostError(f"{membership} is not {self.membership}")
        self.committed.append(dict(offsets))

    def rejoin(self) -> None:
        """A rebalance beside the loop, as aiokafka's coordination task runs one."""
        self.rejoins += 1
        self._rejoining = asyncio.create_task(self.rebalance())

    def set_fetch_wait(self, wait_ms: int) -> None:
        self.fetch_waits.append(wait_ms)

    def assignment(self) -> set[Partition]:
        return set(self._assigned)

    def pause(self, *partitions: Partition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: Partition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[Partition]:
        return set(self._paused)


class FakePublisher:
    """Publishes into `published` (one list per successful call) after raising `failures` in turn;
    a record `refuse` names a problem for is refused for good (returned, not published).

    `on_attempt` is called at the start of every call, failed or not, so a test can look at the
    rest of the world (say the member's commits) at that moment.
    """

    def __init__(
        self,
        failures: Sequence[Exception] = (),
        on_attempt: Callable[[], None] | None = None,
        refuse: Callable[[OutRecord], str | None] = lambda _: None,
    ) -> None:
        self.failures = list(failures)
        self.on_attempt = on_attempt
        self.refuse = refuse
        self.attempts = 0
        self.published: list[list[OutRecord]] = []
        self.refused: list[Undelivered] = []

    async def publish(self, records: Sequence[OutRecord]) -> list[Undelivered]:
        self.attempts += 1
        if self.on_attempt is not None:
            self.on_attempt()
        if self.failures:
            raise self.failures.pop(0)
        refused = [
            Undelivered(r, problem) for r in records if (problem := self.refuse(r)) is not None
        ]
        self.refused += refused
        gone = {id(u.record) for u in refused}
        self.published.append([r for r in records if id(r) not in gone])
        return refused


class UnreachableUnitOfWork(FakeUnitOfWork):
    """A unit of work whose database cannot be reached: entering it fails, as a refused connect."""

    async def __aenter__(self) -> Self:
        raise StorageUnavailableError("fake database is down")


class FlakyDatabase:
    """A unit-of-work factory over `store` that is unreachable for its first `outages` calls."""

    def __init__(self, store: FakeStore, outages: int) -> None:
        self.store = store
        self.outages = outages
        self.calls = 0

    def __call__(self) -> FakeUnitOfWork:
        self.calls += 1
        if self.outages > 0:
            self.outages -= 1
            return UnreachableUnitOfWork(self.store)
        return FakeUnitOfWork(self.store)
