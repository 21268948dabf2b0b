"""`ucs-tasks rebuild` restores every task's whole state from the task events log: tasks started,
completed and extension-updated read back identically, and a replay of their changes afterwards
answers the same and changes nothing.

The tasks and their changes are made by the real database code (the repository the consumer
uses), and their log records written with the wire's reply encoder and the consumer's task
layout (`consumer.contract.task_json`), as the consumer publishes them. Rebuild from a log the
consumer itself wrote is in test_tools_lifecycle_consumer.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.contract import task_json
from consumer.db.engine import build_engine
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import (
    ChangeCommand,
    ChangeKind,
    ChangeOutcome,
    ChangeStatus,
    EventIdentity,
    Task,
)
from consumer.readside import TaskReader
from producer_tools.bridge.representation import Extensions, render_task
from producer_tools.tools.rebuild import RebuildOptions, rebuild
from schemas import wire
from tests.integration.test_repository import (
    START_AT,
    end,
    extension,
    new_service,
    start,
    started,
)
from tests.integration.test_tools_replay import fresh_database
from tests.reference import REFERENCE_ATTACHED
from tests.servers import StackSettings

Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
LOCATION = "http://127.0.0.1:8080/genesys/1/cs/service/{}/tasks/{}"


@pytest.fixture
async def engine(settings: StackSettings) -> AsyncIterator[AsyncEngine]:
    built = build_engine(settings.database_url)
    yield built
    await built.dispose()


def reply(task: Task, identity: EventIdentity, reply_type: str, **extra: Any) -> Record:
    """The log record of a reply about `task`, as the consumer publishes it."""
    kind = reply_type.removeprefix("com.genesys.ucs.").removesuffix(".v1")
    payload = {
        "kind": kind,
        "task_id": task.task_id,
        "service_id": task.service_id,
        "location": LOCATION.format(task.service_id, task.task_id),
        "event": {"source": identity.source, "id": identity.id},
        "correlation_id": None,
        "task": task_json(task),
        **extra,
    }
    return wire.encode_reply(
        reply_type=reply_type,
        payload=payload,
        service_id=task.service_id,
        request_source=identity.source,
        request_id=identity.id,
        correlation_id=None,
        time="2026-01-31T12:00:00.000Z",
    )


def created(task: Task) -> Record:
    return reply(task, task.identity, wire.TYPE_TASK_CREATED)


def changed(outcome: ChangeOutcome) -> Record:
    assert outcome.status is ChangeStatus.APPLIED, outcome
    assert outcome.task is not None
    assert outcome.change is not None
    if outcome.change.kind is ChangeKind.END:
        return reply(outcome.task, outcome.identity, wire.TYPE_TASK_COMPLETED)
    assert outcome.change.value_json is not None
    return reply(
        outcome.task,
        outcome.identity,
        wire.TYPE_TASK_EXTENSION_UPDATED,
        extension=outcome.change.extension,
        value=orjson.Fragment(outcome.change.value_json),
    )


async def applied(engine: AsyncEngine, *commands: ChangeCommand) -> list[ChangeOutcome]:
    async with SqlUnitOfWork(engine) as uow:
        outcomes = await uow.tasks.apply_changes(commands)
        await uow.commit()
    return outcomes


async def publish(settings: StackSettings, records: Sequence[Record]) -> None:
    producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(settings.topics.created, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def representations(url: str, tasks: Sequence[Task]) -> list[tuple[str, bytes]]:
    """Each task as the read side returns it (the whole StoredTask as JSON) and as the API
    renders it with every extension."""
    shown: list[tuple[str, bytes]] = []
    async with TaskReader(StackSettings.of(database_url=url).database) as reader:
        for task in tasks:
            item = await reader.task(task.service_id, task.task_id, task.tenant)
            assert item is not None, task
            shown.append((item.model_dump_json(), render_task(item, Extensions(everything=True))))
    return shown


async def changes_recorded(url: str, task_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The task_changes rows of these tasks, `recorded_at` to the millisecond."""
    engine = build_engine(url, 1)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT event_source, event_id, task_id, kind, extension, value,"
                    " date_trunc('milliseconds', recorded_at) AS recorded_at"
                    " FROM task_changes WHERE task_id = ANY(:ids) ORDER BY event_id"
                ),
                {"ids": list(task_ids)},
            )
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


async def test_rebuild_restores_started_completed_and_updated_tasks_identically(
    settings: StackSettings, engine: AsyncEngine, postgres_server_url: str
) -> None:
    service = new_service()
    a, b, c, d = await started(
        engine,
        start(service, tenant="acme", group="sales", attached=dict(REFERENCE_ATTACHED)),
        start(service, attached={"note": "é\n\u2028", "n": 1.5e-7, "big": 2**63}),
        start(service, tenant="acme", state_id=24, task_type=7),
        start(service, attached={}),
    )
    log = [created(task) for task in (a, b, c, d)]
    first = [
        # a: an extension replaced in place, then completed with everything an end carries
        extension(a, "Survey", {"url": "x", "question1": 9}, tenant="acme"),
        end(
            a,
            tenant="acme",
            attached={"Feedback": {"stars": 5}, "note": "«ok»"},
            timestamp=START_AT + timedelta(minutes=5, milliseconds=250),
            disposition="resolved",
            disposition_desc="customer satisfied",
            interaction_id="IX-9",
        ),
        # b: a new extension added at the end (an array of objects)
        extension(b, "Proposal", [{"car type": "S.U.V.", "price": 70000}, {"seats": 8}]),
        # c: completed at the server's time, with a numeric disposition
        end(c, tenant="acme", disposition=7),
    ]
    outcomes = await applied(engine, *first)
    log += [changed(outcome) for outcome in outcomes]
    second = [extension(b, "note", {"replaced": True})]  # a later batch, an existing key
    outcomes += await applied(engine, *second)
    log.append(changed(outcomes[-1]))
    completed_a = outcomes[1].task
    assert completed_a is not None
    log += [
        created(completed_a),  # a's start answered again, after its completion
        log[6],  # a copy of b's first update (redelivered)
        created(b),  # a snapshot from before b's updates, published late: never the last state
    ]
    await publish(settings, log)
    original = await representations(settings.database_url, [a, b, c, d])
    original_changes = await changes_recorded(
        settings.database_url, [a.task_id, b.task_id, c.task_id]
    )
    assert len(original_changes) == 5

    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(database_url=url)
        summary = await rebuild(target)
        assert summary.error is None, summary.error
        assert (summary.sent, summary.counts["changes"], summary.invalid_count) == (4, 5, 0)
        assert summary.duplicate_count == 3  # a's start again, b's update again, b's start again
        assert summary.counts["next_task_id"] == max(t.task_id for t in (a, b, c, d)) + 1

        assert await representations(url, [a, b, c, d]) == original
        assert await changes_recorded(url, [a.task_id, b.task_id, c.task_id]) == original_changes

        # Every change replayed on the rebuilt database answers what it answered, and changes
        # nothing (the identities are known).
        rebuilt = build_engine(url)
        try:
            replayed = await applied(rebuilt, *first, *second)
        finally:
            await rebuilt.dispose()
        assert [o.status for o in replayed] == [ChangeStatus.REPLAYED] * 5
        assert [o.change for o in replayed] == [o.change for o in outcomes]
        assert await representations(url, [a, b, c, d]) == original
        assert await changes_recorded(url, [a.task_id, b.task_id, c.task_id]) == original_changes

        # A second end of a completed task is still refused: the first completion stands.
        rebuilt = build_engine(url)
        try:
            [again] = await applied(rebuilt, end(a, tenant="acme", disposition="other"))
        finally:
            await rebuilt.dispose()
        assert again.status is ChangeStatus.ALREADY_COMPLETED


async def test_a_forced_rebuild_leaves_present_tasks_and_their_changes_alone(
    settings: StackSettings, engine: AsyncEngine, postgres_server_url: str
) -> None:
    service = new_service()
    a, b = await started(engine, start(service), start(service))
    outcomes = await applied(engine, end(a, disposition=1), extension(b, "S", {"v": 1}))
    await publish(settings, [created(a), created(b), *(changed(o) for o in outcomes)])
    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(database_url=url)
        partial = await rebuild(target, RebuildOptions(dry_run=True))
        assert (partial.would_send, partial.sent) == (2, 0)
        assert await changes_recorded(url, [a.task_id, b.task_id]) == []
        assert (await rebuild(target)).sent == 2
        forced = await rebuild(target, RebuildOptions(force=True))
        assert (forced.error, forced.sent, forced.counts["changes"]) == (None, 0, 0)
        assert forced.counts["already_present"] == 2
        assert len(await changes_recorded(url, [a.task_id, b.task_id])) == 2
