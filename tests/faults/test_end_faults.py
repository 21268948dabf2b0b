"""Task End Events under faults: starts flow, and the end of every task follows as soon as its
start is answered (the way callers end tasks), through consumers that are killed, replaced and
raced, then the whole log is replayed.

Every task must end completed exactly once: one completion (the end event's identity, its
timestamp and duration) per task, one `end` change recorded per task, every end answered by
task-completed replies that all name the same completion, nothing rejected, nothing lost; and
every end below a committed offset already completed and answered (the commit came after both).
A replay of starts and ends changes nothing and takes no task id.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from schemas import wire
from tests.faults.checks import caught_up, check_acknowledged, read_rows
from tests.faults.conftest import MakeSettings
from tests.faults.harness import (
    SOURCE,
    ConsumerProcess,
    Feed,
    Record,
    ReplyLog,
    Report,
    background,
    event_id_of,
    until,
    valid_records,
)
from tests.servers import StackSettings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

TASKS = 4_000
SERVICES = 53
END_BODY = b'{"disposition": 7, "disposition_desc": "resolved", "survey": "sent"}'


def end_record(start_id: str, service_id: int, task_id: int) -> Record:
    end_id = f"end-{start_id}"
    key, value, headers = wire.encode_request_binary(
        service_id=service_id, body=END_BODY, event_id=end_id, source=SOURCE,
        correlation_id=end_id, event_type=wire.TYPE_TASK_END, task_id=task_id,
    )  # fmt: skip
    return key, value, list(headers)


@dataclass
class Lifecycle:
    """The flow: starts paced in, and each task's end published once its start is answered."""

    feed: Feed
    replies: ReplyLog
    rng: random.Random
    starts: list[Record]
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Start event id -> its (partition, offset)."""
    end_positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """End event id -> its (partition, offset)."""
    ends: list[Record] = field(default_factory=list)

    async def run(self) -> None:
        async with background(self._starts()) as starting:
            while len(self.ends) < len(self.starts):
                await self._end_answered()
                await asyncio.sleep(self.rng.uniform(0.02, 0.1))
            await starting

    async def _starts(self) -> None:
        await self.feed.paced(
            self.starts,
            chunk=lambda: self.rng.randint(100, 400),
            pause_s=lambda: self.rng.uniform(0.02, 0.1),
            positions=self.positions,
        )

    async def _end_answered(self) -> None:
        ended = {event_id_of(r).removeprefix("end-") for r in self.ends}
        batch = [
            end_record(start_id, 1000 + int(start_id.rsplit("-", 1)[1]) % SERVICES, task_ids[0])
            for start_id, task_ids in list(self.replies.created.items())
            if start_id not in ended
        ]
        if not batch:
            return
        for record, position in zip(batch, await self.feed.publish(batch), strict=True):
            self.end_positions[event_id_of(record)] = position
        self.ends.extend(batch)


@dataclass(frozen=True)
class Completion:
    task_id: int
    end_id: str | None
    completed_at: object
    duration_ms: int | None
    updated_at: object
    changes: int


async def completions(database_url: str) -> dict[str, Completion]:
    """Start event id -> its task's completion and how many `end` changes it recorded."""
    conn = await asyncpg.connect(database_url.replace("+asyncpg", ""), timeout=10)
    try:
        rows = await conn.fetch(
            "SELECT t.event_id, t.task_id, t.end_event_id, t.completed_at, t.duration_ms,"
            " t.updated_at, (SELECT count(*) FROM task_changes c WHERE c.task_id = t.task_id"
            " AND c.kind = 'end') AS changes FROM tasks t WHERE t.event_source = $1",
            SOURCE,
        )
    finally:
        await conn.close()
    return {r["event_id"]: Completion(*list(r)[1:]) for r in rows}


async def check_ends_acknowledged(
    settings: StackSettings, flow: Lifecycle, committed_before: dict[int, int]
) -> dict[int, int]:
    """Every end below the committed offsets completed its task and has its reply; the starts'
    own promise too (`check_acknowledged`)."""
    committed = await check_acknowledged(settings, flow.positions, flow.replies, committed_before)
    promised = [
        end_id
        for end_id, (partition, offset) in flow.end_positions.items()
        if offset < committed.get(partition, 0)
    ]
    done = await completions(settings.database_url)
    not_done = [e for e in promised if done[e.removeprefix("end-")].end_id != e]
    assert not not_done, f"{len(not_done)} committed ends did not complete: {not_done[:5]}"
    await until(lambda: all(e in flow.replies.completed for e in promised), 15, "end replies")
    return committed


def check_completed_once(flow: Lifecycle, done: dict[str, Completion]) -> Counter[str]:
    """Each task completed once, by its own end, answered consistently. Returns a tally."""
    tally: Counter[str] = Counter()
    for record in flow.starts:
        start_id = event_id_of(record)
        task = done.get(start_id)
        assert task is not None, f"{start_id}: no task"
        end_id = f"end-{start_id}"
        assert task.end_id == end_id, (start_id, task)
        assert task.changes == 1, (start_id, task)
        answers = flow.replies.completed.get(end_id, [])
        assert answers, f"{end_id}: never answered"
        assert {a[0] for a in answers} == {task.task_id}, (end_id, answers)
        assert len({a[1] for a in answers}) == 1, f"{end_id}: two completions {answers}"
        tally["re-sent"] += len(answers) > 1
    assert not flow.replies.rejected, dict(list(flow.replies.rejected.items())[:5])
    assert not flow.replies.dead_letters
    return tally


async def finish(settings: StackSettings, flow: Lifecycle, consumer: ConsumerProcess) -> None:
    """Until every end is answered and the group committed the whole log."""
    await flow.replies.wait_until(
        lambda: len(flow.replies.completed) >= TASKS or not consumer.alive,
        timeout_s=90,
        why=lambda: (
            f"{len(flow.replies.completed)} of {TASKS} ends answered\n{consumer.log_tail()}"
        ),
    )
    await caught_up(settings, flow.positions | flow.end_positions, consumer)


async def replay_changes_nothing(
    settings: StackSettings, flow: Lifecycle, report: Report, name: str
) -> None:
    """Publish every start and end again (same identities): no state, id or rejection moves."""
    before = await completions(settings.database_url)
    next_id = (await read_rows(settings.database_url)).next_task_id
    answered = sum(len(a) for a in flow.replies.completed.values())
    await flow.feed.publish(flow.starts + flow.ends)
    await flow.replies.wait_until(
        lambda: sum(len(a) for a in flow.replies.completed.values()) >= answered + TASKS,
        timeout_s=90,
        why=lambda: "the replayed ends were not all answered",
    )
    await flow.replies.settled()
    after = await completions(settings.database_url)
    changed = [e for e in before if before[e] != after[e]]
    assert not changed, f"the replay changed {len(changed)} tasks: {changed[:3]}"
    assert (await read_rows(settings.database_url)).next_task_id == next_id, "ids burned"
    check_completed_once(flow, after)
    report.add(f"faults: {name}-replay events={2 * TASKS} changed=0 ids-taken=0")


async def test_killed_mid_flow_of_starts_and_ends_every_task_completes_exactly_once(
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings()
    consumer = consumers(settings, batch_max_records=200)
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        flow = Lifecycle(feed, replies, random.Random(rng.random()), valid_records("start", TASKS))
        committed: dict[int, int] = {}
        async with background(flow.run()) as flowing:
            for life in range(6):
                if life:
                    consumer.start()
                target = min(len(replies.completed) + rng.randint(200, 700), TASKS)
                await replies.wait_until(
                    lambda t=target: len(replies.completed) >= t or not consumer.alive,
                    timeout_s=60,
                    why=lambda: f"no ends answered:\n{consumer.log_tail()}",
                )
                await asyncio.sleep(rng.uniform(0, 0.1))
                assert consumer.alive, consumer.log_tail()
                consumer.kill()
                committed = await check_ends_acknowledged(settings, flow, committed)
            consumer.start()
            await flowing
        await finish(settings, flow, consumer)
        await check_ends_acknowledged(settings, flow, committed)
        tally = check_completed_once(flow, await completions(settings.database_url))
        report.add(
            f"faults: ends-crash kills={consumer.kills} tasks={TASKS} completed-once={TASKS}"
            f" re-sent={tally['re-sent']}"
        )
        await replay_changes_nothing(settings, flow, report, "ends-crash")
        assert await consumer.stop() == 0, consumer.log_tail()


async def joined(consumer: ConsumerProcess) -> None:
    await until(
        lambda: consumer.consuming or not consumer.alive,
        timeout_s=60,
        why=f"the {consumer.name} never joined its group:\n{consumer.log_tail()}",
    )
    assert consumer.alive, consumer.log_tail()


async def test_racing_consumers_joining_and_leaving_complete_every_task_exactly_once(
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings()
    first = consumers(settings, "first", batch_max_records=200)
    second = consumers(settings, "second", batch_max_records=200)
    departures: Counter[str] = Counter()
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        flow = Lifecycle(feed, replies, random.Random(rng.random()), valid_records("race", TASKS))
        async with background(flow.run()) as flowing:
            for _ in range(4):
                await joined(second)  # its departure is then a rebalance mid-flow
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                if rng.random() < 0.5:
                    departures["SIGTERM"] += 1
                    assert await second.stop() == 0, second.log_tail()
                else:
                    departures["SIGKILL"] += 1
                    second.kill()
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                second.start()
            await flowing
        await finish(settings, flow, first)
        await joined(second)  # a SIGTERM before the interpreter runs our code is not graceful
        assert await second.stop() == 0, second.log_tail()
        # The survivor owns every partition now: the group's commits still reach the log ends.
        await caught_up(settings, flow.positions | flow.end_positions, first)
        tally = check_completed_once(flow, await completions(settings.database_url))
        report.add(
            f"faults: ends-race departures={dict(departures)} tasks={TASKS}"
            f" completed-once={TASKS} re-sent={tally['re-sent']}"
        )
        await replay_changes_nothing(settings, flow, report, "ends-race")
        assert await first.stop() == 0, first.log_tail()
