"""Fakes of our own ports, with observable state (no mocks)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import orjson

from consumer.domain import (
    TASK_ID_MAX,
    EventIdentity,
    IdSpaceExhaustedError,
    Rejection,
    StartCommand,
    Task,
    UnstorableEventError,
)


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
