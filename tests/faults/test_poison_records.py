"""No single record stops a partition or the process: one poison record of each class, between
good events on the same partition, on one consumer process and the real broker.

Each case publishes three good events, the poison, and three good events more, to the one
partition of the requests topic, then checks: every good event answered once with one task, the
poison rejected with its code or dead-lettered with its original bytes (cut to the record limit
only when it is larger, and saying so), no task for the poison, and the process still up.

Classes whose failure only Apache Kafka produces (the embedded broker accepts them) are injected
in tests/integration/test_consumer_poison.py; docs/guarantees.md lists every class.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from producer_tools.devstack.embedded import EmbeddedPostgres
from schemas import wire
from tests import kafka_poison
from tests.faults.checks import check_flow, read_rows
from tests.faults.conftest import fresh_database
from tests.faults.harness import (
    ConsumerProcess,
    Feed,
    Record,
    ReplyLog,
    event_id_of,
    fault_settings,
    task_record,
    valid_records,
)
from tests.servers import StackSettings, create_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

MIB = 1024 * 1024
SERVICE = 4242


@dataclass
class Stack:
    settings: StackSettings
    consumer: ConsumerProcess
    feed: Feed
    replies: ReplyLog


@pytest.fixture(scope="module")
async def stack(
    fault_postgres: EmbeddedPostgres,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """One consumer process for the whole module, on topics of one partition."""
    async with fresh_database(fault_postgres) as database:
        settings = fault_settings(kafka_bootstrap, database, topic_partitions=1)
        await create_topics(settings)
        consumer = ConsumerProcess(settings, tmp_path_factory.mktemp("poison") / "consumer.log")
        consumer.start()
        try:
            feed = Feed(settings, max_request_bytes=32 * MIB)
            async with feed, ReplyLog(settings) as replies:
                yield Stack(settings, consumer, feed, replies)
        finally:
            consumer.kill()


@dataclass(frozen=True)
class Written:
    """Where the poison landed, and what its dead letter (if any) must carry: `key`, and
    `value` from byte `compare_from` on (a batch's base offset is the broker's to set)."""

    offset: int
    key: bytes | None
    value: bytes | None
    compare_from: int = 0


Writer = Callable[["Stack", str], Awaitable[Written]]


def binary(event_id: str, body: bytes = b'{"state_id": 1}', **extra: str) -> Record:
    key, value, headers = task_record(SERVICE, event_id, body)
    return key, value, [*headers, *((f"ce_{name}", v.encode()) for name, v in extra.items())]


async def published(stack: Stack, record: Record) -> Written:
    ((_, offset),) = await stack.feed.publish([record])
    return Written(offset, record[0], record[1])


def header_record(**extra: str) -> Writer:
    async def write(stack: Stack, event_id: str) -> Written:
        return await published(stack, binary(event_id, **extra))

    return write


def own_topic(which: str) -> Writer:
    async def write(stack: Stack, event_id: str) -> Written:
        topic = getattr(stack.settings.topics, which)
        return await published(stack, binary(event_id, replyto=topic))

    return write


def _raw_headers(record: Record) -> list[kafka_poison.RawHeader]:
    return [(name.encode(), value) for name, value in record[2]]


async def bad_header_name(stack: Stack, event_id: str) -> Written:
    key, value, _ = record = binary(event_id)
    names = [*_raw_headers(record), (b"\xff\xfe-not-utf-8", b"1")]
    data = kafka_poison.batch([kafka_poison.record(0, key, value, names)])
    base = await kafka_poison.write(stack.feed.producer, stack.settings.topics.requests, 0, data)
    return Written(base, key, value)


async def corrupt_record(stack: Stack, event_id: str) -> Written:
    """A negative header count, between two good records of the same batch."""
    left, right = binary(f"{event_id}-left"), binary(f"{event_id}-right")
    poison = kafka_poison.record(1, b"k", b"v", [(b"h", b"1")], header_count=-3)
    data = kafka_poison.batch(
        [
            kafka_poison.record(0, left[0], left[1], _raw_headers(left)),
            poison,
            kafka_poison.record(2, right[0], right[1], _raw_headers(right)),
        ]
    )
    base = await kafka_poison.write(stack.feed.producer, stack.settings.topics.requests, 0, data)
    return Written(base + 1, None, poison[1:])  # the record's bytes after its length prefix


async def bad_checksum(stack: Stack, event_id: str) -> Written:
    record = binary(event_id)
    data = kafka_poison.batch(
        [kafka_poison.record(0, record[0], record[1], _raw_headers(record))], bad_checksum=True
    )
    base = await kafka_poison.write(stack.feed.producer, stack.settings.topics.requests, 0, data)
    return Written(base, None, data, compare_from=8)


async def too_large(stack: Stack, event_id: str) -> Written:
    """A record larger than the largest dead letter (the embedded broker takes it; Kafka's
    requests topic would refuse it, but a topic set up otherwise may not)."""
    garbage = b"{" + b"x" * (3 * stack.settings.contract.max_reply_record_bytes)
    structured = (wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode())
    return await published(stack, (b"k", garbage, [structured, ("x-event", event_id.encode())]))


@dataclass(frozen=True)
class Poison:
    write: Writer
    expect: str
    """`rejected:<code>`, or `dead_letter:<a phrase of its error header>`."""
    also_good: tuple[str, ...] = ()
    """Suffixes of the event ids of good records written in the poison's own batch."""


CASES = {
    "header name not UTF-8": Poison(bad_header_name, "dead_letter:not UTF-8"),
    "corrupt record": Poison(
        corrupt_record, "dead_letter:negative header count", also_good=("-left", "-right")
    ),
    "checksum mismatch": Poison(bad_checksum, "dead_letter:checksum mismatch"),
    "replyto illegal": Poison(
        header_record(replyto="no spaces allowed"), "rejected:invalid_reply_to"
    ),
    "replyto too long": Poison(header_record(replyto="r" * 250), "rejected:invalid_reply_to"),
    "replyto internal": Poison(
        header_record(replyto="__consumer_offsets"), "rejected:invalid_reply_to"
    ),
    "replyto dot-dot": Poison(header_record(replyto=".."), "rejected:invalid_reply_to"),
    "replyto the requests topic": Poison(own_topic("requests"), "rejected:invalid_reply_to"),
    "replyto the dead-letter topic": Poison(own_topic("dead_letter"), "rejected:invalid_reply_to"),
    "correlation id 1 MB": Poison(
        header_record(correlationid="c" * MIB), "rejected:invalid_attribute"
    ),
    "record too large for a dead letter": Poison(too_large, "dead_letter:not valid JSON"),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_a_poison_record_between_good_events_is_answered_alone_and_the_partition_flows(
    stack: Stack, name: str
) -> None:
    case = CASES[name]
    prefix = f"poison-{list(CASES).index(name)}"
    poison_id = f"{prefix}-poison"
    before = valid_records(f"{prefix}-before", 3, services=1)
    after = valid_records(f"{prefix}-after", 3, services=1)
    await stack.feed.publish(before)
    written = await case.write(stack, poison_id)
    await stack.feed.publish(after)
    good = [event_id_of(r) for r in before + after] + [poison_id + s for s in case.also_good]
    replies, consumer = stack.replies, stack.consumer

    def outcome() -> str | None:
        if (0, written.offset) in replies.dead_letters:
            return "dead_letter:" + replies.dead_letters[(0, written.offset)]
        if poison_id in replies.rejected:
            return "rejected:" + replies.rejected[poison_id][0]
        if poison_id in replies.created:
            return "created"
        return None

    await replies.wait_until(
        lambda: (
            (all(e in replies.created for e in good) and outcome() is not None)
            or not consumer.alive
        ),
        timeout_s=60,
        why=lambda: (
            f"{name}: good={[e in replies.created for e in good]} poison={outcome()}"
            f"\n{consumer.log_tail()}"
        ),
    )
    assert consumer.alive, consumer.log_tail()
    await asyncio.sleep(0.3)  # room for a (wrong) second answer
    rows = await read_rows(stack.settings.database_url)
    check = check_flow(good, rows, replies)
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert poison_id not in rows.task_ids, "a task for the poison"
    kind, _, detail = case.expect.partition(":")
    got = outcome() or ""
    assert got.startswith(f"{kind}:"), got
    if kind == "rejected":
        assert got == case.expect
        return
    assert detail in got
    (dead,) = replies.dead_letter_records[(0, written.offset)]
    headers = dict(dead.headers)
    assert dead.key == written.key
    expected = (written.value or b"")[written.compare_from :]
    value = (dead.value or b"")[written.compare_from :]
    if wire.DLQ_TRUNCATED in headers:
        limit = stack.settings.contract.max_reply_record_bytes
        assert len(dead.value) + len(dead.key or b"") <= limit
        assert headers[wire.DLQ_TRUNCATED].startswith(
            b"key=1 value=%d " % len(written.value or b"")
        )
        assert expected.startswith(value)
        assert len(value) > limit // 2
    else:
        assert value == expected, "the dead letter does not carry the original bytes"


async def test_the_identity_wins_over_the_body_an_event_comes_back_with(stack: Stack) -> None:
    """A valid event, then the same identity with an invalid body: the task answers both."""
    event_id = "identity-wins"
    await stack.feed.publish([binary(event_id)])
    replies = stack.replies
    await replies.wait_until(lambda: event_id in replies.created, 30, why=lambda: "first")
    await stack.feed.publish([binary(event_id, body=b'{"state_id": "not a number"}')])
    await replies.wait_until(
        lambda: len(replies.created.get(event_id, [])) == 2 or event_id in replies.rejected,
        30,
        why=lambda: f"second: {replies.created.get(event_id)} {replies.rejected.get(event_id)}",
    )
    assert event_id not in replies.rejected
    first, second = replies.created[event_id]
    assert first == second
