"""The bridge's pending-replies registry: correlation id -> expected identity and future, no I/O."""

from __future__ import annotations

import asyncio

import pytest

from producer_tools.bridge.pending import PendingReplies
from schemas.replies import EventRef

A = EventRef(source="urn:test", id="a")
B = EventRef(source="urn:test", id="b")
Pending = PendingReplies[str, EventRef]


async def test_a_registered_request_receives_the_reply_with_its_correlation_id() -> None:
    pending: Pending = PendingReplies()
    first, second = pending.register("c-a", A), pending.register("c-b", B)
    assert pending.identity_of("c-a") == A
    assert pending.resolve("c-b", "reply-b", B)
    assert pending.resolve("c-a", "reply-a", A)
    assert (await first, await second) == ("reply-a", "reply-b")
    assert len(pending) == 0


async def test_a_reply_with_the_right_correlation_id_but_another_identity_resolves_nothing() -> (
    None
):
    pending: Pending = PendingReplies()
    future = pending.register("c-a", A)
    same_id_other_source = EventRef(source="urn:elsewhere", id="a")
    for wrong in (B, same_id_other_source, None):
        assert not pending.resolve("c-a", "forged", wrong)
        assert not pending.fail("c-a", RuntimeError("forged"), wrong)
    assert not future.done()
    assert "c-a" in pending  # still waiting for its own reply
    assert pending.resolve("c-a", "genuine", EventRef(source="urn:test", id="a"))
    assert await future == "genuine"


async def test_a_reply_nobody_waits_for_is_dropped_and_says_so() -> None:
    pending: Pending = PendingReplies()
    assert pending.identity_of("unknown") is None
    assert pending.identity_of(None) is None
    assert not pending.resolve("unknown", "reply", A)
    assert not pending.resolve(None, "reply", A)
    assert not pending.fail("unknown", RuntimeError("x"), A)


async def test_a_second_reply_to_the_same_request_is_dropped() -> None:
    pending: Pending = PendingReplies()
    future = pending.register("c-a", A)
    assert pending.resolve("c-a", "first", A)
    assert not pending.resolve("c-a", "second", A)
    assert await future == "first"


async def test_a_correlation_id_cannot_be_registered_twice() -> None:
    pending: Pending = PendingReplies()
    pending.register("c-a", A)
    with pytest.raises(ValueError, match="already pending"):
        pending.register("c-a", B)


async def test_expecting_discards_the_request_on_exit_so_a_late_reply_finds_nothing() -> None:
    pending: Pending = PendingReplies()
    with pending.expecting("c-a", A) as future:
        assert "c-a" in pending
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await future
    assert "c-a" not in pending
    assert future.cancelled()
    assert not pending.resolve("c-a", "late reply", A)


async def test_expecting_discards_the_request_when_the_block_raises() -> None:
    pending: Pending = PendingReplies()
    with pytest.raises(RuntimeError), pending.expecting("c-a", A):
        raise RuntimeError("publish failed")
    assert len(pending) == 0


async def test_a_failed_request_raises_the_given_error() -> None:
    pending: Pending = PendingReplies()
    future = pending.register("c-a", A)
    assert pending.fail("c-a", ValueError("unreadable reply"), A)
    with pytest.raises(ValueError, match="unreadable reply"):
        await future


async def test_fail_all_fails_every_waiting_request_and_empties_the_registry() -> None:
    pending: Pending = PendingReplies()
    futures = [pending.register(str(i), EventRef(source="s", id=str(i))) for i in range(3)]
    futures[0].cancel()
    assert pending.fail_all(ConnectionError("shutting down")) == 2
    assert len(pending) == 0
    for future in futures[1:]:
        with pytest.raises(ConnectionError):
            await future


async def test_waiting_for_a_request_returns_only_while_one_waits() -> None:
    pending: Pending = PendingReplies()
    waiter = asyncio.ensure_future(pending.wait_until_awaited())
    await asyncio.sleep(0)
    assert not waiter.done()
    pending.register("c-a", A)
    await asyncio.wait_for(waiter, 1)
    pending.discard("c-a")
    again = asyncio.ensure_future(pending.wait_until_awaited())
    await asyncio.sleep(0)
    assert not again.done()
    again.cancel()
