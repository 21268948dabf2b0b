"""Racing consumers changing the same tasks, against the real PostgreSQL: each change is
applied once, the first completion stands, a repeated identity is a replay or a retriable
failure, never a second application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeCommand, ChangeOutcome, ChangeStatus, StorageUnavailableError
from tests.integration.test_repository import (
    end,
    engine_for,
    extension,
    new_service,
    start,
    started,
    stored,
)
from tests.integration.test_repository_changes import applied, changes_of, one_task


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


async def _race(
    engine: AsyncEngine, first: ChangeCommand, second: ChangeCommand
) -> Sequence[ChangeOutcome]:
    """`first` applied but not committed while `second` waits for the task, then commits."""
    async with SqlUnitOfWork(engine) as one, SqlUnitOfWork(engine) as two:
        [outcome_one] = await one.tasks.apply_changes([first])
        waiting = asyncio.create_task(two.tasks.apply_changes([second]))
        await _until_a_lock_wait(engine)
        assert not waiting.done()
        await one.commit()
        [outcome_two] = await waiting
        await two.commit()
    return outcome_one, outcome_two


async def _until_a_lock_wait(engine: AsyncEngine) -> None:
    """Return once some transaction waits for a lock (the tests of this session run one by
    one, so it is the racing one)."""
    query = text("SELECT count(*) FROM pg_locks WHERE NOT granted")
    async with engine.connect() as conn:
        while not (await conn.execute(query)).scalar_one():
            await asyncio.sleep(0.01)


async def test_an_identity_recorded_concurrently_for_another_task_fails_the_batch_retriably(
    engine: AsyncEngine,
) -> None:
    first_task, second_task = await started(engine, start(new_service()), start(new_service()))
    command = extension(first_task, "x", {"v": 1})
    reused = extension(second_task, "x", {"v": 2}, identity=command.identity)
    async with SqlUnitOfWork(engine) as one, SqlUnitOfWork(engine) as two:
        await one.tasks.apply_changes([command])
        waiting = asyncio.create_task(two.tasks.apply_changes([reused]))
        await _until_a_lock_wait(engine)
        await one.commit()
        with pytest.raises(StorageUnavailableError, match="recorded concurrently") as caught:
            await waiting
    assert caught.value.retriable
    [retried] = await applied(engine, reused)
    assert retried.status is ChangeStatus.REPLAYED
    assert retried.change is not None
    assert retried.change.task_id == first_task.task_id
    assert await stored(engine, second_task.task_id) == second_task


async def test_racing_ends_with_different_identities_complete_the_task_once(
    engine: AsyncEngine,
) -> None:
    task = await one_task(engine)
    one, two = await _race(engine, end(task, disposition="a"), end(task, disposition="b"))
    assert (one.status, two.status) == (ChangeStatus.APPLIED, ChangeStatus.ALREADY_COMPLETED)
    assert two.task == one.task
    assert await stored(engine, task.task_id) == one.task


async def test_racing_copies_of_one_end_apply_it_once(engine: AsyncEngine) -> None:
    task = await one_task(engine)
    command = end(task, disposition="a")
    one, two = await _race(engine, command, command)
    assert (one.status, two.status) == (ChangeStatus.APPLIED, ChangeStatus.REPLAYED)
    assert (two.task, two.change) == (one.task, one.change)
    assert await changes_of(engine, task.task_id) == 1


async def test_racing_copies_of_one_extension_update_apply_it_once(engine: AsyncEngine) -> None:
    task = await one_task(engine, attached={})
    command = extension(task, "x", {"v": 1})
    one, two = await _race(engine, command, command)
    assert (one.status, two.status) == (ChangeStatus.APPLIED, ChangeStatus.REPLAYED)
    assert (two.task, two.change) == (one.task, one.change)
    assert await changes_of(engine, task.task_id) == 1
