"""The tools with ends and extension updates, against the real broker: `produce` publishes the
three kinds with their attributes and tenant, `export` and `replay` keep them, the task events
log's completed and extension-updated records become their requests, `tail` shows them, and
`send` publishes ends and extension updates (its usage errors are one line, exit 2)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from rich.console import Console
from typer.testing import CliRunner

from producer_tools.cli import app
from producer_tools.tools._events import PRODUCE_SOURCE, plain_identity
from producer_tools.tools._progress import EXIT_OK
from producer_tools.tools._ranges import RangeSpec, open_range, read_ranges
from producer_tools.tools.export import ExportOptions, export
from producer_tools.tools.produce import produce
from producer_tools.tools.replay import ReplayOptions, replay
from producer_tools.tools.tail import TailOptions, tail
from schemas import wire
from schemas.validation import EventKind
from tests.integration.test_tools import env_of, write_lines
from tests.servers import StackSettings, create_topics
from tests.unit.test_tools_log import COMPLETED_RECORD, CREATED_RECORD, UPDATED_RECORD

SERVICE = 31337
END_BODY = {"disposition": "resolved", "disposition_desc": "fine", "Survey": {"q": 9}}
VALUE = [{"car type": "cabriolet", "seats": 2}]


def lines() -> list[bytes]:
    return [
        orjson.dumps({"service_id": SERVICE, "event": {"state_id": 1}, "tenant": "acme"}),
        orjson.dumps({"service_id": SERVICE, "task_id": 5, "end": END_BODY, "tenant": "acme"}),
        orjson.dumps(
            {
                "service_id": SERVICE,
                "task_id": "5",
                "extension": "Proposal",
                "value": VALUE,
                "tenant": "acme",
                "group": "eu",
            }
        ),
    ]


async def records(settings: StackSettings, topic: str) -> list[Any]:
    async with open_range(settings, RangeSpec(topic=topic), topic) as (reader, ranges):
        return [r async for chunk in read_ranges(reader, ranges) for r in chunk]


def attributes(record: Any) -> tuple[Any, ...]:
    envelope = wire.decode_request(record.value, record.headers)
    data = envelope.data if envelope.structured else orjson.loads(envelope.data)
    return (
        envelope.source,
        envelope.id,
        envelope.type,
        envelope.service_id and int(envelope.service_id),
        envelope.task_id and int(envelope.task_id),
        envelope.extension,
        envelope.tenant,
        envelope.group,
        data,
    )


async def test_produce_export_and_replay_keep_ends_extension_updates_and_the_tenant(
    settings: StackSettings, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "life.jsonl", lines())
    assert (await produce(settings, [path])).sent == 3
    sent = await records(settings, settings.topics.requests)
    assert sorted(attributes(r) for r in sent) == sorted(
        [
            (
                PRODUCE_SOURCE,
                plain_identity(SERVICE, {"state_id": 1}, tenant="acme"),
                wire.TYPE_TASK_START,
                SERVICE, None, None, "acme", None, {"state_id": 1},
            ),
            (
                PRODUCE_SOURCE,
                plain_identity(SERVICE, END_BODY, kind=EventKind.END, task_id=5, tenant="acme"),
                wire.TYPE_TASK_END,
                SERVICE, 5, None, "acme", None, END_BODY,
            ),
            (
                PRODUCE_SOURCE,
                plain_identity(
                    SERVICE,
                    VALUE,
                    kind=EventKind.EXTENSION,
                    task_id=5,
                    extension="Proposal",
                    tenant="acme",
                    group="eu",
                ),
                wire.TYPE_TASK_EXTENSION,
                SERVICE, 5, "Proposal", "acme", "eu", VALUE,
            ),
        ]
    )  # fmt: skip
    assert {r.key for r in sent} == {str(SERVICE).encode()}

    exported = tmp_path / "requests.jsonl"
    assert (await export(settings, ExportOptions(output=str(exported)))).sent == 3
    scratch = settings.with_(topic_requests=settings.topics.requests + ".scratch")
    await create_topics(scratch)
    assert (await produce(scratch, [str(exported)])).sent == 3
    assert sorted(map(attributes, await records(scratch, scratch.topics.requests))) == sorted(
        map(attributes, sent)
    )
    again = await replay(settings, ReplayOptions(target=scratch.topics.requests))
    assert (again.sent, again.invalid_count) == (3, 0)
    copies = (await records(scratch, scratch.topics.requests))[3:]
    assert sorted((r.key, r.value, r.headers) for r in copies) == sorted(
        (r.key, r.value, r.headers) for r in sent
    )


async def publish_log(settings: StackSettings) -> None:
    producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
    await producer.start()
    try:
        for key, value, headers in (CREATED_RECORD, COMPLETED_RECORD, UPDATED_RECORD):
            await producer.send_and_wait(settings.topics.created, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_the_task_events_log_exports_and_replays_as_the_requests_it_answers(
    settings: StackSettings, tmp_path: Path
) -> None:
    await publish_log(settings)
    out = tmp_path / "log.jsonl"
    summary = await export(settings, ExportOptions(RangeSpec(topic="created"), str(out)))
    assert (summary.sent, summary.invalid_count) == (3, 0)
    requests = {e["type"]: e for e in map(orjson.loads, out.read_bytes().splitlines())}
    assert set(requests) == {wire.TYPE_TASK_START, wire.TYPE_TASK_END, wire.TYPE_TASK_EXTENSION}
    assert requests[wire.TYPE_TASK_END]["data"]["disposition"] == 7
    assert {e["tenantid"] for e in requests.values()} == {"acme"}
    assert (
        requests[wire.TYPE_TASK_EXTENSION]["extension"],
        requests[wire.TYPE_TASK_EXTENSION]["taskid"],
    ) == ("Proposal", "12")

    done = await replay(settings, ReplayOptions(RangeSpec(topic="created")))
    assert (done.sent, done.invalid_count) == (3, 0)
    replayed = await records(settings, settings.topics.requests)
    assert sorted(attributes(r)[:8] for r in replayed) == sorted(
        (e["source"], e["id"], e["type"], 5, int(e.get("taskid", 0)) or None, e.get("extension"),
         "acme", e.get("groupid"))
        for e in requests.values()
    )  # fmt: skip


async def test_tail_shows_completed_and_extension_updated_replies(
    settings: StackSettings,
) -> None:
    await publish_log(settings)
    out = io.StringIO()
    assert await tail(settings, TailOptions(json=True, from_beginning=True, count=3), out) == 3
    seen = {item["kind"]: item for item in map(orjson.loads, out.getvalue().splitlines())}
    assert set(seen) == {"created", "completed", "extension-updated"}
    assert (seen["completed"]["task_id"], seen["completed"]["tenant"]) == (12, "acme")
    assert seen["completed"]["event"] == {"source": "urn:crm", "id": "end-1"}
    assert seen["extension-updated"]["extension"] == "Proposal"
    assert seen["extension-updated"]["reply"]["value"] == [{"seats": 2}]

    screen = Console(file=io.StringIO(), width=300)
    await tail(settings, TailOptions(from_beginning=True, count=3), screen)
    shown = screen.file.getvalue().splitlines()  # type: ignore[attr-defined]
    updated = next(line for line in shown if "extension-updated" in line)
    assert "task 12" in updated
    assert "extension Proposal" in updated
    assert "tenant acme" in updated
    assert "event urn:crm ext-1" in updated
    assert any("completed" in line and "event urn:crm end-1" in line for line in shown)


runner = CliRunner()


async def test_send_publishes_ends_and_extension_updates_with_their_attributes(
    settings: StackSettings,
) -> None:
    """Without a consumer no reply comes (exit 5); the request is on the requests topic."""

    def send(*args: str) -> Any:
        return runner.invoke(app, ["send", "--timeout", "0.5", *args], env=env_of(settings))

    ended = await asyncio.to_thread(
        send, "--end", "9", "--tenant", "acme", "--id", "e-1", str(SERVICE), '{"disposition":3}'
    )
    assert ended.exit_code == 5, ended.output
    assert ended.stderr.strip().splitlines() == [
        "ucs-tasks send: no reply within 0.5s (is the consumer running?)"
    ]
    updated = await asyncio.to_thread(
        send, "--extension", "Survey", "--task", "9", "--group", "eu", "--id", "x-1",
        str(SERVICE), '{"q": 1}',
    )  # fmt: skip
    assert updated.exit_code == 5, updated.output
    sent = {
        attributes(r)[1]: attributes(r)[2:]
        for r in await records(settings, settings.topics.requests)
    }
    assert sent == {
        "e-1": (wire.TYPE_TASK_END, SERVICE, 9, None, "acme", None, {"disposition": 3}),
        "x-1": (wire.TYPE_TASK_EXTENSION, SERVICE, 9, "Survey", None, "eu", {"q": 1}),
    }


def test_send_refuses_a_contradictory_or_incomplete_command_line_in_one_line() -> None:
    cases = {
        ("--end", "1", "--extension", "S", "--task", "1", "5", "{}"): "give one of them",
        ("--extension", "S", "5", "{}"): "--extension NAME and --task TASK_ID go together",
        ("--task", "3", "5", "{}"): "--extension NAME and --task TASK_ID go together",
        ("--end", "0", "5", "{}"): "Invalid task id: task_id must be a decimal integer between",
        ("--end", "1", "x", "{}"): "Invalid service id: service_id must be a decimal integer",
    }
    for args, says in cases.items():
        result = runner.invoke(app, ["send", *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        (error,) = result.stderr.strip().splitlines()
        assert error.startswith("ucs-tasks send: ")
        assert says in error, error


def test_the_cli_documents_the_send_options() -> None:
    result = runner.invoke(app, ["send", "--help"])
    assert result.exit_code == EXIT_OK
    for option in ("--end", "--extension", "--task", "--tenant", "--group"):
        assert option in result.output
