"""`ucs-tasks rebuild` and task ids: only the identity hands them out, rebuild restores them, and
a created-events log that lost its beginning is refused unless allowed.

The embedded broker cannot make a log start above 0 (no retention, DeleteRecords crashes it):
the refusal is driven through `rebuild.log_start_offsets`, the one function that reads where
each partition starts, around the real answer. The normal path runs for real here and in
tests/integration/test_tools_replay.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from consumer.db.engine import build_engine
from producer_tools.cli import app
from producer_tools.tools import rebuild as rebuild_tool
from producer_tools.tools._progress import EXIT_OK, EXIT_USAGE
from producer_tools.tools.produce import produce
from producer_tools.tools.rebuild import RebuildOptions, rebuild
from tests.integration.test_tools import env_of, plain, wait_for_records, write_lines
from tests.integration.test_tools_replay import fresh_database, rows
from tests.servers import StackSettings


async def scalar(url: str, sql: str) -> Any:
    engine = build_engine(url, 1)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(sql))).scalar()
    finally:
        await engine.dispose()


async def connect(url: str) -> asyncpg.Connection:
    parsed = make_url(url)
    return await asyncpg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
    )


async def test_no_client_can_pick_a_task_id(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        with pytest.raises(asyncpg.GeneratedAlwaysError, match="task_id"):
            await conn.execute(
                "INSERT INTO tasks (task_id, service_id, started_at, attached_data_text,"
                " event_source, event_id, source_topic, source_partition, source_offset)"
                " VALUES (424242, 1, now(), '{}', 'urn:picker', 'x', 't', 0, 0)"
            )
        identity = await conn.fetchrow(
            "SELECT is_identity, identity_generation, identity_minimum, identity_maximum,"
            " identity_cycle FROM information_schema.columns"
            " WHERE table_name = 'tasks' AND column_name = 'task_id'"
        )
    finally:
        await conn.close()
    assert dict(identity) == {
        "is_identity": "YES",
        "identity_generation": "ALWAYS",
        "identity_minimum": "1",
        "identity_maximum": "2147483647",
        "identity_cycle": "NO",
    }


async def seed(settings: StackSettings, tmp_path: Path, count: int) -> None:
    """`count` tasks on several services (so on several partitions), their replies logged."""
    lines = [plain({"state_id": i, "tag": tmp_path.name}, 90 + i) for i in range(count)]
    await produce(settings, [write_lines(tmp_path / "seed.jsonl", lines)])
    await wait_for_records(settings, settings.topics.created, count)


async def created_partitions(settings: StackSettings) -> list[int]:
    """The partitions of the created log that hold records (read, not trusted)."""
    reader = AIOKafkaConsumer(**settings.kafka.client_options(), auto_offset_reset="earliest")
    await reader.start()
    try:
        parts = sorted(reader.partitions_for_topic(settings.topics.created) or ())
        reader.assign([TopicPartition(settings.topics.created, p) for p in parts])
        batch = await reader.getmany(timeout_ms=5000)
        return sorted({tp.partition for tp, records in batch.items() if records})
    finally:
        await reader.stop()


def trimmed_log(monkeypatch: pytest.MonkeyPatch, trim: dict[int, int]) -> None:
    """The log as Kafka would report it after retention deleted the first `trim[p]` records
    of partition p: the real beginning offsets, moved up."""
    real = rebuild_tool.log_start_offsets

    async def log_start_offsets(
        reader: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> dict[int, int]:
        starts = await real(reader, partitions)
        return {p: first + trim.get(p, 0) for p, first in starts.items()}

    monkeypatch.setattr(rebuild_tool, "log_start_offsets", log_start_offsets)


@pytest.mark.usefixtures("consumer")
async def test_rebuild_refuses_a_log_that_lost_its_beginning_and_says_what_is_missing(
    settings: StackSettings,
    postgres_server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(settings, tmp_path, 6)
    victim = (await created_partitions(settings))[0]
    trimmed_log(monkeypatch, {victim: 2})
    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(database_url=url)
        for options in (RebuildOptions(), RebuildOptions(dry_run=True)):
            refused = await rebuild(target, options)
            assert refused.exit_code == EXIT_USAGE
            assert refused.error is not None
            assert "no longer starts at its beginning" in refused.error
            assert (
                f"{settings.topics.created} no longer holds partition {victim} before offset 2"
                in refused.error
            )
            assert "--allow-partial-log" in refused.error
            assert refused.read == 0
        assert await scalar(url, "SELECT count(*) FROM tasks") == 0
        assert await scalar(url, "SELECT last_value FROM tasks_task_id_seq") == 1
        assert await scalar(url, "SELECT is_called FROM tasks_task_id_seq") is False


@pytest.mark.usefixtures("consumer")
async def test_rebuild_from_a_partial_log_when_allowed_warns_and_still_moves_the_ids_on(
    settings: StackSettings,
    postgres_server_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(settings, tmp_path, 4)
    original = await rows(settings.database_url, "source_topic = :t", t=settings.topics.requests)
    victim = (await created_partitions(settings))[0]
    trimmed_log(monkeypatch, {victim: 1})
    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(database_url=url)
        runner = CliRunner()
        result = await asyncio.to_thread(
            runner.invoke,
            app,
            ["rebuild", "--allow-partial-log", "--json"],
            env={**env_of(target)},
        )
        assert result.exit_code == EXIT_OK, result.output
        summary = orjson.loads(result.output.strip().splitlines()[-1])
        assert summary["error"] is None
        assert summary["partial_log"] == (
            f"{settings.topics.created} no longer holds partition {victim} before offset 1: "
            "tasks may be missing"
        )
        restored = await rows(url)
        assert summary["sent"] == len(restored) == 4  # the records are still there, on tansu
        top = max(row["task_id"] for row in original.values())
        assert summary["next_task_id"] == top + 1
        assert {k: r["task_id"] for k, r in restored.items()} == {
            k: r["task_id"] for k, r in original.items()
        }
