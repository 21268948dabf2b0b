"""Fakes of our own ports, with observable state (no mocks)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import NamedTuple, Self

import orjson

from consumer.domain import (
    TASK_ID_MAX,
    EventIdentity,
    IdSpaceExhaustedError,
    Rejection,
    StartCommand,
    StorageUnavailableError,
    Task,
    UnstorableEventError,
)
from consumer.kafka.codec import OutRecord


class FakeStore:
    """What a database would hold; shared by every unit of work the factory makes."""

    def __init__(self, next_id: int = 1) -> None:
        self.next_id = next_id
        self.tasks: dict[EventIdentity, Task] = {}
        self.rejections: dict[EventIdentity, Rejection] = {}
        self.unstorable: set[EventIdentity] = set()
        self.commits = 0


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


# --- the consume loop's collaborators (tests/unit/test_runner.py) -------------------------------


class FakePartition(NamedTuple):
    """Stands in for aiokafka's TopicPartition: the runner only uses it as a dict key."""

    topic: str
    partition: int


@dataclass(frozen=True)
class FakeRecord:
    """A consumed record with the attributes the runner reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


Batch = dict[FakePartition, list[FakeRecord]]


class FakeConsumer:
    """A consumer-group member: hands out queued batches, records every commit in `committed`.

    Assigned the partitions of its batches; `pause`/`resume` keep `paused()` as aiokafka does.
    """

    def __init__(self, *batches: Batch) -> None:
        self.batches = list(batches)
        self.committed: list[dict[FakePartition, int]] = []
        self.polls = 0
        self._assigned = {tp for batch in batches for tp in batch}
        self._paused: set[FakePartition] = set()

    def assignment(self) -> set[FakePartition]:
        return set(self._assigned)

    def pause(self, *partitions: FakePartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: FakePartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[FakePartition]:
        return set(self._paused)

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Batch:
        self.polls += 1
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(min(timeout_ms, 5) / 1000)  # an idle poll, kept short for fast tests
        return {}

    async def commit(self, offsets: dict[FakePartition, int]) -> None:
        self.committed.append(dict(offsets))


class FakePublisher:
    """Publishes into `published` (one list per successful call) after raising `failures` in turn.

    `on_attempt` is called at the start of every call, failed or not, so a test can look at the
    rest of the world (say the consumer's commits) at that moment.
    """

    def __init__(
        self,
        failures: Sequence[Exception] = (),
        on_attempt: Callable[[], None] | None = None,
    ) -> None:
        self.failures = list(failures)
        self.on_attempt = on_attempt
        self.attempts = 0
        self.published: list[list[OutRecord]] = []

    async def publish(self, records: Sequence[OutRecord]) -> None:
        self.attempts += 1
        if self.on_attempt is not None:
            self.on_attempt()
        if self.failures:
            raise self.failures.pop(0)
        self.published.append(list(records))


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
