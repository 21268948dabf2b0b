"""docs/least-privilege.sql: the runtime role it creates is enough for the consumer and the
bridge (tasks created, rejected, read back), and allows nothing else."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import orjson
import pytest
from sqlalchemy.engine import URL, make_url

from consumer.bootstrap import run_consumer
from consumer.db.engine import build_engine
from consumer.db.uow import SqlUnitOfWork
from consumer.domain import ChangeStatus
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
PASSWORD = "app-pw-2c9d"  # noqa: S105 - the test role's, on a throwaway server


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


@pytest.fixture
async def runtime_url(settings: StackSettings) -> AsyncIterator[URL]:
    """The session database, reached as a fresh role made by docs/least-privilege.sql."""
    owner = make_url(settings.database_url)
    role = f"ucs_app_{uuid.uuid4().hex[:8]}"
    assert owner.database is not None
    script = render(SQL.read_text(), {"role": role, "password": PASSWORD, "DBNAME": owner.database})
    conn = await _connect(owner)
    try:
        await conn.execute(script)
    except asyncpg.InsufficientPrivilegeError as exc:
        pytest.skip(f"the test database's role cannot create roles: {exc}")
    finally:
        await conn.close()
    try:
        yield owner.set(username=role, password=PASSWORD)
    finally:
        conn = await _connect(owner)
        try:
            await conn.execute(f"DROP OWNED BY {_ident(role)}; DROP ROLE {_ident(role)}")
        finally:
            await conn.close()


def test_the_script_grants_exactly_the_documented_privileges() -> None:
    grants = re.findall(r"^GRANT .*?;", SQL.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert [" ".join(g.split()) for g in grants] == [
        'GRANT CONNECT ON DATABASE :"DBNAME" TO :"role";',
        'GRANT USAGE ON SCHEMA public TO :"role";',
        'GRANT SELECT, INSERT ON TABLE tasks, rejected_events, task_changes TO :"role";',
        "GRANT UPDATE (completed_at, duration_ms, disposition_id, disposition_name,"
        " disposition_desc, completed_text, end_event_source, end_event_id, updated_at,"
        ' attached_data, attached_data_text) ON TABLE tasks TO :"role";',
        'GRANT USAGE ON SEQUENCE tasks_task_id_seq TO :"role";',
        'GRANT SELECT ON TABLE alembic_version TO :"role";',
    ]


async def test_the_consumer_and_the_bridge_work_as_the_runtime_role(
    settings: StackSettings, runtime_url: URL
) -> None:
    restricted = settings.with_(
        **{"database_url": runtime_url.render_as_string(hide_password=False)}
    )
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(restricted, stopping))
    # The bridge allows longer strings than the consumer: the consumer stores a rejection.
    lenient = bridge_settings(restricted, max_string_length=5000)
    try:
        async with running_bridge(lenient) as running:
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


async def test_the_runtime_role_completes_tasks_and_updates_extensions(runtime_url: URL) -> None:
    engine = build_engine(runtime_url.render_as_string(hide_password=False))
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


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE tasks SET state_id = 0",
        "UPDATE tasks SET service_id = 2, tenant = 'other'",
        "UPDATE task_changes SET task_id = 0",
        "DELETE FROM task_changes",
        "DELETE FROM tasks",
        "TRUNCATE tasks",
        "UPDATE rejected_events SET status = 0",
        "DELETE FROM rejected_events",
        "SELECT setval('tasks_task_id_seq', 1)",
        "CREATE TABLE intruder (x int)",
        "DELETE FROM alembic_version",
        "DROP TABLE tasks",
        "ALTER TABLE tasks ADD COLUMN x int",
    ],
)
async def test_the_runtime_role_can_do_nothing_else(runtime_url: URL, statement: str) -> None:
    conn = await _connect(runtime_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()
