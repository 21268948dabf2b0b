"""SIGKILL the consumer process again and again while 20,000 events flow.

After every kill, and at the end: every event below a committed offset has its task row and its
reply (offsets are committed only after both); at the end every event has exactly one row, at
least one task-created reply, and all its replies name that row's task id.
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
    valid_records,
)
from tests.servers import StackSettings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

EVENTS = 20_000
KILLS = 10
BATCH = 250
MOST_PER_LIFE = 1_500
"""A mid-flow life is killed within this many new answers: KILLS x 1,500 < 20,000, so kills
strike while events are still flowing unless start-up lives (killed after a pause, however much
they answered) took the flow ahead."""


async def kill_repeatedly(
    settings: StackSettings,
    *,
    consumer: ConsumerProcess,
    replies: ReplyLog,
    positions: dict[str, tuple[int, int]],
    rng: random.Random,
    stages: Counter[str],
) -> dict[int, int]:
    """KILLS lives, each ended by SIGKILL at a random point; the acknowledged events are checked
    after each. Returns the last committed offsets."""
    committed: dict[int, int] = {}
    for life in range(1, KILLS + 1):
        if life > 1:
            consumer.start()
        if rng.random() < 0.2:  # before or while it joins the group
            stages["start-up"] += 1
            await asyncio.sleep(rng.uniform(0.1, 1.5))
        else:
            stages["mid-flow"] += 1
            # Capped: start-up lives answer as much as they can before their kill, so the
            # flow may be all answered before the last lives (which then kill an idle consumer).
            target = min(replies.answered + rng.randint(1, MOST_PER_LIFE), EVENTS)
            await replies.wait_until(
                lambda t=target: replies.answered >= t or not consumer.alive,
                timeout_s=60,
                why=lambda n=life: f"no progress in life {n}:\n{consumer.log_tail()}",
            )
            await asyncio.sleep(rng.uniform(0, 0.1))
        assert consumer.alive, f"the consumer died by itself:\n{consumer.log_tail()}"
        consumer.kill()
        committed = await check_acknowledged(settings, positions, replies, committed)
    return committed


async def test_a_consumer_killed_ten_times_mid_flow_loses_and_duplicates_nothing(
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings()
    records = valid_records("crash", EVENTS)
    positions: dict[str, tuple[int, int]] = {}
    flow_rng = random.Random(rng.random())  # the flow's own stream: it runs concurrently
    stages: Counter[str] = Counter()
    consumer = consumers(settings, batch_max_records=BATCH)
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        paced = feed.paced(
            records,
            chunk=lambda: flow_rng.randint(200, 800),
            pause_s=lambda: flow_rng.uniform(0.02, 0.12),
            positions=positions,
        )
        async with background(paced) as flow:
            committed = await kill_repeatedly(
                settings,
                consumer=consumer,
                replies=replies,
                positions=positions,
                rng=rng,
                stages=stages,
            )
            await flow

        consumer.start()
        await replies.wait_until(
            lambda: len(replies.created) >= EVENTS or not consumer.alive,
            timeout_s=90,
            why=lambda: f"{len(replies.created)} of {EVENTS} answered:\n{consumer.log_tail()}",
        )
        await caught_up(settings, positions, consumer)  # the last life's batch comes back
        assert await consumer.stop() == 0, consumer.log_tail()
        committed = await check_acknowledged(settings, positions, replies, committed)
        await replies.settled()
        rows = await read_rows(settings.database_url)

    ids = [event_id_of(r) for r in records]
    check = check_flow(ids, rows, replies)
    ratio, burned = ids_per_task(rows)
    report.count_ids(rows)
    report.add(
        f"faults: crash kills={consumer.kills} events={check.events} lost={len(check.lost)}"
        f" duplicated={len(check.duplicated)} re-sent={check.re_sent}"
        f" kill-points={dict(stages)} ids-per-task={ratio:.3f} ids-burned={burned}"
    )
    assert consumer.kills == KILLS
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert len(rows.task_ids) == EVENTS, "rows for events nobody sent"
    assert committed == log_ends(positions), "not everything was acknowledged"
    assert not replies.rejected
    assert not replies.dead_letters
