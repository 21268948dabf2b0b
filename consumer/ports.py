"""What the service layer needs from the outside world, as Protocols (adapters implement them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from consumer.domain import EventIdentity, Rejection, StartCommand, Task


class TaskRepository(Protocol):
    """Persistence of tasks and rejections, batched."""

    async def add_or_get(
        self, commands: Sequence[StartCommand]
    ) -> dict[EventIdentity, tuple[Task, bool]]:
        """Insert tasks for new identities (ids in command order); return every identity's task.

        The bool is True when this call created the task. Identities already stored take no id.
        Raises IdSpaceExhaustedError, UnstorableEventError or StorageUnavailableError.
        """
        ...

    async def get_by_identity(
        self, identities: Sequence[EventIdentity]
    ) -> dict[EventIdentity, Task]:
        """The stored tasks among these identities."""
        ...

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """Record refused events (one row per identity; recording again is a no-op)."""
        ...


class UnitOfWork(Protocol):
    """One database transaction; rolls back on exit unless `commit()` was called."""

    @property
    def tasks(self) -> TaskRepository:
        """The repository bound to this transaction."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
