"""Requests waiting for their reply: correlation id -> the request's identity and a future
(no Kafka code here).

The starter registers a future *before* publishing (so no reply can arrive unexpected), with the
identity of the event it publishes, awaits it with a timeout, and discards it whatever happens;
the reply listener resolves it. A reply resolves a request only when it carries the request's
correlation id *and* answers the request's identity: a reply with a matching correlation id
that answers another event (a forged, corrupted or misrouted one) leaves the request waiting
for its own. A reply whose request already gave up finds nothing registered and is dropped:
`resolve` says so with False.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")
I = TypeVar("I", bound=Hashable)  # noqa: E741 - the identity's type, as T is the reply's


class _Waiting(NamedTuple, Generic[T, I]):  # a tuple: a third of a frozen dataclass's cost
    future: asyncio.Future[T]
    identity: I


class PendingReplies(Generic[T, I]):
    """The registry of requests awaiting a reply (of type T), keyed by correlation id, each
    with the identity (of type I) its reply must answer."""

    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting[T, I]] = {}
        self._awaited = asyncio.Event()
        """Set while at least one request waits."""

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, correlation_id: object) -> bool:
        return correlation_id in self._waiting

    def register(self, correlation_id: str, identity: I) -> asyncio.Future[T]:
        """A new future for this correlation id (which must not be pending already), to be
        resolved by a reply answering `identity`."""
        if correlation_id in self._waiting:
            raise ValueError(f"correlation id {correlation_id!r} is already pending")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = _Waiting(future, identity)
        self._awaited.set()
        return future

    def identity_of(self, correlation_id: str | None) -> I | None:
        """The identity the request waiting under this correlation id expects, if one waits."""
        waiting = self._waiting.get(correlation_id) if correlation_id is not None else None
        return None if waiting is None else waiting.identity

    async def wait_until_awaited(self) -> None:
        """Return once at least one request waits for a reply (at once if one does)."""
        await self._awaited.wait()

    def _take(self, correlation_id: str | None, answers: object) -> asyncio.Future[T] | None:
        """The waiting future, removed, if the reply answers its identity (else left waiting)."""
        if correlation_id is None:
            return None
        waiting = self._waiting.get(correlation_id)
        if waiting is None or waiting.identity != answers:
            return None
        del self._waiting[correlation_id]
        if not self._waiting:
            self._awaited.clear()
        return None if waiting.future.done() else waiting.future

    def discard(self, correlation_id: str) -> None:
        """Forget a request (idempotent); a future still unresolved is cancelled."""
        waiting = self._waiting.pop(correlation_id, None)
        if not self._waiting:
            self._awaited.clear()
        if waiting is not None and not waiting.future.done():
            waiting.future.cancel()

    @contextmanager
    def expecting(self, correlation_id: str, identity: I) -> Iterator[asyncio.Future[T]]:
        """Register a future for the duration of the block; discarded on exit, whatever happens."""
        future = self.register(correlation_id, identity)
        try:
            yield future
        finally:
            self.discard(correlation_id)

    def resolve(self, correlation_id: str | None, reply: T, answers: object) -> bool:
        """Hand a reply that answers `answers` to its waiting request; False when none waits
        (late, foreign, twice) or the one waiting expects another identity."""
        future = self._take(correlation_id, answers)
        if future is None:
            return False
        future.set_result(reply)
        return True

    def fail(self, correlation_id: str | None, error: BaseException, answers: object) -> bool:
        """Make a waiting request raise `error` (an unreadable reply answering `answers`); False
        when none waits or the one waiting expects another identity."""
        future = self._take(correlation_id, answers)
        if future is None:
            return False
        future.set_exception(error)
        return True

    def fail_all(self, error: BaseException) -> int:
        """Make every waiting request raise `error` (shutdown); how many there were."""
        waiting, self._waiting = self._waiting, {}
        self._awaited.clear()
        failed = 0
        for each in waiting.values():
            if not each.future.done():
                each.future.set_exception(error)
                failed += 1
        return failed
