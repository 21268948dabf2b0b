"""Requests waiting for their reply: correlation id -> asyncio.Future (no Kafka code here).

The starter registers a future *before* publishing (so no reply can arrive unexpected), awaits it
with a timeout, and discards it whatever happens; the reply listener resolves it. A reply whose
request already gave up finds nothing registered and is dropped: `resolve` says so with False.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class PendingReplies(Generic[T]):
    """The registry of requests awaiting a reply, keyed by correlation id."""

    def __init__(self) -> None:
        self._futures: dict[str, asyncio.Future[T]] = {}
        self._awaited = asyncio.Event()
        """Set while at least one request waits."""

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, correlation_id: object) -> bool:
        return correlation_id in self._futures

    def register(self, correlation_id: str) -> asyncio.Future[T]:
        """A new future for this correlation id (which must not be pending already)."""
        if correlation_id in self._futures:
            raise ValueError(f"correlation id {correlation_id!r} is already pending")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._futures[correlation_id] = future
        self._awaited.set()
        return future

    async def wait_until_awaited(self) -> None:
        """Return once at least one request waits for a reply (at once if one does)."""
        await self._awaited.wait()

    def _pop(self, correlation_id: str | None) -> asyncio.Future[T] | None:
        future = self._futures.pop(correlation_id, None) if correlation_id is not None else None
        if not self._futures:
            self._awaited.clear()
        return future

    def discard(self, correlation_id: str) -> None:
        """Forget a request (idempotent); a future still unresolved is cancelled."""
        future = self._pop(correlation_id)
        if future is not None and not future.done():
            future.cancel()

    @contextmanager
    def expecting(self, correlation_id: str) -> Iterator[asyncio.Future[T]]:
        """Register a future for the duration of the block; discarded on exit, whatever happens."""
        future = self.register(correlation_id)
        try:
            yield future
        finally:
            self.discard(correlation_id)

    def resolve(self, correlation_id: str | None, reply: T) -> bool:
        """Hand a reply to its waiting request; False when none waits (late, foreign, twice)."""
        future = self._pop(correlation_id)
        if future is None or future.done():
            return False
        future.set_result(reply)
        return True

    def fail(self, correlation_id: str | None, error: BaseException) -> bool:
        """Make a waiting request raise `error` (an unreadable reply); False when none waits."""
        future = self._pop(correlation_id)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def fail_all(self, error: BaseException) -> int:
        """Make every waiting request raise `error` (shutdown); how many there were."""
        futures, self._futures = self._futures, {}
        self._awaited.clear()
        failed = 0
        for future in futures.values():
            if not future.done():
                future.set_exception(error)
                failed += 1
        return failed
