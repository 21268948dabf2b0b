"""`ucs-tasks produce` against a real broker (and, where tasks are counted, the real consumer)."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner

from consumer.db.engine import build_engine
from producer_tools.cli import app
from producer_tools.tools._events import PRODUCE_SOURCE, plain_identity
from producer_tools.tools._progress import (
    EXIT_BROKER,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    Reporter,
)
from producer_tools.tools._ranges import close_reader, end_offsets, open_reader, partitions_of
from producer_tools.tools.produce import ProduceOptions, produce
from producer_tools.tools.replay import ReplayOptions, replay
from schemas import wire
from tests.reference import REFERENCE_ATTACHED
from tests.servers import StackSettings

SERVICE = 21456878


def plain(event: dict[str, Any], service_id: int | str = SERVICE) -> bytes:
    return orjson.dumps({"service_id": service_id, "event": event})


def structured(event_id: str, data: dict[str, Any], service_id: int = SERVICE) -> bytes:
    return orjson.dumps(
        wire.structured_request(
            service_id=service_id, data=data, event_id=event_id, source="urn:test:tools"
        )
    )


def write_lines(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


async def count_records(settings: StackSettings, topic: str) -> int:
    """How many records the topic holds (all partitions; it is never compacted or trimmed)."""
    reader = await open_reader(settings)
    try:
        return sum((await end_offsets(reader, await partitions_of(reader, topic))).values())
    finally:
        await close_reader(reader)


async def wait_for_records(
    settings: StackSettings, topic: str, count: int, timeout: float = 30
) -> None:
    async with asyncio.timeout(timeout):
        while await count_records(settings, topic) < count:
            await asyncio.sleep(0.1)


async def tasks_of(settings: StackSettings) -> dict[tuple[str, str], dict[str, Any]]:
    """Every task made from this test's request topic, by event identity."""
    engine = build_engine(settings.database_url, 1)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text("SELECT * FROM tasks WHERE source_topic = :topic"),
                {"topic": settings.topics.requests},
            )
            rows = [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()
    return {(row["event_source"], row["event_id"]): row for row in rows}


async def wait_for_tasks(
    settings: StackSettings, count: int, timeout: float = 30
) -> dict[Any, Any]:
    async with asyncio.timeout(timeout):
        while len(found := await tasks_of(settings)) < count:
            await asyncio.sleep(0.1)
    return found


def test_a_plain_record_identity_depends_on_content_and_occurrence_only() -> None:
    first = plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}})
    assert first == plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}}, 1)
    assert first != plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}}, 2)
    assert first != plain_identity(6, {"state_id": 1, "Note": {"b": 1, "a": 2}})
    assert first != plain_identity(5, {"state_id": 1, "Note": {"a": 2, "b": 1}})  # order is data


@pytest.mark.usefixtures("consumer")
async def test_producing_the_same_file_twice_creates_each_task_once(
    settings: StackSettings, tmp_path: Path
) -> None:
    same = plain({"state_id": 1, "task_type": "customer info"})
    path = write_lines(
        tmp_path / "events.jsonl",
        [
            same,
            plain({"state_id": 2, **REFERENCE_ATTACHED}),
            b'  {"event": {"state_id": 3}, "service_id": "21456878"}  ',  # spacing, key order
            same,  # an identical line is a second task (its occurrence number differs)
            structured(uuid.uuid4().hex, {"media_type": "email", "Notes": [1, 2.5, None]}),
        ],
    )
    first = await produce(settings, [path])
    assert (first.sent, first.invalid_count, first.duplicate_count) == (5, 0, 0)
    assert first.finish() == EXIT_OK
    tasks = await wait_for_tasks(settings, 5)

    second = await produce(settings, [path])
    assert second.sent == 5
    await wait_for_records(settings, settings.topics.created, 10)  # every event answered again
    again = await tasks_of(settings)
    assert {k: r["task_id"] for k, r in again.items()} == {
        k: r["task_id"] for k, r in tasks.items()
    }
    assert len(again) == 5
    ids = {event_id for source, event_id in again if source == PRODUCE_SOURCE}
    assert plain_identity(SERVICE, {"state_id": 1, "task_type": "customer info"}, 2) in ids
    assert plain_identity(SERVICE, {"state_id": 3}) in ids


async def test_invalid_lines_are_reported_with_their_line_numbers_and_do_not_stop_the_run(
    settings: StackSettings, tmp_path: Path
) -> None:
    duplicate = structured("dup-1", {"state_id": 8})
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            plain({"state_id": 1}),
            b'{"service_id": 1, "event": {"state_id": 2',  # 2: broken JSON
            plain({"state_id": 3}),
            plain({"state_id": "four", "interaction_id": 4.2}),  # 4: wrong types
            b"",  # 5: blank, ignored
            b'{"service": 1, "data": {}}',  # 6: neither shape
            plain({"state_id": 7}, service_id=0),  # 7: bad service id
            duplicate,
            duplicate,  # 9: same identity as line 8
            b'{"service_id": 1, "event": {"big": 18446744073709551616}}',  # 10: beyond 64 bits
            plain({"state_id": 11}),
        ],
    )
    summary = await produce(settings, [path])
    reasons = {p.where.rsplit(":", 1)[1]: p.reason for p in summary.invalid}
    assert sorted(reasons, key=int) == ["2", "4", "6", "7", "10"]
    assert "not valid JSON" in reasons["2"]
    assert "state_id" in reasons["4"]
    assert "interaction_id" in reasons["4"]
    assert "service_id" in reasons["7"]
    assert "64-bit" in reasons["10"]
    assert [(d.where.rsplit(":", 1)[1], d.reason) for d in summary.duplicates] == [
        ("9", f"same event identity as {path}:8")
    ]
    assert (summary.read, summary.sent) == (10, 4)
    assert summary.finish() == EXIT_SKIPPED
    assert await count_records(settings, settings.topics.requests) == 4


async def test_a_dry_run_publishes_nothing(settings: StackSettings, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "dry.jsonl", [plain({"state_id": i}, service_id=10 + i % 3) for i in range(30)]
    )
    summary = await produce(settings, [path], ProduceOptions(dry_run=True))
    assert (summary.would_send, summary.sent, summary.counts["services"]) == (30, 0, 3)
    replayed = await replay(settings, ReplayOptions(dry_run=True))
    assert (replayed.read, replayed.would_send) == (0, 0)
    assert await count_records(settings, settings.topics.requests) == 0


async def test_progress_shows_on_a_terminal_and_json_mode_prints_only_the_summary(
    settings: StackSettings, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "p.jsonl", [plain({"state_id": i}) for i in range(2000)])
    terminal = Console(file=io.StringIO(), force_terminal=True, width=160)
    reporter = Reporter(console=terminal)
    assert reporter.human
    reporter.summary(await produce(settings, [path], ProduceOptions(), reporter))
    shown = terminal.file.getvalue()  # type: ignore[attr-defined]
    assert "producing" in shown
    assert "2000/2000" in shown
    assert "━" in shown
    assert "duplicates (skipped)" in shown

    piped = Console(file=io.StringIO(), force_terminal=True, width=160)
    quiet = Reporter(json_mode=True, console=piped)
    code = quiet.summary(await produce(settings, [path], ProduceOptions(), quiet))
    lines = piped.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1
    result = orjson.loads(lines[0])
    assert (result["sent"], result["exit_code"], code) == (2000, EXIT_OK, EXIT_OK)
    assert await count_records(settings, settings.topics.requests) == 4000  # sent twice, same ids

    not_a_terminal = Reporter(console=Console(file=io.StringIO()))
    assert not not_a_terminal.human


def env_of(settings: StackSettings) -> dict[str, str]:
    """The UCS_* environment that makes a `ucs-tasks` process use these settings."""
    env = settings.env()
    return {name: value for name, value in env.items() if name.startswith("UCS_")}


async def test_the_cli_reports_json_and_exit_codes(settings: StackSettings, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "cli.jsonl", [plain({"state_id": 1}), b"oops"])
    runner = CliRunner()

    def invoke(*args: str, stdin: bytes | None = None, **env: str) -> Any:
        return runner.invoke(app, list(args), input=stdin, env={**env_of(settings), **env})

    result = await asyncio.to_thread(invoke, "produce", path, "--json")
    assert result.exit_code == EXIT_SKIPPED, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert (summary["sent"], summary["invalid"][0]["where"]) == (1, f"{path}:2")

    piped = await asyncio.to_thread(
        invoke, "produce", "-", stdin=plain({"state_id": 2}) + b"\n" + plain({"state_id": 3})
    )
    assert piped.exit_code == EXIT_OK, piped.output
    assert orjson.loads(piped.stdout)["sent"] == 2  # not a terminal: the JSON summary

    missing = await asyncio.to_thread(invoke, "produce", str(tmp_path / "nope.jsonl"), "--json")
    assert missing.exit_code == EXIT_USAGE
    assert "cannot read" in orjson.loads(missing.stdout)["error"]

    nowhere = await asyncio.to_thread(invoke, "produce", path, "--target", "no.such.topic")
    assert nowhere.exit_code == EXIT_USAGE  # never auto-created by asking for its metadata
    assert "does not exist" in orjson.loads(nowhere.stdout)["error"]

    started = time.monotonic()
    down = await asyncio.to_thread(
        invoke, "produce", path, "--json", UCS_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9"
    )
    assert down.exit_code == EXIT_BROKER
    assert "cannot reach the broker" in orjson.loads(down.stdout)["error"]
    assert time.monotonic() - started < 10


async def test_a_rate_limit_spaces_the_events_out(settings: StackSettings, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "slow.jsonl", [plain({"state_id": i}) for i in range(11)])
    started = time.monotonic()
    summary = await produce(settings, [path], ProduceOptions(rate=50))
    assert summary.sent == 11
    assert time.monotonic() - started >= 0.19  # 10 gaps of 20 ms


async def test_an_interrupted_run_stops_at_the_next_line_and_keeps_what_it_sent(
    settings: StackSettings, tmp_path: Path
) -> None:
    # `stopping` (the first Ctrl-C) is looked at after each await, not each line: a paced run
    # must still stop at the next line, with every line it read sent and acknowledged.
    path = write_lines(tmp_path / "long.jsonl", [plain({"state_id": i}) for i in range(2000)])
    stopping = asyncio.Event()
    running = asyncio.create_task(
        produce(settings, [path], ProduceOptions(rate=100), stopping=stopping)
    )
    await wait_for_records(settings, settings.topics.requests, 5)
    stopping.set()
    summary = await asyncio.wait_for(running, 10)
    assert (summary.error, summary.finish()) == ("interrupted", EXIT_INTERRUPTED)
    assert 5 <= summary.sent < 2000
    assert summary.read == summary.sent  # nothing read and left unsent
    assert await count_records(settings, settings.topics.requests) == summary.sent

    already = asyncio.Event()
    already.set()
    stopped = await produce(settings, [path], ProduceOptions(), stopping=already)
    assert (stopped.read, stopped.sent, stopped.error) == (0, 0, "interrupted")
