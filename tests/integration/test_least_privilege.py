"""docs/least-privilege.sql: each role it creates can do its process's job and nothing more.

The script runs on a database of this module's own (the operator role comes to own the tables,
and the roles are dropped with it afterwards): the consumer and the bridge run as their roles,
the operator migrates and restores tasks, and every other statement is refused.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import URL, make_url

from consumer.admin import TaskRestorer
from consumer.bootstrap import run_consumer
from consumer.db.engine import build_engine
from consumer.db.migrate import downgrade, upgrade
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeStatus
from consumer.readside import DatabaseSettings
from schemas.replies import EventRef, StoredTask
from tests import servers
from tests.integration.test_bridge import (
    JSON_HEADERS,
    assert_error_body,
    bridge_settings,
    running_bridge,
    start_url,
)
from tests.integration.test_repository import end, extension, new_service, start, started
from tests.servers import StackSettings

SQL = Path(__file__).resolve().parents[2] / "docs" / "least-privilege.sql"
ROLES = ("operator", "consumer", "bridge")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render(sql: str, variables: dict[str, str]) -> str:
    """psql's `:"name"` (identifier) and `:'name'` (literal) interpolation, as `psql -v` does."""

    def substitute(match: re.Match[str]) -> str:
        quote, name = match.group(1), match.group(2)
        value = variables[name]
        return _ident(value) if quote == '"' else _literal(value)

    return re.sub(r":([\"'])(\w+)\1", substitute, sql)


async def _connect(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
        timeout=10,
    )


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@dataclass(frozen=True)
class Roles:
    """The module's database, reached as its owner and as each role of the script."""

    owner: URL
    operator: URL
    consumer: URL
    bridge: URL


@pytest.fixture(scope="module")
async def roles(postgres_server_url: str) -> AsyncIterator[Roles]:
    database = await servers.create_session_database(postgres_server_url)
    if not database.created:
        pytest.skip("the test server's role cannot create a database of the module's own")
    owner = make_url(database.url)
    assert owner.database is not None
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"ucs_{role}_{suffix}" for role in ROLES}
    passwords = {role: f"{role}-pw-{suffix}" for role in ROLES}
    variables = {"DBNAME": owner.database}
    for role in ROLES:
        variables |= {f"{role}_role": names[role], f"{role}_password": passwords[role]}
    try:
        await asyncio.to_thread(upgrade, database.url)
        conn = await _connect(owner)
        try:
            await conn.execute(render(SQL.read_text(), variables))
        except asyncpg.InsufficientPrivilegeError as exc:
            pytest.skip(f"the test database's role cannot create roles: {exc}")
        finally:
            await conn.close()
        as_role = {
            role: owner.set(username=names[role], password=passwords[role]) for role in ROLES
        }
        yield Roles(owner, as_role["operator"], as_role["consumer"], as_role["bridge"])
    finally:
        await servers.drop_session_database(database)
        conn = await _connect(make_url(database.server_url))
        try:
            for name in names.values():
                await conn.execute(f"DROP ROLE IF EXISTS {_ident(name)}")
        finally:
            await conn.close()


def test_the_script_grants_exactly_the_documented_privileges() -> None:
    statements = re.findall(
        r"^(?:GRANT|ALTER TABLE|ALTER FUNCTION|ALTER TYPE) .*?;",
        SQL.read_text(),
        flags=re.MULTILINE | re.DOTALL,
    )
    flat = [" ".join(s.split()).replace("( ", "(").replace(" )", ")") for s in statements]
    all_three = ':"operator_role", :"consumer_role", :"bridge_role"'
    assert [s.split(" (")[0] if s.startswith("GRANT INSERT") else s for s in flat] == [
        f'GRANT CONNECT ON DATABASE :"DBNAME" TO {all_three};',
        'GRANT USAGE, CREATE ON SCHEMA public TO :"operator_role";',
        'ALTER TABLE tasks OWNER TO :"operator_role";',
        'ALTER TABLE rejected_events OWNER TO :"operator_role";',
        'ALTER TABLE task_changes OWNER TO :"operator_role";',
        'ALTER TABLE alembic_version OWNER TO :"operator_role";',
        'ALTER FUNCTION apply_task_changes(json) OWNER TO :"operator_role";',
        'ALTER FUNCTION apply_task_changes_input(json) OWNER TO :"operator_role";',
        'ALTER FUNCTION json_member_replaced(text, text, text) OWNER TO :"operator_role";',
        'ALTER FUNCTION task_end_text(json, text, json) OWNER TO :"operator_role";',
        'ALTER TYPE task_change_input OWNER TO :"operator_role";',
        'GRANT USAGE ON SCHEMA public TO :"consumer_role", :"bridge_role";',
        'GRANT SELECT ON TABLE alembic_version TO :"consumer_role", :"bridge_role";',
        'GRANT SELECT ON TABLE tasks, rejected_events, task_changes TO :"consumer_role";',
        "GRANT INSERT",
        "GRANT INSERT",
        "GRANT UPDATE (completed_at, duration_ms, disposition_id, disposition_name,"
        " disposition_desc, completed_text, end_event_source, end_event_id, updated_at,"
        ' attached_data_text) ON TABLE tasks TO :"consumer_role";',
        'GRANT INSERT ON TABLE task_changes TO :"consumer_role";',
        'GRANT SELECT ON TABLE tasks, rejected_events, task_changes TO :"bridge_role";',
    ]


COMPLETION_COLUMNS = {
    "completed_at",
    "duration_ms",
    "disposition_id",
    "disposition_name",
    "disposition_desc",
    "completed_text",
    "end_event_source",
    "end_event_id",
    "updated_at",
}
"""Set only by completing a task (an UPDATE), never by the INSERT that starts it."""


async def test_the_consumer_may_insert_every_column_but_the_generated_ids(roles: Roles) -> None:
    conn = await _connect(roles.owner)
    try:
        not_inserted = (
            ("tasks", {"task_id", *COMPLETION_COLUMNS}),
            ("rejected_events", {"rejection_id"}),
        )
        for table, generated in not_inserted:
            columns = {
                row["column_name"]
                for row in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = $1",
                    table,
                )
            }
            granted = {
                row["column_name"]
                for row in await conn.fetch(
                    "SELECT column_name FROM information_schema.column_privileges"
                    " WHERE table_name = $1 AND grantee = $2 AND privilege_type = 'INSERT'",
                    table,
                    roles.consumer.username,
                )
            }
            assert granted == columns - generated, table
    finally:
        await conn.close()


async def test_the_consumer_role_completes_tasks_and_updates_extensions(roles: Roles) -> None:
    engine = build_engine(_text(roles.consumer))
    try:
        [task] = await started(engine, start(new_service()))
        async with SqlUnitOfWork(engine) as uow:
            outcomes = await uow.tasks.apply_changes(
                [extension(task, "Survey", {"q": 1}), end(task), end(task)]
            )
            await uow.commit()
    finally:
        await engine.dispose()
    assert [o.status for o in outcomes] == [
        ChangeStatus.APPLIED,
        ChangeStatus.APPLIED,
        ChangeStatus.ALREADY_COMPLETED,
    ]


async def test_the_consumer_and_the_bridge_work_each_as_its_own_role(
    settings: StackSettings, roles: Roles
) -> None:
    as_consumer = settings.with_(database_url=_text(roles.consumer))
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(as_consumer, stopping))
    # The bridge allows longer strings than the consumer: the consumer stores a rejection.
    as_bridge = bridge_settings(
        settings.with_(database_url=_text(roles.bridge)), max_string_length=5000
    )
    try:
        async with running_bridge(as_bridge) as running:
            client = running.client
            assert (await client.get("/readyz")).status_code == 200
            body = orjson.dumps({"state_id": 12, "note": "least privilege"})
            created = await client.post(start_url(), content=body, headers=JSON_HEADERS)
            assert created.status_code == 201, created.text
            task_id = created.json()["task_id"]
            path = f"/genesys/1/cs/service/{start_url().split('/')[5]}/tasks/{task_id}"
            read = await client.get(path, params={"extensions": "*"})
            assert (read.status_code, read.json()["note"]) == (200, "least privilege")

            key = uuid.uuid4().hex
            headers = {**JSON_HEADERS, "Idempotency-Key": key}
            too_long = orjson.dumps({"session_id": "s" * 2000})
            rejected = await client.post(start_url(), content=too_long, headers=headers)
            assert_error_body(rejected, 400)
            status = await client.get(
                rejected.request.url.path.replace("/start", f"/requests/{key}")
            )
            assert_error_body(status, 400)
    finally:
        stopping.set()
        await asyncio.wait_for(consumer, timeout=30)
    assert consumer.exception() is None


_ROW = (
    "(service_id, started_at, attached_data_text, event_source, event_id, source_topic,"
    " source_partition, source_offset) VALUES (1, now(), '{}', 'urn:intruder', 'x', 't', 0, 0)"
)
_NOT_FOR_ANYONE = [
    "UPDATE tasks SET state_id = 0",
    "UPDATE tasks SET service_id = 2, tenant = 'other'",
    "UPDATE task_changes SET task_id = 0",
    "DELETE FROM task_changes",
    "DELETE FROM tasks",
    "TRUNCATE tasks",
    "UPDATE rejected_events SET status = 0",
    "DELETE FROM rejected_events",
    "SELECT setval('tasks_task_id_seq', 1)",
    "BEGIN; LOCK TABLE tasks IN EXCLUSIVE MODE; COMMIT",
    "CREATE TABLE intruder (x int)",
    "DELETE FROM alembic_version",
    "UPDATE alembic_version SET version_num = '0001'",
    "DROP TABLE tasks",
    "ALTER TABLE tasks ADD COLUMN x int",
]


@pytest.mark.parametrize(
    "statement",
    [
        *_NOT_FOR_ANYONE,
        # With a task id of its own choosing, even past the identity: the column is not granted.
        "INSERT INTO tasks (task_id, service_id, started_at, attached_data_text, event_source,"
        " event_id, source_topic, source_partition, source_offset) OVERRIDING SYSTEM VALUE"
        " VALUES (7, 1, now(), '{}', 'urn:intruder', 'x', 't', 0, 0)",
        "INSERT INTO rejected_events (rejection_id, event_source, event_id, status, code,"
        " error, source_topic, source_partition, source_offset) OVERRIDING SYSTEM VALUE"
        " VALUES (7, 'urn:intruder', 'x', 400, 'c', '{}', 't', 0, 0)",
    ],
)
async def test_the_consumer_role_can_do_nothing_else(roles: Roles, statement: str) -> None:
    conn = await _connect(roles.consumer)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "statement",
    [
        *_NOT_FOR_ANYONE,
        f"INSERT INTO tasks {_ROW}",
        "INSERT INTO rejected_events (event_source, event_id, status, code, error, source_topic,"
        " source_partition, source_offset) VALUES ('urn:intruder', 'x', 400, 'c', '{}', 't', 0, 0)",
    ],
)
async def test_the_bridge_role_only_reads(roles: Roles, statement: str) -> None:
    conn = await _connect(roles.bridge)
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks") >= 0
        assert await conn.fetchval("SELECT count(*) FROM rejected_events") >= 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


def _task(task_id: int, event_id: str) -> StoredTask:
    return StoredTask(
        task_id=task_id,
        service_id=1,
        timestamp="2026-01-01T00:00:00.000Z",
        event=EventRef(source="urn:operator", id=event_id),
        received_at="2026-01-01T00:00:01.000Z",
        source_topic="t",
        source_partition=0,
        source_offset=task_id,
    )


async def test_the_operator_role_migrates_and_restores_tasks_with_their_own_ids(
    roles: Roles,
) -> None:
    as_operator = _text(roles.operator)
    await asyncio.to_thread(downgrade, as_operator, "0001")
    await asyncio.to_thread(upgrade, as_operator, "head")

    ids = (1_000_001, 1_000_002)
    async with TaskRestorer(DatabaseSettings(url=as_operator)) as restorer:
        async with restorer.transaction() as tx:  # locks the table, as rebuild does
            assert await tx.insert([_task(ids[0], "a"), _task(ids[1], "b")]) == list(ids)
            assert await tx.delete([ids[1]]) == 1
            assert await tx.advance_task_ids() == ids[0] + 1
        assert await restorer.task_count() >= 1


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE ROLE intruder",
        "CREATE DATABASE intruder",
        "ALTER ROLE CURRENT_USER SUPERUSER",
    ],
)
async def test_the_operator_role_cannot_reach_beyond_the_tasks_database(
    roles: Roles, statement: str
) -> None:
    conn = await _connect(roles.operator)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()
