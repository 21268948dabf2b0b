"""`export`, `replay`, `rebuild` and `tail` against a real broker, PostgreSQL and consumer."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from consumer.bootstrap import run_consumer
from consumer.db.engine import build_engine
from consumer.db.migrate import upgrade
from consumer.db.reads import get_task
from producer_tools.cli import app
from producer_tools.tools._events import HEADERS_ATTRIBUTE
from producer_tools.tools._progress import EXIT_OK, EXIT_USAGE
from producer_tools.tools._ranges import RangeSpec, open_range, read_ranges
from producer_tools.tools.export import ExportOptions, export
from producer_tools.tools.produce import produce
from producer_tools.tools.rebuild import RebuildOptions, rebuild
from producer_tools.tools.replay import ReplayOptions, replay
from producer_tools.tools.tail import TailOptions, tail
from schemas import wire
from tests import servers
from tests.integration.test_tools import (
    env_of,
    plain,
    wait_for_records,
    wait_for_tasks,
    write_lines,
)
from tests.reference import REFERENCE_ATTACHED
from tests.servers import StackSettings, create_topics

SERVICE = 4242
STAMP = "2026-01-31T12:00:00.123Z"
# Columns that say where and when a copy was made, not what the task is.
_PLACE = {"task_id", "source_topic", "source_partition", "source_offset", "received_at"}


def seed_lines(tag: str) -> list[bytes]:
    """Events of every kind; `tag` keeps their identities apart from other tests' (identities
    of plain records come from their content, and the tests share one database)."""
    return [
        plain({"state_id": 1, "timestamp": STAMP, "tag": tag, **REFERENCE_ATTACHED}, SERVICE),
        plain({"task_type": 7, "media_type": "email", "timestamp": STAMP, "x": 1.5e-7, "tag": tag}),
        plain(
            {"interaction_id": "IX1", "timestamp": STAMP, "ünï": {"b": [], "a": None}, "tag": tag}
        ),
        plain({"est_duration": 0, "timestamp": "2026-01-31T13:00:00.5+01:00", "tag": tag}, 78),
    ]


async def publish_raw(
    settings: StackSettings, records: list[tuple[bytes | None, bytes, Any]]
) -> None:
    producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(settings.topics.requests, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def rows(database_url: str, where: str = "true", **params: Any) -> dict[Any, dict[str, Any]]:
    engine = build_engine(database_url, 1)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(f"SELECT * FROM tasks WHERE {where}"), params)  # noqa: S608
            found = [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()
    return {(row["event_source"], row["event_id"]): row for row in found}


def what(row: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name not in _PLACE}


@asynccontextmanager
async def fresh_database(postgres_server_url: str) -> AsyncIterator[str]:
    database = await servers.create_session_database(postgres_server_url)
    try:
        await asyncio.to_thread(upgrade, database.url)
        yield database.url
    finally:
        await servers.drop_session_database(database)


@asynccontextmanager
async def fresh_system(
    kafka_bootstrap: str, postgres_server_url: str
) -> AsyncIterator[StackSettings]:
    """New topics, a new database and a consumer of their own: the original system wiped."""
    async with fresh_database(postgres_server_url) as url:
        fresh = servers.make_settings(kafka_bootstrap, url)
        await create_topics(fresh)
        stopping = asyncio.Event()
        task = asyncio.create_task(run_consumer(fresh, stopping))
        try:
            yield fresh
        finally:
            stopping.set()
            await asyncio.wait_for(task, 30)


@pytest.mark.usefixtures("consumer")
async def test_export_then_produce_into_a_fresh_system_recreates_the_same_tasks(
    settings: StackSettings, kafka_bootstrap: str, postgres_server_url: str, tmp_path: Path
) -> None:
    structured = wire.structured_request(
        service_id=SERVICE, data={"state_id": 5, "timestamp": STAMP}, event_id="s-1", source="urn:t"
    )
    structured[HEADERS_ATTRIBUTE] = '[["x-tenant", "acme"]]'
    await produce(
        settings,
        [
            write_lines(
                tmp_path / "seed.jsonl", [*seed_lines(tmp_path.name), orjson.dumps(structured)]
            )
        ],
    )
    binary = wire.encode_request_binary(
        service_id=SERVICE,
        body=b'{ "state_id" : 6, "timestamp": "%s" }' % STAMP.encode(),
        event_id="b-1",
        source="urn:t",
        correlation_id="c-1",
    )
    await publish_raw(settings, [(binary[0], binary[1], [*binary[2], ("x-trace", b"\xff\x01")])])
    original = await wait_for_tasks(settings, 6)

    runner = CliRunner()
    requests_file = tmp_path / "requests.jsonl"
    result = await asyncio.to_thread(
        runner.invoke, app, ["export", "-o", str(requests_file), "--json"], env=env_of(settings)
    )
    assert result.exit_code == EXIT_OK, result.output
    assert orjson.loads(result.stdout)["sent"] == 6
    exported = {e["id"]: e for e in map(orjson.loads, requests_file.read_bytes().splitlines())}
    assert orjson.loads(exported["b-1"][HEADERS_ATTRIBUTE]) == [["x-trace", {"base64": "/wE="}]]
    assert orjson.loads(exported["s-1"][HEADERS_ATTRIBUTE]) == [["x-tenant", "acme"]]
    assert exported["b-1"]["correlationid"] == "c-1"
    to_stdout = await asyncio.to_thread(runner.invoke, app, ["export"], env=env_of(settings))
    # The data on stdout (partitions interleave in any order), the summary on stderr:
    assert sorted(to_stdout.stdout.encode().splitlines()) == sorted(
        requests_file.read_bytes().splitlines()
    )
    assert orjson.loads(to_stdout.stderr)["sent"] == 6  # as JSON: stderr is not a terminal
    created_file = tmp_path / "created.jsonl"
    from_log = await export(settings, ExportOptions(RangeSpec(topic="created"), str(created_file)))
    assert (from_log.sent, from_log.invalid_count) == (6, 0)

    async with fresh_system(kafka_bootstrap, postgres_server_url) as fresh:
        assert (await produce(fresh, [str(requests_file)])).sent == 6
        recreated = await wait_for_tasks(fresh, 6)
        assert {k: what(r) for k, r in recreated.items()} == {
            k: what(r) for k, r in original.items()
        }
        assert (await produce(fresh, [str(created_file)])).sent == 6  # the same identities
        await wait_for_records(fresh, fresh.topics.created, 12)
        assert len(await rows(fresh.database_url)) == 6
        async with open_range(fresh, RangeSpec(), fresh.topics.requests) as (reader, ranges):
            headers = [r.headers async for chunk in read_ranges(reader, ranges) for r in chunk]
        assert [h for hs in headers for h in hs if h[0] == "x-trace"] == [("x-trace", b"\xff\x01")]


async def test_replay_selects_offset_and_time_ranges_and_keeps_identities(
    settings: StackSettings, tmp_path: Path
) -> None:
    def batch(name: str, count: int) -> str:
        lines = [plain({"state_id": i, "batch": name, "tag": tmp_path.name}) for i in range(count)]
        return write_lines(tmp_path / f"{name}.jsonl", lines)

    def iso(moment: float) -> str:
        return datetime.fromtimestamp(moment, UTC).isoformat()

    await produce(settings, [batch("a", 6)])
    await asyncio.sleep(0.05)
    middle = time.time()
    await asyncio.sleep(0.05)
    await produce(settings, [batch("b", 4)])
    await asyncio.sleep(0.05)
    late = time.time()
    await asyncio.sleep(0.05)
    await produce(settings, [batch("c", 2)])

    async def would_send(**spec: Any) -> int:
        summary = await replay(settings, ReplayOptions(RangeSpec(**spec), dry_run=True))
        assert summary.error is None, summary.error
        return summary.would_send

    assert await would_send() == 12
    assert await would_send(start=iso(middle)) == 6
    assert await would_send(start=iso(middle), end=iso(late)) == 4
    async with open_range(settings, RangeSpec(), settings.topics.requests) as (_, ranges):
        pass
    used = next(r.partition.partition for r in ranges if r.size)
    assert await would_send(partitions=(used,), start="2", end="8") == 6
    assert (
        await would_send(partitions=tuple(r.partition.partition for r in ranges if not r.size)) == 0
    )
    bad = await replay(settings, ReplayOptions(RangeSpec(start="yesterday")))
    assert (bad.exit_code, "--from" in (bad.error or "")) == (EXIT_USAGE, True)

    scratch = settings.with_(**{"topic_requests": settings.topics.requests + ".scratch"})
    await create_topics(scratch)
    done = await replay(
        settings,
        ReplayOptions(RangeSpec(start=iso(middle), end=iso(late)), target=scratch.topics.requests),
    )
    assert (done.sent, done.exit_code) == (4, None)

    async def records(of: StackSettings, **spec: Any) -> list[Any]:
        async with open_range(of, RangeSpec(**spec), of.topics.requests) as (reader, ranges):
            return [r async for chunk in read_ranges(reader, ranges) for r in chunk]

    copied = await records(scratch)
    originals = await records(settings, start=iso(middle), end=iso(late))
    assert [(r.key, r.value, r.headers) for r in copied] == [
        (r.key, r.value, r.headers) for r in originals
    ]


@pytest.mark.usefixtures("consumer")
async def test_rebuild_restores_identical_rows_ids_and_sequence_from_the_created_log(
    settings: StackSettings, postgres_server_url: str, tmp_path: Path
) -> None:
    server_time = plain({"state_id": 9, "tag": tmp_path.name}, 79)  # no timestamp
    lines = [*seed_lines(tmp_path.name), server_time]
    path = write_lines(tmp_path / "seed.jsonl", lines)
    await produce(settings, [path])
    await produce(settings, [path])  # every reply is in the log twice
    await wait_for_records(settings, settings.topics.created, 10)
    original = await rows(settings.database_url, "source_topic = :t", t=settings.topics.requests)
    assert len(original) == 5

    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(**{"database_url": url})
        summary = await rebuild(target)
        assert summary.error is None, summary.error
        assert (summary.sent, summary.duplicate_count, summary.invalid_count) == (5, 5, 0)
        restored = await rows(url)
        top = max(r["task_id"] for r in original.values())
        assert summary.counts["next_task_id"] == top + 1

        assert restored == original  # every column, times included (stored to the ms)
        for key, row in original.items():
            assert restored[key]["attached_data_text"] == row["attached_data_text"]
            assert restored[key]["task_id"] == row["task_id"]

        engine = build_engine(url, 1)
        try:
            async with engine.begin() as conn:
                next_id = (
                    await conn.execute(
                        text("SELECT nextval(pg_get_serial_sequence('tasks', 'task_id'))")
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
        assert next_id == top + 1

        again = await rebuild(target)
        assert (again.exit_code, "already holds" in (again.error or "")) == (EXIT_USAGE, True)
        forced = await rebuild(target, RebuildOptions(force=True))
        assert (forced.error, forced.sent, forced.counts["already_present"]) == (None, 0, 5)


@pytest.mark.usefixtures("consumer")
async def test_a_rebuilt_database_answers_reads_exactly_like_the_original(
    settings: StackSettings, postgres_server_url: str, tmp_path: Path
) -> None:
    await produce(
        settings,
        [write_lines(tmp_path / "one.jsonl", [plain({"state_id": 1, "tag": tmp_path.name}, 80)])],
    )
    (row,) = (await wait_for_tasks(settings, 1)).values()
    await wait_for_records(settings, settings.topics.created, 1)
    async with fresh_database(postgres_server_url) as url:
        assert (await rebuild(settings.with_(**{"database_url": url}))).sent == 1
        read = []
        for database_url in (settings.database_url, url):
            engine = build_engine(database_url, 1)
            try:
                async with engine.connect() as conn:
                    read.append(await get_task(conn, 80, row["task_id"]))
            finally:
                await engine.dispose()
    assert read[0] == read[1]


@pytest.mark.usefixtures("consumer")
async def test_tail_prints_replies_and_dead_letters_and_stops_cleanly_on_ctrl_c(
    settings: StackSettings, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "producer_tools", "tail", "--json", "--from-beginning"]
    child = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **env_of(settings)}, stdout=asyncio.subprocess.PIPE
    )
    await produce(
        settings,
        [
            write_lines(
                tmp_path / "t.jsonl",
                [
                    plain({"state_id": 1, "tag": tmp_path.name}, 81),
                    plain({"state_id": 2, "tag": tmp_path.name}, 81),
                ],
            )
        ],
    )
    rejected = wire.encode_request_binary(
        service_id=81, body=b'{"state_id": "x"}', event_id="r-1", source="urn:t"
    )
    await publish_raw(settings, [rejected, (b"k", b"\x00garbage", [("x-note", b"1")])])

    assert child.stdout is not None
    seen = [orjson.loads(await asyncio.wait_for(child.stdout.readline(), 20)) for _ in range(3)]
    child.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(child.wait(), 10) == 0
    assert sorted(item["kind"] for item in seen) == ["created", "created", "rejected"]
    refused = next(item for item in seen if item["kind"] == "rejected")
    assert refused["event"] == {"source": "urn:t", "id": "r-1"}
    assert "state_id" in refused["error"]

    out = io.StringIO()
    assert (
        await tail(settings, TailOptions(from_beginning=True, dead_letters=True, count=4), out) == 4
    )
    kinds = [orjson.loads(line)["kind"] for line in out.getvalue().splitlines()]
    assert sorted(kinds) == ["created", "created", "dead-letter", "rejected"]

    screen = Console(file=io.StringIO(), width=300)
    following = asyncio.create_task(tail(settings, TailOptions(count=1), screen))
    await asyncio.sleep(1.0)  # positioned at the end: only what comes now is shown
    await produce(
        settings,
        [write_lines(tmp_path / "u.jsonl", [plain({"state_id": 3, "tag": tmp_path.name}, 82)])],
    )
    assert await asyncio.wait_for(following, 20) == 1
    (line,) = screen.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "created" in line
    assert "service 82" in line
    assert "event urn:ucs-tasks:produce" in line
