"""The unit of work and the start repository against the real PostgreSQL (a migrated database).

Each test uses services of its own (random ids) and identities of its own instead of truncating.
The helpers here build commands for the other repository and read-side tests too.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.engine import build_engine
from consumer.db.reads import SELECT_LIST, row_to_task
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import (
    EndCommand,
    EventIdentity,
    ExtensionCommand,
    Position,
    Rejection,
    StartCommand,
    StorageUnavailableError,
    Task,
    UnstorableEventError,
)

SOURCE = "urn:test:repository"
POSITION = Position(topic="ucs.tasks.start", partition=0, offset=7)
START_AT = datetime(2026, 1, 31, 12, 0, 0, 123000, tzinfo=UTC)


def new_service() -> int:
    """A service id no other test uses."""
    return secrets.randbelow(2**62) + 1


def new_identity() -> EventIdentity:
    """An event identity no other test uses."""
    return EventIdentity(source=SOURCE, id=uuid.uuid4().hex)


def start(
    service_id: int,
    *,
    tenant: str | None = None,
    group: str | None = None,
    attached: dict[str, Any] | None = None,
    **fields: Any,
) -> StartCommand:
    """A start command; `fields` are standard fields (the timestamp defaults to START_AT)."""
    fields.setdefault("timestamp", START_AT)
    attached = {"Survey": {"q": 9}} if attached is None else attached
    return StartCommand(new_identity(), service_id, fields, attached, POSITION, tenant, group)


def end(
    task: Task,
    *,
    tenant: str | None = None,
    attached: dict[str, Any] | None = None,
    identity: EventIdentity | None = None,
    **fields: Any,
) -> EndCommand:
    """An end command for `task` (its service; `tenant` as given)."""
    return EndCommand(
        identity or new_identity(),
        task.service_id,
        task.task_id,
        fields,
        attached or {},
        POSITION,
        tenant,
    )


def extension(
    task: Task,
    name: str,
    value: dict[str, Any] | list[dict[str, Any]],
    *,
    tenant: str | None = None,
    identity: EventIdentity | None = None,
) -> ExtensionCommand:
    """An extension update of `task` (its service; `tenant` as given)."""
    return ExtensionCommand(
        identity or new_identity(), task.service_id, task.task_id, name, value, POSITION, tenant
    )


def rejection(identity: EventIdentity, service_id: int, task_id: int | None = None) -> Rejection:
    """A recorded-rejection value (404, as for an unknown task)."""
    body = {"message": "no such task", "exception": "x", "errors": []}
    return Rejection(identity, service_id, 404, "task_not_found", body, POSITION, task_id)


async def engine_for(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's migrated database (each module's `engine` fixture)."""
    built = build_engine(database_url)
    yield built
    await built.dispose()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


async def started(engine: AsyncEngine, *commands: StartCommand) -> list[Task]:
    """The tasks of `commands`, started and committed."""
    async with SqlUnitOfWork(engine) as uow:
        found = await uow.tasks.add_or_get(commands)
        await uow.commit()
    return [found[c.identity][0] for c in commands]


async def stored(engine: AsyncEngine, task_id: int) -> Task | None:
    """The task as a fresh connection reads it (committed state only)."""
    statement = text(f"SELECT {SELECT_LIST} FROM tasks WHERE task_id = :id")  # noqa: S608 - fixed columns
    async with engine.connect() as conn:
        row = (await conn.execute(statement, {"id": task_id})).mappings().first()
    return None if row is None else row_to_task(row)


async def service_count(engine: AsyncEngine, service_id: int) -> int:
    """How many committed tasks the service has."""
    async with engine.connect() as conn:
        statement = text("SELECT count(*) FROM tasks WHERE service_id = :s")
        return int((await conn.execute(statement, {"s": service_id})).scalar_one())


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """The SQL statements the engine sends while the block runs (one per round trip)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


async def test_work_is_rolled_back_unless_committed(engine: AsyncEngine) -> None:
    service = new_service()
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.add_or_get([start(service)])
    assert await service_count(engine, service) == 0


async def test_committed_work_is_kept(engine: AsyncEngine) -> None:
    service = new_service()
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.add_or_get([start(service)])
        await uow.commit()
    assert await service_count(engine, service) == 1


async def test_work_is_rolled_back_when_the_block_raises(engine: AsyncEngine) -> None:
    service = new_service()

    class BoomError(Exception):
        pass

    async def fail_midway() -> None:
        async with SqlUnitOfWork(engine) as uow:
            await uow.tasks.add_or_get([start(service)])
            raise BoomError

    with pytest.raises(BoomError):
        await fail_midway()
    assert await service_count(engine, service) == 0


async def test_rollback_discards_the_work_so_far_and_the_unit_of_work_goes_on(
    engine: AsyncEngine,
) -> None:
    service = new_service()
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.add_or_get([start(service)])
        await uow.rollback()
        await uow.tasks.add_or_get([start(service, state_id=2)])
        await uow.commit()
    async with engine.connect() as conn:
        states = await conn.execute(
            text("SELECT state_id FROM tasks WHERE service_id = :s"), {"s": service}
        )
        assert states.scalars().all() == [2]


async def test_a_unit_of_work_used_outside_its_block_says_so(engine: AsyncEngine) -> None:
    uow = SqlUnitOfWork(engine)
    with pytest.raises(RuntimeError, match="outside `async with`"):
        await uow.commit()


async def test_a_start_records_its_tenant_and_group(engine: AsyncEngine) -> None:
    service = new_service()
    command = start(service, tenant="acme", group="sales", state_id=3)
    async with SqlUnitOfWork(engine) as uow:
        found = await uow.tasks.add_or_get([command])
        await uow.commit()
    task, created = found[command.identity]
    assert created
    assert (task.tenant, task.group) == ("acme", "sales")
    assert await stored(engine, task.task_id) == task


async def test_a_start_in_single_tenant_mode_stores_no_tenant(engine: AsyncEngine) -> None:
    [task] = await started(engine, start(new_service()))
    reread = await stored(engine, task.task_id)
    assert reread is not None
    assert (reread.tenant, reread.group, reread.completion, reread.updated_at) == (
        None,
        None,
        None,
        None,
    )


async def test_a_batch_of_starts_is_one_round_trip(engine: AsyncEngine) -> None:
    service = new_service()
    commands = [start(service, tenant="acme", group=f"g{i}") for i in range(5)]
    async with SqlUnitOfWork(engine) as uow:
        with statements(engine) as sent:
            found = await uow.tasks.add_or_get(commands)
        await uow.commit()
    assert len(sent) == 1
    ids = [found[c.identity][0].task_id for c in commands]
    assert ids == sorted(ids)
    assert [found[c.identity][0].group for c in commands] == [f"g{i}" for i in range(5)]


async def test_a_replayed_start_answers_its_stored_task_and_takes_no_id(
    engine: AsyncEngine,
) -> None:
    service = new_service()
    first = start(service, tenant="acme", group="sales")
    [task] = await started(engine, first)
    replay = first._replace(tenant="other", group=None, attached_data={"changed": True})
    async with SqlUnitOfWork(engine) as uow:
        found = await uow.tasks.add_or_get([replay])
        await uow.commit()
    assert found[first.identity] == (task, False)
    assert await service_count(engine, service) == 1


async def test_a_start_with_the_identity_of_a_recorded_change_creates_no_task(
    engine: AsyncEngine,
) -> None:
    service = new_service()
    [task] = await started(engine, start(service))
    change = extension(task, "Survey", {"q": 10})
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.apply_changes([change])
        await uow.commit()
    clash = start(service)._replace(identity=change.identity)
    async with SqlUnitOfWork(engine) as uow:
        found = await uow.tasks.add_or_get([clash])
        await uow.commit()
    answered, created = found[change.identity]
    assert not created
    assert answered.task_id == task.task_id
    assert answered.attached_data_json == '{"Survey":{"q":10}}'
    assert await service_count(engine, service) == 1


async def test_rejections_are_recorded_once_with_the_task_they_named(
    engine: AsyncEngine,
) -> None:
    service = new_service()
    refused = rejection(new_identity(), service, task_id=42)
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.record_rejections([refused])
        await uow.tasks.record_rejections([refused._replace(status=400)])
        await uow.commit()
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, task_id FROM rejected_events WHERE service_id = :s"),
            {"s": service},
        )
        assert [tuple(r) for r in rows] == [(404, 42)]


async def test_data_the_database_refuses_is_the_event_s_fault(engine: AsyncEngine) -> None:
    # Validation refuses U+0000 before this point; the database refuses it too (jsonb).
    command = start(new_service(), attached={"nul": "a\u0000b"})
    async with SqlUnitOfWork(engine) as uow:
        with pytest.raises(UnstorableEventError) as caught:
            await uow.tasks.add_or_get([command])
    assert not caught.value.retriable


async def test_an_unreachable_database_is_a_retriable_error() -> None:
    unreachable = build_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        with pytest.raises(StorageUnavailableError) as caught:
            async with SqlUnitOfWork(unreachable):
                pass
        assert caught.value.retriable
    finally:
        await unreachable.dispose()
