"""Replays through the repository against the real PostgreSQL: a stored identity (a change, a
start or a rejection) answers what is stored and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.changes import change_input
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeStatus
from tests.integration.test_repository import (
    end,
    engine_for,
    extension,
    new_identity,
    new_service,
    rejection,
    start,
    started,
    stored,
)
from tests.integration.test_repository_changes import END_AT, applied, changes_of, one_task


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


async def test_a_replayed_end_answers_the_same_and_changes_nothing(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    command = end(task, disposition="resolved", timestamp=END_AT)
    [first] = await applied(engine, command)
    again = command._replace(fields={"disposition": "other"})
    [replay] = await applied(engine, again)
    assert replay.status is ChangeStatus.REPLAYED
    assert (replay.change, replay.task) == (first.change, first.task)
    assert await stored(engine, task.task_id) == first.task
    assert await changes_of(engine, task.task_id) == 1


async def test_an_end_known_only_from_the_task_s_completion_is_a_replay(
    engine: AsyncEngine,
) -> None:
    # As after a rebuild that restored the completion but not the change's record.
    task = await one_task(engine)
    command = end(task, timestamp=END_AT)
    [first] = await applied(engine, command)
    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM task_changes WHERE event_id = :id"), {"id": command.identity.id}
        )
    [replay] = await applied(engine, command)
    assert replay.status is ChangeStatus.REPLAYED
    assert (replay.change, replay.task) == (first.change, first.task)


async def test_a_replayed_extension_answers_its_stored_value_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine, attached={"Survey": {"q": 1}})
    first = extension(task, "Survey", {"q": 2})
    later = extension(task, "Survey", {"q": 3})
    [applied_first, _] = await applied(engine, first, later)
    [replay] = await applied(engine, first._replace(value={"q": 99}))
    assert replay.status is ChangeStatus.REPLAYED
    assert replay.change == applied_first.change
    assert replay.task is not None
    assert replay.task.attached_data_json == '{"Survey":{"q":3}}'  # the later update stands
    assert await stored(engine, task.task_id) == replay.task
    assert await changes_of(engine, task.task_id) == 2


async def test_an_identity_twice_in_one_batch_applies_once(engine: AsyncEngine) -> None:
    task = await one_task(engine, attached={})
    command = extension(task, "x", {"v": 1})
    outcomes = await applied(engine, command, command._replace(value={"v": 2}))
    assert [o.status for o in outcomes] == [ChangeStatus.APPLIED, ChangeStatus.REPLAYED]
    assert outcomes[1].change == outcomes[0].change
    assert outcomes[1].task == outcomes[0].task


async def test_an_identity_reused_for_another_task_in_one_batch_answers_the_first_change(
    engine: AsyncEngine,
) -> None:
    first_task, second_task = await started(engine, start(new_service()), start(new_service()))
    command = extension(first_task, "x", {"v": 1})
    reused = extension(second_task, "x", {"v": 2}, identity=command.identity)
    outcomes = await applied(engine, command, reused)
    assert [o.status for o in outcomes] == [ChangeStatus.APPLIED, ChangeStatus.REPLAYED]
    assert (outcomes[1].change, outcomes[1].task) == (outcomes[0].change, outcomes[0].task)
    assert await stored(engine, second_task.task_id) == second_task


async def test_the_database_function_refuses_an_identity_given_twice(engine: AsyncEngine) -> None:
    # The repository answers repeats itself; the function takes each identity once.
    task = await one_task(engine)
    command = change_input(extension(task, "x", {"v": 1}))
    async with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="given more than once"):
            await conn.execute(
                text("SELECT * FROM apply_task_changes(CAST(:c AS json))"),
                {"c": orjson.dumps([command, command]).decode()},
            )


async def test_the_identity_of_a_stored_start_answers_that_task(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    other = await one_task(engine)
    [outcome] = await applied(engine, end(other, identity=task.identity))
    assert (outcome.status, outcome.task, outcome.change) == (
        ChangeStatus.STORED_START,
        task,
        None,
    )
    assert await stored(engine, other.task_id) == other


async def test_the_identity_of_a_stored_rejection_answers_that_rejection(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    refused = rejection(new_identity(), task.service_id, task_id=task.task_id)
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.record_rejections([refused])
        await uow.commit()
    [outcome] = await applied(engine, end(task, identity=refused.identity))
    assert outcome.status is ChangeStatus.STORED_REJECTION
    assert outcome.rejection == refused
    assert outcome.task is None
    assert await stored(engine, task.task_id) == task
