"""The bridge's pending-replies registry: correlation id -> future, no I/O."""

from __future__ import annotations

import asyncio

import pytest

from producer_tools.bridge.pending import PendingReplies


async def test_a_registered_request_receives_the_reply_with_its_correlation_id() -> None:
    pending: PendingReplies[str] = PendingReplies()
    first, second = pending.register("a"), pending.register("b")
    assert pending.resolve("b", "reply-b")
    assert pending.resolve("a", "reply-a")
    assert (await first, await second) == ("reply-a", "reply-b")
    assert len(pending) == 0


async def test_a_reply_nobody_waits_for_is_dropped_and_says_so() -> None:
    pending: PendingReplies[str] = PendingReplies()
    assert not pending.resolve("unknown", "reply")
    assert not pending.resolve(None, "reply")
    assert not pending.fail("unknown", RuntimeError("x"))


async def test_a_second_reply_to_the_same_request_is_dropped() -> None:
    pending: PendingReplies[str] = PendingReplies()
    future = pending.register("a")
    assert pending.resolve("a", "first")
    assert not pending.resolve("a", "second")
    assert await future == "first"


async def test_a_correlation_id_cannot_be_registered_twice() -> None:
    pending: PendingReplies[str] = PendingReplies()
    pending.register("a")
    with pytest.raises(ValueError, match="already pending"):
        pending.register("a")


async def test_expecting_discards_the_request_on_exit_so_a_late_reply_finds_nothing() -> None:
    pending: PendingReplies[str] = PendingReplies()
    with pending.expecting("a") as future:
        assert "a" in pending
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await future
    assert "a" not in pending
    assert future.cancelled()
    assert not pending.resolve("a", "late reply")


async def test_expecting_discards_the_request_when_the_block_raises() -> None:
    pending: PendingReplies[str] = PendingReplies()
    with pytest.raises(RuntimeError), pending.expecting("a"):
        raise RuntimeError("publish failed")
    assert len(pending) == 0


async def test_a_failed_request_raises_the_given_error() -> None:
    pending: PendingReplies[str] = PendingReplies()
    future = pending.register("a")
    assert pending.fail("a", ValueError("unreadable reply"))
    with pytest.raises(ValueError, match="unreadable reply"):
        await future


async def test_fail_all_fails_every_waiting_request_and_empties_the_registry() -> None:
    pending: PendingReplies[str] = PendingReplies()
    futures = [pending.register(str(i)) for i in range(3)]
    futures[0].cancel()
    assert pending.fail_all(ConnectionError("shutting down")) == 2
    assert len(pending) == 0
    for future in futures[1:]:
        with pytest.raises(ConnectionError):
            await future


async def test_waiting_for_a_request_returns_only_while_one_waits() -> None:
    pending: PendingReplies[str] = PendingReplies()
    waiter = asyncio.ensure_future(pending.wait_until_awaited())
    await asyncio.sleep(0)
    assert not waiter.done()
    pending.register("a")
    await asyncio.wait_for(waiter, 1)
    pending.discard("a")
    again = asyncio.ensure_future(pending.wait_until_awaited())
    await asyncio.sleep(0)
    assert not again.done()
    again.cancel()
