"""consumer/db/tables.py describes exactly what the Alembic migrations create.

On the session's migrated database: Alembic's own comparison (what autogenerate would write)
finds nothing, and the catalog of the migrated tables (columns in order, types, defaults,
identity sequences, constraints, index definitions with their predicates) equals the catalog of
the same tables created from tables.py in a scratch schema. And the last migration goes down
and up again on a scratch database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from consumer.db.engine import build_engine
from consumer.db.migrate import alembic_config
from consumer.db.tables import metadata
from tests import servers
from tests.integration.test_repository import engine_for

TABLES = sorted(metadata.tables)


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    async for built in engine_for(database_url):
        yield built


def _differences(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_server_default": True})
    return list(compare_metadata(context, metadata))


_COLUMNS = text(
    # A column's place among the live ones: a column dropped by a migration leaves a gap in
    # attnum that a table created from tables.py does not have.
    "SELECT c.relname, row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum), a.attname,"
    " format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid), a.attidentity, s.seqstart, s.seqmin, s.seqmax,"
    " s.seqincrement, s.seqcycle"
    " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " LEFT JOIN pg_sequence s"
    "  ON s.seqrelid = pg_get_serial_sequence(quote_ident(n.nspname) || '.' || c.relname,"
    "  a.attname)::regclass"
    " WHERE n.nspname = :schema AND c.relname = ANY(:tables) AND a.attnum > 0"
    " AND NOT a.attisdropped ORDER BY 1, 2"
)
_CONSTRAINTS = text(
    "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)"
    " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = :schema AND c.relname = ANY(:tables) ORDER BY 1, 2"
)
_INDEXES = text(
    "SELECT tablename, indexname, replace(indexdef, ' ' || :schema || '.', ' ')"
    " FROM pg_indexes WHERE schemaname = :schema AND tablename = ANY(:tables) ORDER BY 1, 2"
)


async def _catalog(engine: AsyncEngine, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    params = {"schema": schema, "tables": TABLES}
    async with engine.connect() as conn:
        return {
            name: [tuple(row) for row in await conn.execute(query, params)]
            for name, query in (
                ("columns", _COLUMNS),
                ("constraints", _CONSTRAINTS),
                ("indexes", _INDEXES),
            )
        }


async def test_alembic_finds_nothing_to_autogenerate(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_differences) == []


async def test_the_migrated_tables_equal_the_tables_described_in_tables_py(
    engine: AsyncEngine,
) -> None:
    schema = f"from_tables_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        translated = await conn.execution_options(schema_translate_map={None: schema})
        await translated.run_sync(metadata.create_all)
    try:
        migrated, described = await _catalog(engine, "public"), await _catalog(engine, schema)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    assert len(migrated["columns"]) > 40
    assert len(migrated["indexes"]) >= 10
    assert migrated == described


def _migrate(url: str, step: str) -> None:
    config = alembic_config(url)
    if step == "head":
        command.upgrade(config, "head")
    else:
        command.downgrade(config, step)


async def test_the_last_migration_goes_down_and_up_again(postgres_server_url: str) -> None:
    database = await servers.create_session_database(postgres_server_url)
    if not database.created:
        pytest.skip("the server does not let this role create a scratch database")
    try:
        for step in ("head", "-1", "head"):
            await asyncio.to_thread(_migrate, database.url, step)
        scratch = build_engine(database.url)
        try:
            async with scratch.connect() as conn:
                assert await conn.run_sync(_differences) == []
        finally:
            await scratch.dispose()
    finally:
        await servers.drop_session_database(database)


_TASK = text(
    "INSERT INTO tasks (service_id, started_at, attached_data_text, event_source, event_id,"
    " source_topic, source_partition, source_offset)"
    " VALUES (7, now(), :attached, 'urn:migration', 'start', 't', 0, 0) RETURNING task_id"
)

_BOTH_COPIES = text("SELECT attached_data_text, attached_data FROM tasks")
_EXTENSION = text("SELECT outcome FROM apply_task_changes(CAST(:changes AS json))")


async def _extend(conn: Any, task_id: int, event_id: str, name: str, value: Any) -> None:
    change = {
        "kind": "extension", "extension": name, "value": value, "event_source": "urn:migration",
        "event_id": event_id, "service_id": 7, "task_id": task_id,
    }  # fmt: skip
    outcome = await conn.scalar(_EXTENSION, {"changes": orjson.dumps([change]).decode()})
    assert outcome == "applied"


async def test_migration_0004_keeps_the_attached_data_down_and_up(
    postgres_server_url: str,
) -> None:
    """0004 drops the JSONB copy: down again it is filled from the text, and both versions of
    apply_task_changes keep what they store in step."""
    database = await servers.create_session_database(postgres_server_url)
    if not database.created:
        pytest.skip("the server does not let this role create a scratch database")
    try:
        await asyncio.to_thread(_migrate, database.url, "head")
        scratch = build_engine(database.url)
        try:
            async with scratch.begin() as conn:
                task_id = await conn.scalar(_TASK, {"attached": '{"b":1.50,"a":[2]}'})
                await _extend(conn, task_id, "x1", "c", {"z": 1})
            await asyncio.to_thread(_migrate, database.url, "0003")
            async with scratch.begin() as conn:
                assert tuple((await conn.execute(_BOTH_COPIES)).one()) == (
                    '{"b":1.50,"a":[2],"c":{"z":1}}',
                    {"a": [2], "b": 1.5, "c": {"z": 1}},
                )
                await _extend(conn, task_id, "x2", "a", [3])  # 0003's function: both copies
                assert tuple((await conn.execute(_BOTH_COPIES)).one()) == (
                    '{"b":1.50,"a":[3],"c":{"z":1}}',
                    {"a": [3], "b": 1.5, "c": {"z": 1}},
                )
            await scratch.dispose()  # the plans cached for the old table
            await asyncio.to_thread(_migrate, database.url, "head")
            async with scratch.begin() as conn:
                await _extend(conn, task_id, "x3", "d", True)
                stored = await conn.scalar(text("SELECT attached_data_text FROM tasks"))
                assert stored == '{"b":1.50,"a":[3],"c":{"z":1},"d":true}'
                assert await conn.run_sync(_differences) == []
        finally:
            await scratch.dispose()
    finally:
        await servers.drop_session_database(database)
