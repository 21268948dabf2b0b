"""The tools with the real consumer answering ends and extension updates: `send` completes and
updates tasks (exit codes by answer), replaying the whole request log changes nothing, and
`rebuild` from the log the consumer wrote gives back every task byte for byte, after which the
whole request log replayed against the rebuilt database changes nothing either."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from consumer.bootstrap import run_consumer
from consumer.readside import TaskReader
from producer_tools.bridge.representation import Extensions, render_task
from producer_tools.cli import app
from producer_tools.tools.produce import produce
from producer_tools.tools.rebuild import rebuild
from producer_tools.tools.replay import ReplayOptions, replay
from tests.integration.test_tools import (
    count_records,
    env_of,
    tasks_of,
    wait_for_records,
    wait_for_tasks,
    write_lines,
)
from tests.integration.test_tools_rebuild_lifecycle import changes_recorded
from tests.integration.test_tools_replay import fresh_database
from tests.reference import REFERENCE_BODY
from tests.servers import StackSettings

SERVICE = 21456878
runner = CliRunner()


def sent(settings: StackSettings, *args: str, tenant: str | None = None) -> tuple[int, Any]:
    """`ucs-tasks send ARGS`: its exit code and the reply it printed (None if none)."""
    extra = ["--tenant", tenant] if tenant else []
    result = runner.invoke(app, ["send", *extra, *args], env=env_of(settings))
    return result.exit_code, orjson.loads(result.stdout) if result.stdout.strip() else None


@pytest.mark.usefixtures("consumer")
async def test_send_starts_completes_and_updates_a_task_through_kafka(
    settings: StackSettings,
) -> None:
    code, created = await asyncio.to_thread(sent, settings, str(SERVICE), REFERENCE_BODY.decode())
    assert (code, created["kind"]) == (0, "task.created"), created
    task_id = str(created["task_id"])

    end = '{"disposition":"resolved","disposition_desc":"customer satisfied"}'
    code, completed = await asyncio.to_thread(sent, settings, "--end", task_id, str(SERVICE), end)
    assert (code, completed["kind"]) == (0, "task.completed"), completed
    task = completed["task"]
    assert (task["disposition"], task["disposition_desc"]) == ("resolved", "customer satisfied")
    assert task["completed"]["disposition"] == "resolved"
    assert task["duration"] >= 0

    value = '{"url":"http://ourServer/storage/userAnswers","question1":9}'
    code, updated = await asyncio.to_thread(
        sent, settings, "--extension", "Survey", "--task", task_id, str(SERVICE), value
    )
    assert (code, updated["kind"], updated["extension"]) == (0, "task.extension.updated", "Survey")
    assert updated["task"]["attached_data"]["Survey"] == orjson.loads(value)
    assert list(updated["task"]["attached_data"]) == ["Survey", "Proposal"]  # in its place

    code, again = await asyncio.to_thread(sent, settings, "--end", task_id, str(SERVICE), "{}")
    assert (code, again["kind"], again["status"]) == (1, "task.rejected", 409)
    code, unknown = await asyncio.to_thread(
        sent, settings, "--end", "2147483647", str(SERVICE), "{}"
    )
    assert (code, unknown["kind"], unknown["status"]) == (1, "task.rejected", 404)


async def reads(url: str, keys: Sequence[tuple[int, int, str | None]]) -> list[tuple[str, bytes]]:
    """Each task as the read side returns it and as the API renders it, every extension."""
    shown = []
    async with TaskReader(StackSettings.of(database_url=url).database) as reader:
        for service_id, task_id, tenant in keys:
            item = await reader.task(service_id, task_id, tenant)
            assert item is not None, (service_id, task_id)
            shown.append((item.model_dump_json(), render_task(item, Extensions(everything=True))))
    return shown


def life_of(tag: str, tasks: dict[Any, Any]) -> list[bytes]:
    """Ends and extension updates of the started tasks, as plain lines."""
    ids = sorted(row["task_id"] for row in tasks.values())
    return [
        orjson.dumps({"service_id": SERVICE, "task_id": ids[0], "extension": "Survey",
                      "value": {"q": 1, "tag": tag}}),
        orjson.dumps({"service_id": SERVICE, "task_id": ids[0], "end": {"disposition": 3}}),
        orjson.dumps({"service_id": SERVICE, "task_id": ids[1], "extension": "Proposal",
                      "value": [{"seats": 2}, {"seats": 8}]}),
        orjson.dumps({"service_id": SERVICE, "task_id": ids[2],
                      "end": {"disposition_desc": "late", "timestamp": "2030-01-01T00:00:00Z",
                              "Note": {"é": None}}}),
    ]  # fmt: skip


@asynccontextmanager
async def consumer_on(settings: StackSettings) -> AsyncIterator[None]:
    """Another consumer (its own group: it reads the request log from its beginning)."""
    stopping = asyncio.Event()
    task = asyncio.create_task(run_consumer(settings, stopping))
    try:
        yield
    finally:
        stopping.set()
        await asyncio.wait_for(task, 30)
    assert task.exception() is None


@pytest.mark.usefixtures("consumer")
async def test_replaying_the_whole_request_log_then_rebuilding_changes_nothing(
    settings: StackSettings, postgres_server_url: str, tmp_path: Path
) -> None:
    starts = [orjson.dumps({"service_id": SERVICE, "event": {"state_id": i, "tag": tmp_path.name}})
              for i in range(3)]  # fmt: skip
    await produce(settings, [write_lines(tmp_path / "starts.jsonl", starts)])
    tasks = await wait_for_tasks(settings, 3)
    await produce(settings, [write_lines(tmp_path / "life.jsonl", life_of(tmp_path.name, tasks))])
    await wait_for_records(settings, settings.topics.created, 7)
    keys = [(SERVICE, row["task_id"], None) for row in tasks.values()]
    ids = [row["task_id"] for row in tasks.values()]
    before = await reads(settings.database_url, keys)
    changes = await changes_recorded(settings.database_url, ids)
    assert len(changes) == 4
    assert sum(b'"completed":{' in doc.encode() for doc, _ in before) == 2

    summary = await replay(settings, ReplayOptions())
    assert (summary.sent, summary.invalid_count) == (7, 0)
    await wait_for_records(settings, settings.topics.created, 14)
    assert await count_records(settings, settings.topics.rejected) == 0
    assert await reads(settings.database_url, keys) == before
    assert await changes_recorded(settings.database_url, ids) == changes
    assert len(await tasks_of(settings)) == 3

    async with fresh_database(postgres_server_url) as url:
        target = settings.with_(database_url=url)
        restored = await rebuild(target)
        assert restored.error is None, restored.error
        assert (restored.sent, restored.counts["changes"], restored.duplicate_count) == (3, 4, 7)
        assert await reads(url, keys) == before
        assert await changes_recorded(url, ids) == changes

        # The whole request log again, against the rebuilt database: every request is known.
        elsewhere = target.with_(consumer_group=f"{settings.consumer.consumer_group}.rebuilt")
        async with consumer_on(elsewhere):  # 14 requests (7, and their replay): 14 answers
            await wait_for_records(settings, settings.topics.created, 28)
        assert await count_records(settings, settings.topics.rejected) == 0
        assert await reads(url, keys) == before
        assert await changes_recorded(url, ids) == changes
