"""Ends and extension updates through the repository against the real PostgreSQL.

`apply_changes` applies a batch in order in one round trip and answers one outcome per change.
Replays are in test_repository_replays.py, racing consumers in test_repository_races.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.uow import SqlUnitOfWork
from consumer.domain import (
    ChangeCommand,
    ChangeKind,
    ChangeOutcome,
    ChangeStatus,
    RecordedChange,
    Task,
    UnstorableEventError,
)
from tests.integration.test_repository import (
    START_AT,
    end,
    engine_for,
    extension,
    new_service,
    start,
    started,
    statements,
    stored,
)

END_AT = START_AT + timedelta(minutes=5, milliseconds=250)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


async def applied(engine: AsyncEngine, *commands: ChangeCommand) -> list[ChangeOutcome]:
    """The outcomes of one batch, committed."""
    async with SqlUnitOfWork(engine) as uow:
        outcomes = await uow.tasks.apply_changes(commands)
        await uow.commit()
    return outcomes


async def one_task(engine: AsyncEngine, **options: Any) -> Task:
    [task] = await started(engine, start(new_service(), **options))
    return task


async def changes_of(engine: AsyncEngine, task_id: int) -> int:
    async with engine.connect() as conn:
        statement = text("SELECT count(*) FROM task_changes WHERE task_id = :id")
        return int((await conn.execute(statement, {"id": task_id})).scalar_one())


async def test_an_end_completes_the_task_with_everything_it_carries(engine: AsyncEngine) -> None:
    task = await one_task(engine, tenant="acme", group="sales")
    command = end(
        task,
        tenant="acme",
        attached={"Survey": {"q": 9}, "note": "é\n"},
        timestamp=END_AT,
        disposition_desc="customer satisfied",
        disposition="resolved",
        session_id="s-42",
    )
    [outcome] = await applied(engine, command)
    assert outcome.status is ChangeStatus.APPLIED
    assert outcome.change == RecordedChange(
        command.identity, task.task_id, ChangeKind.END, None, None
    )
    completion = outcome.task.completion if outcome.task else None
    assert completion is not None
    assert completion.completed_at == END_AT
    assert completion.duration_ms == 300_250
    assert (completion.disposition, completion.disposition_desc) == (
        "resolved",
        "customer satisfied",
    )
    assert completion.identity == command.identity
    # Standard fields in the contract's order, the timestamp, then the attached data as sent.
    assert completion.end_event_json == (
        '{"session_id":"s-42","disposition":"resolved","disposition_desc":"customer satisfied",'
        '"timestamp":"2026-01-31T12:05:00.373Z","Survey":{"q":9},"note":"é\\n"}'
    )
    assert await stored(engine, task.task_id) == outcome.task


async def test_a_numeric_disposition_is_stored_as_an_id(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    [outcome] = await applied(engine, end(task, disposition=7, timestamp=END_AT))
    assert outcome.task is not None
    assert outcome.task.completion is not None
    assert outcome.task.completion.disposition == 7
    async with engine.connect() as conn:
        row = await conn.execute(
            text("SELECT disposition_id, disposition_name FROM tasks WHERE task_id = :id"),
            {"id": task.task_id},
        )
        assert tuple(row.one()) == (7, None)


async def test_an_end_without_a_timestamp_takes_the_server_time_to_the_millisecond(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    before = datetime.now(UTC) - timedelta(seconds=5)  # clock skew between us and the server
    [outcome] = await applied(engine, end(task))
    completion = outcome.task.completion if outcome.task else None
    assert completion is not None
    assert completion.completed_at > before
    assert completion.completed_at.microsecond % 1000 == 0
    rendered = completion.completed_at.isoformat(timespec="milliseconds")[:-6] + "Z"
    assert completion.end_event_json == f'{{"timestamp":"{rendered}"}}'
    expected_ms = (completion.completed_at - START_AT) // timedelta(milliseconds=1)
    assert completion.duration_ms == expected_ms


async def test_completing_a_completed_task_with_a_new_identity_leaves_the_first_completion(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    [first] = await applied(engine, end(task, disposition="resolved", timestamp=END_AT))
    [second] = await applied(engine, end(task, disposition="lost"))
    assert second.status is ChangeStatus.ALREADY_COMPLETED
    assert second.change is None
    assert second.task == first.task
    assert await stored(engine, task.task_id) == first.task


async def test_an_end_before_the_start_is_refused_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    early = START_AT - timedelta(milliseconds=1)
    [outcome] = await applied(engine, end(task, timestamp=early))
    assert outcome.status is ChangeStatus.END_BEFORE_START
    assert outcome.task == task
    assert await stored(engine, task.task_id) == task
    assert await changes_of(engine, task.task_id) == 0


async def test_an_end_at_the_start_instant_completes_with_zero_duration(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    [outcome] = await applied(engine, end(task, timestamp=START_AT))
    assert outcome.status is ChangeStatus.APPLIED
    assert outcome.task is not None
    assert outcome.task.completion is not None
    assert outcome.task.completion.duration_ms == 0


@pytest.mark.parametrize(
    ("tenant", "command_tenant", "other_service"),
    [
        pytest.param(None, None, True, id="another service's task"),
        pytest.param("acme", "globex", False, id="another tenant's task"),
        pytest.param("acme", None, False, id="a tenant's task asked without a tenant"),
        pytest.param(None, "acme", False, id="a task without tenant asked by a tenant"),
    ],
)
async def test_a_task_out_of_the_caller_s_reach_is_not_found(
    engine: AsyncEngine, tenant: str | None, command_tenant: str | None, other_service: bool
) -> None:
    task = await one_task(engine, tenant=tenant)
    target = task._replace(service_id=new_service()) if other_service else task
    commands: list[ChangeCommand] = [
        end(target, tenant=command_tenant),
        extension(target, "Survey", {"q": 1}, tenant=command_tenant),
    ]
    outcomes = await applied(engine, *commands)
    assert [(o.status, o.task, o.change) for o in outcomes] == [
        (ChangeStatus.NOT_FOUND, None, None)
    ] * 2
    assert await stored(engine, task.task_id) == task


async def test_an_unknown_task_id_is_not_found(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    [outcome] = await applied(engine, end(task._replace(task_id=2**31 - 1)))
    assert outcome.status is ChangeStatus.NOT_FOUND


async def test_a_tenant_s_own_task_is_changed(engine: AsyncEngine) -> None:
    task = await one_task(engine, tenant="acme")
    outcomes = await applied(
        engine, extension(task, "x", {"a": 1}, tenant="acme"), end(task, tenant="acme")
    )
    assert [o.status for o in outcomes] == [ChangeStatus.APPLIED] * 2


async def test_an_extension_update_replaces_one_key_and_keeps_the_others_byte_for_byte(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine, attached={"Survey": {"q": 9}, "Proposal": [{"seats": 2}]})
    # Stored text in spellings orjson would not write: each value must survive as it is.
    verbatim = '{"a":1.50,"Survey":{"q" : 9},"b":[1e2, "\\u00e9"],"Proposal":[{"seats":2}]}'
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE tasks SET attached_data_text = :t WHERE task_id = :id"),
            {"t": verbatim, "id": task.task_id},
        )
    command = extension(task, "Survey", {"question1": 7, "note": "new"})
    [outcome] = await applied(engine, command)
    assert outcome.status is ChangeStatus.APPLIED
    expected = (
        '{"a":1.50,"Survey":{"question1":7,"note":"new"},"b":[1e2, "\\u00e9"],'
        '"Proposal":[{"seats":2}]}'
    )
    assert outcome.task is not None
    assert outcome.task.attached_data_json == expected
    assert outcome.change == RecordedChange(
        command.identity,
        task.task_id,
        ChangeKind.EXTENSION,
        "Survey",
        '{"question1":7,"note":"new"}',
    )
    assert outcome.task.updated_at is not None
    assert await stored(engine, task.task_id) == outcome.task


async def test_a_new_extension_is_added_at_the_end(engine: AsyncEngine) -> None:
    task = await one_task(engine, attached={"a": 1, 'Key "quoted"\t': {"b": 2}})
    value: list[dict[str, Any]] = [
        {"car": "S.U.V.", "price": 70000},
        {"car": "cabriolet", "note": "é\u2028"},
    ]
    [outcome] = await applied(engine, extension(task, "Proposal", value))
    assert outcome.task is not None
    text_now = outcome.task.attached_data_json
    assert (
        text_now == orjson.dumps({"a": 1, 'Key "quoted"\t': {"b": 2}, "Proposal": value}).decode()
    )
    assert await stored(engine, task.task_id) == outcome.task


async def test_an_extension_of_a_task_without_attached_data_is_its_only_key(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine, attached={})
    [outcome] = await applied(engine, extension(task, "x", {"y": None}))
    assert outcome.task is not None
    assert outcome.task.attached_data_json == '{"x":{"y":null}}'
    assert await stored(engine, task.task_id) == outcome.task


async def test_every_replacement_is_stored_in_turn(engine: AsyncEngine) -> None:
    task = await one_task(engine, attached={"a": {"old": True}, "b": 1})
    outcomes = await applied(
        engine, extension(task, "a", [{"new": 1}]), extension(task, "c", {"z": [1, 2]})
    )
    final = outcomes[-1].task
    assert final is not None
    assert final.attached_data_json == '{"a":[{"new":1}],"b":1,"c":{"z":[1,2]}}'
    assert await stored(engine, task.task_id) == final


async def test_changes_of_one_task_in_one_batch_apply_in_record_order(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine, attached={"a": 0})
    batch: list[ChangeCommand] = [
        extension(task, "a", {"v": 1}),
        end(task, timestamp=END_AT),
        extension(task, "a", {"v": 2}),
        end(task, timestamp=END_AT + timedelta(seconds=1)),
        extension(task, "b", {"v": 3}),
    ]
    outcomes = await applied(engine, *batch)
    assert [o.status for o in outcomes] == [
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
        ChangeStatus.ALREADY_COMPLETED,
        ChangeStatus.APPLIED,
    ]
    # Each outcome carries the task as it was right after its own change.
    texts = [o.task.attached_data_json if o.task else None for o in outcomes]
    assert texts == [
        '{"a":{"v":1}}',
        '{"a":{"v":1}}',
        '{"a":{"v":2}}',
        '{"a":{"v":2}}',
        '{"a":{"v":2},"b":{"v":3}}',
    ]
    assert outcomes[0].task is not None
    assert outcomes[0].task.completion is None
    completions = [o.task.completion for o in outcomes[1:] if o.task]
    assert all(c is not None and c.identity == batch[1].identity for c in completions)


async def test_tasks_with_different_numbers_of_changes_in_one_batch_each_get_theirs_in_order(
    engine: AsyncEngine,
) -> None:
    # Rounds of unequal sizes (the k-th change of every task is round k: 3, 2 and 1 changes
    # here), interleaved; a replay of one change and an unknown task ride along.
    a, b, c = await started(engine, *(start(new_service(), attached={}) for _ in range(3)))
    replayed = extension(c, "seen", {"v": 0})
    await applied(engine, replayed)
    unknown = end(a)._replace(task_id=a.task_id + 1_000_000)
    batch: list[ChangeCommand] = [
        extension(a, "n", {"v": 1}),
        extension(b, "n", {"v": 1}),
        replayed,
        extension(a, "n", {"v": 2}),
        unknown,
        extension(c, "n", {"v": 1}),
        end(b, timestamp=END_AT),
        end(a, timestamp=END_AT),
    ]
    outcomes = await applied(engine, *batch)
    assert [o.identity for o in outcomes] == [command.identity for command in batch]
    assert [o.status for o in outcomes] == [
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
        ChangeStatus.REPLAYED,
        ChangeStatus.APPLIED,
        ChangeStatus.NOT_FOUND,
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
    ]
    shown = [(o.task.task_id, o.task.attached_data_json) if o.task else None for o in outcomes]
    assert shown == [
        (a.task_id, '{"n":{"v":1}}'),
        (b.task_id, '{"n":{"v":1}}'),
        (c.task_id, '{"seen":{"v":0}}'),
        (a.task_id, '{"n":{"v":2}}'),
        None,
        (c.task_id, '{"seen":{"v":0},"n":{"v":1}}'),
        (b.task_id, '{"n":{"v":1}}'),
        (a.task_id, '{"n":{"v":2}}'),
    ]
    assert [await changes_of(engine, t.task_id) for t in (a, b, c)] == [3, 2, 2]


async def test_a_batch_of_changes_to_many_tasks_is_one_round_trip(engine: AsyncEngine) -> None:
    tasks = await started(engine, *(start(new_service()) for _ in range(4)))
    batch: list[ChangeCommand] = [extension(t, "x", {"i": t.task_id}) for t in tasks]
    batch += [end(t, timestamp=END_AT) for t in tasks]
    async with SqlUnitOfWork(engine) as uow:
        with statements(engine) as sent:
            outcomes = await uow.tasks.apply_changes(batch)
        await uow.commit()
    assert len(sent) == 1
    assert [o.identity for o in outcomes] == [c.identity for c in batch]
    assert all(o.status is ChangeStatus.APPLIED for o in outcomes)


async def test_an_empty_batch_asks_nothing_of_the_database(engine: AsyncEngine) -> None:
    async with SqlUnitOfWork(engine) as uow:
        with statements(engine) as sent:
            assert await uow.tasks.apply_changes([]) == []
    assert sent == []


async def test_changes_the_database_refuses_are_the_event_s_fault(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    async with SqlUnitOfWork(engine) as uow:
        with pytest.raises(UnstorableEventError):
            await uow.tasks.apply_changes([extension(task, "x", {"nul": "a\u0000b"})])
    assert await stored(engine, task.task_id) == task
