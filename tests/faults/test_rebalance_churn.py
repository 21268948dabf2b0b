"""A second consumer joins and leaves the group again and again while 10,000 events flow.

Every join and every departure is a rebalance: partitions move between the two processes while
batches are in flight. The second one leaves gracefully (SIGTERM: it finishes its batch and
leaves the group) or dies (SIGKILL: the group waits out its session). The invariants are the
crash test's: one row per event, consistent replies, and every commit backed by rows and replies.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faults.checks import (
    caught_up,
    check_acknowledged,
    check_flow,
    ids_per_task,
    log_ends,
    read_rows,
)
from tests.faults.conftest import MakeSettings
from tests.faults.harness import (
    ConsumerProcess,
    Feed,
    ReplyLog,
    Report,
    background,
    event_id_of,
    until,
    valid_records,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

EVENTS = 10_000
CYCLES = 5
BATCH = 200


async def test_a_second_consumer_joining_and_leaving_repeatedly_loses_and_duplicates_nothing(
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings(topic_partitions=4)
    records = valid_records("churn", EVENTS)
    positions: dict[str, tuple[int, int]] = {}
    flow_rng = random.Random(rng.random())
    departures: Counter[str] = Counter()
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        first = consumers(settings, "first", batch_max_records=BATCH)
        paced = feed.paced(
            records,
            chunk=lambda: flow_rng.randint(50, 250),
            pause_s=lambda: flow_rng.uniform(0.05, 0.2),
            positions=positions,
        )
        async with background(paced) as flow:
            committed: dict[int, int] = {}
            second = None
            for _ in range(CYCLES):
                lives = 0 if second is None else second.log_count("consuming")
                if second is None:
                    second = consumers(settings, "second", batch_max_records=BATCH)
                else:
                    second.start()
                await until(  # its signal handlers are in place: a SIGTERM is a graceful stop
                    lambda s=second, n=lives: s.log_count("consuming") > n or not s.alive,
                    timeout_s=30,
                    why="the second consumer never started",
                )
                await asyncio.sleep(rng.uniform(0.2, 1.8))  # joining, or joined
                assert first.alive, first.log_tail()
                assert second.alive, second.log_tail()
                if rng.random() < 0.6:
                    departures["SIGTERM"] += 1
                    assert await second.stop() == 0, second.log_tail()
                else:
                    departures["SIGKILL"] += 1
                    second.kill()
                committed = await check_acknowledged(settings, positions, replies, committed)
                await asyncio.sleep(rng.uniform(0.1, 0.6))
            await flow
        await replies.wait_until(
            lambda: len(replies.created) >= EVENTS or not first.alive,
            timeout_s=60,
            why=lambda: f"{len(replies.created)} of {EVENTS} answered:\n{first.log_tail()}",
        )
        await caught_up(settings, positions, first)
        assert await first.stop() == 0, first.log_tail()
        committed = await check_acknowledged(settings, positions, replies, committed)
        await replies.settled()
        rows = await read_rows(settings.database_url)

    assert second is not None
    check = check_flow([event_id_of(r) for r in records], rows, replies)
    ratio, burned = ids_per_task(rows)
    report.count_ids(rows)
    assignments = first.log_count("partitions assigned") + second.log_count("partitions assigned")
    report.add(
        f"faults: rebalance cycles={CYCLES} departures={dict(departures)}"
        f" assignments={assignments} events={check.events} lost={len(check.lost)}"
        f" duplicated={len(check.duplicated)} re-sent={check.re_sent}"
        f" ids-per-task={ratio:.3f} ids-burned={burned}"
    )
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert len(rows.task_ids) == EVENTS
    assert committed == log_ends(positions), "not everything was acknowledged"
    assert "partitions assigned: ['" in second.log_text(), "the second one never got partitions"
    assert not replies.rejected
    assert not replies.dead_letters
