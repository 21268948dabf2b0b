"""PostgreSQL goes away twice while 10,000 events flow to a consumer process: once stopped (fast
shutdown: open transactions rolled back) and once SIGKILLed (crash recovery at restart).

While it is down the consumer stays up, retries with back-off, answers nothing, commits nothing
and rejects nothing; after each restart it carries on, and in the end every event has its one
task. (tests/integration/test_consumer_resilience.py has the in-process, single-burst version.)
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from producer_tools.devstack.embedded import EmbeddedPostgres
from tests.faults.checks import (
    check_acknowledged,
    check_flow,
    committed_offsets,
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

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

EVENTS = 10_000
GRACE_S = 0.5
"""After the server goes, a batch already past its database commit may still publish."""


async def outage(
    how: str,
    *,
    server: EmbeddedPostgres,
    consumer: ConsumerProcess,
    settings: StackSettings,
    replies: ReplyLog,
    down_s: float,
) -> tuple[int, int]:
    """Take the database away for `down_s`; check nothing is answered or committed meanwhile.
    Returns (retries logged during the outage, replies held back at its end)."""
    retries_before = consumer.log_count("transient failure")
    if how == "stop":
        await server.stop()
    else:
        server.kill()
    await asyncio.sleep(GRACE_S)
    answered, committed = replies.replies, await committed_offsets(settings)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + down_s - GRACE_S
    while loop.time() < ends_at:
        assert consumer.alive, f"the consumer died without its database:\n{consumer.log_tail()}"
        await asyncio.sleep(0.1)
    assert replies.replies == answered, "replies published without a database"
    assert await committed_offsets(settings) == committed, "offsets committed without a database"
    retries = consumer.log_count("transient failure") - retries_before
    assert retries >= 2, f"no retries logged during the outage:\n{consumer.log_tail()}"
    await server.start()
    return retries, len(replies.created)


async def test_a_consumer_process_rides_out_two_database_outages_mid_flow(
    fault_postgres: EmbeddedPostgres,
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings()
    records = valid_records("dbdown", EVENTS)
    positions: dict[str, tuple[int, int]] = {}
    flow_rng = random.Random(rng.random())
    figures = []
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        consumer = consumers(settings, batch_max_records=500)
        paced = feed.paced(
            records,
            chunk=lambda: flow_rng.randint(100, 400),
            pause_s=lambda: flow_rng.uniform(0.05, 0.15),
            positions=positions,
        )
        async with background(paced) as flow:
            committed: dict[int, int] = {}
            for how in ("stop", "kill"):
                target = replies.answered + rng.randint(500, 2500)
                await replies.wait_until(
                    lambda t=target: replies.answered >= t or not consumer.alive,
                    timeout_s=60,
                    why=lambda: f"no progress before the outage:\n{consumer.log_tail()}",
                )
                down_s = rng.uniform(2.0, 4.0)
                retries, _ = await outage(
                    how,
                    server=fault_postgres,
                    consumer=consumer,
                    settings=settings,
                    replies=replies,
                    down_s=down_s,
                )
                figures.append(f"{how}:{down_s:.1f}s/{retries}retries")
                committed = await check_acknowledged(settings, positions, replies, committed)
            await flow
        await replies.wait_until(
            lambda: len(replies.created) >= EVENTS or not consumer.alive,
            timeout_s=60,
            why=lambda: f"{len(replies.created)} of {EVENTS} answered:\n{consumer.log_tail()}",
        )
        assert consumer.starts == 1
        assert await consumer.stop() == 0, consumer.log_tail()
        committed = await check_acknowledged(settings, positions, replies, committed)
        await replies.settled()
        rows = await read_rows(settings.database_url)

    check = check_flow([event_id_of(r) for r in records], rows, replies)
    ratio, burned = ids_per_task(rows)
    report.count_ids(rows)
    report.add(
        f"faults: database-outage outages={' '.join(figures)} events={check.events}"
        f" lost={len(check.lost)} duplicated={len(check.duplicated)} re-sent={check.re_sent}"
        f" rejected={len(replies.rejected)} ids-per-task={ratio:.3f} ids-burned={burned}"
    )
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert len(rows.task_ids) == EVENTS
    assert committed == log_ends(positions), "not everything was acknowledged"
    assert not replies.rejected, "an outage made the consumer reject events"
    assert not replies.dead_letters
