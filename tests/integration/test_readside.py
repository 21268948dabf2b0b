"""The read side (consumer.readside.TaskReader) against the real PostgreSQL: a task's whole
state, Query Tasks with each filter and paging, tenant isolation, request outcomes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.contract import stored_task
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeCommand, ChangeOutcome, ChangeStatus, StartCommand, Task
from consumer.readside import (
    QUERY_LIMIT_DEFAULT,
    QUERY_LIMIT_MAX,
    DatabaseSettings,
    StoredChange,
    TaskReader,
    TaskState,
)
from schemas.replies import EventRef, TaskRejected
from tests.integration.test_repository import (
    START_AT,
    end,
    engine_for,
    extension,
    new_identity,
    new_service,
    rejection,
    start,
    started,
)

END_AT = START_AT + timedelta(seconds=90)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


@pytest.fixture(scope="module")
async def reader(database_url: str) -> AsyncIterator[TaskReader]:
    async with TaskReader(DatabaseSettings(url=database_url)) as task_reader:
        yield task_reader


async def applied(engine: AsyncEngine, *commands: ChangeCommand) -> list[ChangeOutcome]:
    async with SqlUnitOfWork(engine) as uow:
        outcomes = await uow.tasks.apply_changes(commands)
        await uow.commit()
    assert all(o.status is ChangeStatus.APPLIED for o in outcomes)
    return outcomes


async def test_a_task_reads_back_whole_with_its_completion_and_extensions(
    engine: AsyncEngine, reader: TaskReader
) -> None:
    service = new_service()
    [task] = await started(
        engine, start(service, tenant="acme", group="sales", state_id=4, task_type="claim")
    )
    done = end(
        task,
        tenant="acme",
        timestamp=END_AT,
        disposition=12,
        disposition_desc="paid",
        attached={"Survey": {"score": 9}},
    )
    outcomes = await applied(
        engine, extension(task, "Proposal", [{"seats": 2}], tenant="acme"), done
    )
    read = await reader.task(service, task.task_id, "acme")
    after_end = outcomes[-1].task
    assert read is not None
    assert after_end is not None
    assert read == stored_task(after_end)
    assert (read.tenant, read.group, read.state_id, read.task_type) == ("acme", "sales", 4, "claim")
    assert read.attached_data == {"Survey": {"q": 9}, "Proposal": [{"seats": 2}]}
    assert read.completed == {
        "disposition": 12,
        "disposition_desc": "paid",
        "timestamp": "2026-01-31T12:01:30.123Z",
        "Survey": {"score": 9},
    }
    assert list(read.completed) == ["disposition", "disposition_desc", "timestamp", "Survey"]
    assert (read.duration, read.disposition, read.disposition_desc) == (90_000, 12, "paid")
    assert read.completed_event == EventRef(source=done.identity.source, id=done.identity.id)
    assert read.updated_at is not None


async def test_an_active_task_reads_back_without_completion(
    engine: AsyncEngine, reader: TaskReader
) -> None:
    [task] = await started(engine, start(new_service()))
    read = await reader.task(task.service_id, task.task_id)
    assert read is not None
    assert (read.completed, read.duration, read.disposition, read.completed_event) == (
        None,
        None,
        None,
        None,
    )
    assert (read.tenant, read.group, read.updated_at) == (None, None, None)


@pytest.mark.parametrize(
    ("stored_tenant", "asking_tenant", "asking_service"),
    [
        pytest.param("acme", "globex", "own", id="another tenant"),
        pytest.param("acme", None, "own", id="no tenant asking for a tenant's task"),
        pytest.param(None, "acme", "own", id="a tenant asking for a task without tenant"),
        pytest.param("acme", "acme", "other", id="another service"),
        pytest.param("acme", "acme", "unknown id", id="an unknown task id"),
    ],
)
async def test_a_task_out_of_the_caller_s_reach_reads_as_unknown(
    engine: AsyncEngine,
    reader: TaskReader,
    stored_tenant: str | None,
    asking_tenant: str | None,
    asking_service: str,
) -> None:
    [task] = await started(engine, start(new_service(), tenant=stored_tenant))
    service = new_service() if asking_service == "other" else task.service_id
    task_id = 2**31 - 1 if asking_service == "unknown id" else task.task_id
    assert await reader.task(service, task_id, asking_tenant) is None
    assert await reader.task(task.service_id, task.task_id, stored_tenant) is not None


async def test_task_ids_outside_the_32_bit_range_read_as_unknown(reader: TaskReader) -> None:
    assert await reader.task(new_service(), 0) is None
    assert await reader.task(new_service(), 2**31) is None


# --- Query Tasks -----------------------------------------------------------------------------


async def _seeded(engine: AsyncEngine, tenant: str | None = None) -> dict[str, Any]:
    """One service's tasks of every kind: types by id and name, states, some completed."""
    service = new_service()
    specs: list[dict[str, Any]] = [
        {"task_type": 1, "state_id": 10},
        {"task_type": "email", "state_id": 10},
        {"task_type": 2, "state_id": 20},
        {"task_type": "chat"},
        {"state_id": 10},
        {"task_type": 1, "state_id": 20},
        {"task_type": "email"},
        {},
    ]
    commands: list[StartCommand] = [start(service, tenant=tenant, **spec) for spec in specs]
    tasks = await started(engine, *commands)
    completed = [tasks[i] for i in (0, 1, 2, 6)]
    await applied(engine, *(end(t, tenant=tenant, timestamp=END_AT) for t in completed))
    return {
        "service": service,
        "tasks": tasks,
        "completed": {t.task_id for t in completed},
    }


def _ids(found: list[Any]) -> list[int]:
    return [t.task_id for t in found]


def _where(tasks: list[Task], keep: Any) -> list[int]:
    return [t.task_id for t in tasks if keep(t)]


@pytest.fixture(scope="module")
async def seeded(engine: AsyncEngine) -> dict[str, Any]:
    return await _seeded(engine)


async def test_query_lists_a_service_s_tasks_in_task_id_order(
    reader: TaskReader, seeded: dict[str, Any]
) -> None:
    found = await reader.query(seeded["service"])
    assert _ids(found) == sorted(t.task_id for t in seeded["tasks"])


@pytest.mark.parametrize("state", [TaskState.ACTIVE, TaskState.COMPLETED, "completed"])
async def test_query_lists_active_or_completed_tasks(
    reader: TaskReader, seeded: dict[str, Any], state: TaskState | str
) -> None:
    found = await reader.query(seeded["service"], state=state)
    want_completed = TaskState(state) is TaskState.COMPLETED
    expected = _where(
        seeded["tasks"], lambda t: (t.task_id in seeded["completed"]) == want_completed
    )
    assert _ids(found) == expected
    assert all((t.completed is not None) == want_completed for t in found)


async def test_query_by_state_id(reader: TaskReader, seeded: dict[str, Any]) -> None:
    found = await reader.query(seeded["service"], state_id=10)
    assert _ids(found) == _where(seeded["tasks"], lambda t: t.fields["state_id"] == 10)


@pytest.mark.parametrize(
    "types",
    [
        pytest.param([1], id="one id"),
        pytest.param(["email"], id="one name"),
        pytest.param([1, "email", 2], id="ids and names"),
        pytest.param(["chat", "chat", 1, 1], id="repeated values"),
        pytest.param([999, "nothing"], id="no such types"),
    ],
)
async def test_query_by_task_types(
    reader: TaskReader, seeded: dict[str, Any], types: list[int | str]
) -> None:
    found = await reader.query(seeded["service"], task_types=types)
    assert _ids(found) == _where(seeded["tasks"], lambda t: t.fields["task_type"] in types)


@pytest.mark.parametrize("state", list(TaskState))
@pytest.mark.parametrize(
    ("state_id", "types"),
    [(10, ()), (None, (1, "email")), (10, (1, "email")), (20, (2,)), (None, ("chat",))],
)
async def test_query_filters_combine(
    reader: TaskReader,
    seeded: dict[str, Any],
    state: TaskState,
    state_id: int | None,
    types: tuple[int | str, ...],
) -> None:
    found = await reader.query(seeded["service"], state=state, state_id=state_id, task_types=types)

    def matches(task: Task) -> bool:
        completed = task.task_id in seeded["completed"]
        return (
            (state is TaskState.ALL or completed == (state is TaskState.COMPLETED))
            and (state_id is None or task.fields["state_id"] == state_id)
            and (not types or task.fields["task_type"] in types)
        )

    assert _ids(found) == _where(seeded["tasks"], matches)


async def test_the_seeded_tasks_give_every_combination_something_to_find(
    seeded: dict[str, Any],
) -> None:
    completed = seeded["completed"]
    tasks = seeded["tasks"]
    assert {t.task_id in completed for t in tasks if t.fields["state_id"] == 10} == {True, False}
    assert {t.task_id in completed for t in tasks if t.fields["task_type"] == 1} == {True, False}


@pytest.mark.parametrize("types", [(), (1, "email", "chat", 2)])
async def test_query_pages_with_limit_and_after(
    reader: TaskReader, seeded: dict[str, Any], types: tuple[int | str, ...]
) -> None:
    pages: list[list[int]] = []
    after = None
    while page := _ids(
        await reader.query(seeded["service"], task_types=types, limit=3, after=after)
    ):
        pages.append(page)
        after = page[-1]
    everything = _ids(await reader.query(seeded["service"], task_types=types))
    assert [i for page in pages for i in page] == everything
    assert [len(page) for page in pages[:-1]] == [3] * (len(pages) - 1)


async def test_query_takes_100_tasks_by_default_and_at_most_1000(
    engine: AsyncEngine, reader: TaskReader
) -> None:
    service = new_service()
    await started(engine, *(start(service) for _ in range(QUERY_LIMIT_DEFAULT + 1)))
    assert len(await reader.query(service)) == QUERY_LIMIT_DEFAULT
    assert len(await reader.query(service, limit=QUERY_LIMIT_MAX)) == QUERY_LIMIT_DEFAULT + 1
    for limit in (0, QUERY_LIMIT_MAX + 1):
        with pytest.raises(ValueError, match=re.escape("limit must be 1 .. 1000")):
            await reader.query(service, limit=limit)
    with pytest.raises(ValueError, match="after must be a task id"):
        await reader.query(service, after=-1)
    with pytest.raises(ValueError, match="'finished' is not a valid TaskState"):
        await reader.query(service, state="finished")


async def test_query_sees_only_the_caller_s_tenant(engine: AsyncEngine, reader: TaskReader) -> None:
    service = new_service()
    commands = [start(service, tenant=tenant) for tenant in ("acme", None, "globex", "acme")]
    tasks = await started(engine, *commands)
    for tenant in ("acme", "globex", None):
        for state in TaskState:
            found = await reader.query(service, tenant, state=state)
            if state is TaskState.COMPLETED:
                assert found == []
            else:
                assert _ids(found) == _where(tasks, lambda t, tenant=tenant: t.tenant == tenant)
    assert await reader.query(service, "initech") == []


async def test_query_of_tenants_with_filters(engine: AsyncEngine, reader: TaskReader) -> None:
    acme, globex = await _seeded(engine, "acme"), await _seeded(engine, "globex")
    for seeded, tenant in ((acme, "acme"), (globex, "globex")):
        found = await reader.query(seeded["service"], tenant, state_id=10, task_types=[1])
        assert _ids(found) == [seeded["tasks"][0].task_id]
        assert await reader.query(seeded["service"], None, state_id=10, task_types=[1]) == []


# --- request outcomes ------------------------------------------------------------------------


async def test_request_outcome_answers_every_kind_of_request(
    engine: AsyncEngine, reader: TaskReader
) -> None:
    [task] = await started(engine, start(new_service()))
    update = extension(task, "Proposal", [{"seats": 2}])
    done = end(task, timestamp=END_AT)
    await applied(engine, update, done)
    refused = rejection(new_identity(), task.service_id, task_id=task.task_id)
    async with SqlUnitOfWork(engine) as uow:
        await uow.tasks.record_rejections([refused])
        await uow.commit()
    now = await reader.task(task.service_id, task.task_id)
    assert now is not None

    started_answer = await reader.request_outcome(task.identity.source, task.identity.id)
    assert started_answer == now
    assert await reader.outcome(task.identity.source, task.identity.id) == now

    update_answer = await reader.request_outcome(update.identity.source, update.identity.id)
    assert update_answer == StoredChange("extension", now, "Proposal", [{"seats": 2}])
    assert isinstance(update_answer, StoredChange)
    assert update_answer.service_id == task.service_id
    assert await reader.request_outcome(done.identity.source, done.identity.id) == StoredChange(
        "end", now
    )

    refused_answer = await reader.request_outcome(refused.identity.source, refused.identity.id)
    assert isinstance(refused_answer, TaskRejected)
    assert (refused_answer.task_id, refused_answer.status) == (task.task_id, 404)
    assert await reader.outcome(refused.identity.source, refused.identity.id) == refused_answer

    pending = new_identity()
    assert await reader.request_outcome(pending.source, pending.id) is None


async def test_outcome_of_a_start_request_is_not_a_change(
    engine: AsyncEngine, reader: TaskReader
) -> None:
    [task] = await started(engine, start(new_service()))
    update = extension(task, "x", {"y": 1})
    await applied(engine, update)
    assert await reader.outcome(update.identity.source, update.identity.id) is None
