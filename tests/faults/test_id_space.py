"""How the task id space is spent: replays, racing consumers and rejections take no ids.

On a fresh database (its sequence starts at 1), one consumer process answers 10,000 events of
which about a tenth are invalid; then the same 10,000 are replayed (half of them with another
body: the identity wins); then two more consumer processes, each in a group of its own, race
through the whole topic (both copies) at once; finally the two racers get 2,000 new events at
the same moment, the one case where a race can burn ids (reported, not a contract).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.faults.checks import (
    Rows,
    check_flow,
    read_rows,
    rejected_rows,
)
from tests.faults.conftest import MakeSettings
from tests.faults.harness import (
    ConsumerProcess,
    Feed,
    Record,
    ReplyLog,
    Report,
    event_id_of,
    task_record,
    valid_records,
)
from tests.servers import StackSettings

pytestmark = [pytest.mark.faults, pytest.mark.timeout(240)]

EVENTS = 10_000
FRESH_RACE = 2_000
_INVALID_BODIES = (
    b'{"state_id": "x"}',
    b'{"est_duration": -1}',
    b'{"task_type": ""}',
    b'{"timestamp": "2010-05-20T15:41:52"}',
    b'{"state_id": 2147483648}',
    b'{"task_id": 7}',
    b"[1, 2]",
    b'{"state_id": 1,}',
)


def mixed_records(rng: random.Random) -> tuple[list[Record], list[str], list[str]]:
    """EVENTS records, about a tenth invalid (bad bodies or service id 0), seeded."""
    records: list[Record] = []
    valid: list[str] = []
    invalid: list[str] = []
    for i in range(EVENTS):
        event_id = f"ids-{i}"
        service_id = 1000 + i % 53
        if rng.random() >= 0.1:
            records.append(task_record(service_id, event_id, b'{"state_id": %d}' % i))
            valid.append(event_id)
            continue
        key, value, headers = task_record(service_id, event_id, rng.choice(_INVALID_BODIES))
        if rng.random() < 0.2:
            value = b"{}"
            headers = [(k, b"0" if k == "ce_serviceid" else v) for k, v in headers]
        records.append((key, value, headers))
        invalid.append(event_id)
    return records, valid, invalid


def with_other_bodies(records: list[Record], valid: set[str], rng: random.Random) -> list[Record]:
    """The same identities; half of the valid ones now carry another (valid) body."""
    replay: list[Record] = []
    for key, value, headers in records:
        other = event_id_of((key, value, headers)) in valid and rng.random() < 0.5
        replay.append((key, b'{"state_id": 1, "replayed": true}' if other else value, headers))
    return replay


async def answered_times(
    replies: ReplyLog, events: list[str], times: int, timeout_s: float, *by: ConsumerProcess
) -> None:
    """Wait until every event got `times` replies (or one of `by` died)."""

    def done() -> bool:
        return not all(p.alive for p in by) or all(
            len(replies.created.get(e, ())) + len(replies.rejected.get(e, ())) >= times
            for e in events
        )

    await replies.wait_until(
        done, timeout_s, why=lambda: f"not all answered {times}x:\n{by[0].log_tail()}"
    )
    for process in by:
        assert process.alive, f"a consumer died:\n{process.log_tail()}"


async def test_replays_racing_consumers_and_rejections_take_no_task_ids(
    make_fault_settings: MakeSettings,
    consumers: Callable[..., ConsumerProcess],
    rng: random.Random,
    report: Report,
) -> None:
    settings = await make_fault_settings()
    records, valid, invalid = mixed_records(rng)
    everyone = valid + invalid
    async with Feed(settings) as feed, ReplyLog(settings) as replies:
        first = consumers(settings, "first")
        await feed.publish(records)
        await answered_times(replies, everyone, 1, 60, first)
        after_first = await read_rows(settings.database_url)
        assert after_first.next_task_id - 1 == len(valid), "ids went to rejected events"
        assert await rejected_rows(settings.database_url) == len(invalid)

        await feed.publish(with_other_bodies(records, set(valid), rng))
        await answered_times(replies, everyone, 2, 60, first)
        assert await first.stop() == 0, first.log_tail()
        after_replay = await read_rows(settings.database_url)

        racers = [consumers(in_group(settings, name), name) for name in ("racer-a", "racer-b")]
        await answered_times(replies, everyone, 6, 90, *racers)  # 2 copies x 3 groups
        after_race = await read_rows(settings.database_url)

        fresh = valid_records("ids-fresh", FRESH_RACE)
        await feed.publish(fresh)
        fresh_ids = [event_id_of(r) for r in fresh]
        await answered_times(replies, fresh_ids, 2, 60, *racers)
        for racer in racers:
            assert await racer.stop() == 0, racer.log_tail()
        await replies.settled()
        after_fresh = await read_rows(settings.database_url)

    report.count_ids(after_fresh)
    replay_burned = after_replay.next_task_id - after_first.next_task_id
    race_burned = after_race.next_task_id - after_first.next_task_id
    fresh_burned = after_fresh.next_task_id - after_race.next_task_id - FRESH_RACE
    report.add(
        f"faults: id-space events={EVENTS} created={len(valid)} rejected={len(invalid)}"
        f" ids-per-task={(after_race.next_task_id - 1) / len(valid):.3f}"
        f" replay-burned={replay_burned} racing-replay-burned={race_burned}"
        f" fresh-race={FRESH_RACE} fresh-race-burned={fresh_burned}"
    )
    assert replay_burned == 0
    assert race_burned == 0
    assert after_race.task_ids == after_first.task_ids
    check = check_flow(valid + fresh_ids, after_fresh, replies)
    assert not check.lost, check.problems()
    assert not check.duplicated, check.problems()
    assert all(e not in replies.created for e in invalid), "a rejected event got a task"
    assert all(set(replies.rejected[e]) == {replies.rejected[e][0]} for e in invalid)
    assert_stable(after_first, after_fresh, valid)


def in_group(settings: StackSettings, name: str) -> StackSettings:
    return settings.with_(**{"consumer_group": f"{settings.consumer.consumer_group}.{name}"})


def assert_stable(before: Rows, after: Rows, events: list[str]) -> None:
    changed = [e for e in events if after.task_ids[e] != before.task_ids[e]]
    assert not changed, f"task ids changed: {changed[:5]}"
