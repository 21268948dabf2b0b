"""`ucs-tasks status` after real traffic: lag per partition, dead letters, ids, the last task."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from producer_tools.cli import app
from producer_tools.devstack.embedded import free_port
from producer_tools.tools.status import read as read_status
from tests.kafka_client import TaskClient
from tests.servers import StackSettings

runner = CliRunner()


def status(settings: StackSettings, **env: str) -> Any:
    environment = {k: v for k, v in settings.env().items() if k.startswith("UCS_")}
    return runner.invoke(app, ["status", "--json"], env={**environment, **env})


async def test_status_reports_lag_dead_letters_ids_and_the_last_task(
    settings: StackSettings, consumer: object, client: TaskClient
) -> None:
    created = [await client.reply(await client.send(b'{"state_id": %d}' % n)) for n in range(3)]
    rejected = await client.reply(await client.send(b'{"state_id": 1.5}'))
    assert rejected.payload["kind"] == "task.rejected"
    await client.send_raw(b"not a cloud event", b"1")
    await client.wait_for(lambda: len(client.dead_letters) == 1)
    last_id = max(r.payload["task_id"] for r in created)
    async with asyncio.timeout(30):
        while True:  # the group commits right after the replies: wait for it
            result = await asyncio.to_thread(status, settings)
            assert result.exit_code == 0, result.output
            report = orjson.loads(result.stdout)
            if report["lag"] == 0:
                break
            await asyncio.sleep(0.2)
    assert report["group"] == settings.consumer.consumer_group
    assert len(report["partitions"]) == settings.topics.partitions
    assert sum(p["end"] for p in report["partitions"]) == 5
    assert all(p["committed"] == p["end"] for p in report["partitions"] if p["end"])
    assert report["dead_letters"] == 1
    assert report["last_task"]["task_id"] == last_id
    assert report["ids_used"] >= last_id
    assert report["ids_used"] + report["ids_left"] == 2**31 - 1
    assert report["rejected"] >= 1


async def test_status_with_the_broker_down_is_one_line_and_exit_3(settings: StackSettings) -> None:
    down = f"127.0.0.1:{free_port()}"
    result = await asyncio.to_thread(status, settings, UCS_KAFKA_BOOTSTRAP_SERVERS=down)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert result.stderr.strip().count("\n") == 0
    assert down in result.stderr


async def test_status_answers_while_the_requests_topic_is_being_written(
    settings: StackSettings,
) -> None:
    # The end of each partition is checked by reading its last batch; records arriving all the
    # while once kept that read going until its 10 s timeout (status failed on a busy topic).
    path = settings.topics.requests
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    sent = 0
    writing = asyncio.Event()

    async def write() -> None:
        nonlocal sent
        while True:  # one partition, a record every few ms: every poll of it finds more
            await producer.send_and_wait(path, b"{}", partition=0)
            sent += 1
            writing.set()
            await asyncio.sleep(0.003)

    writer = asyncio.create_task(write())
    try:
        await writing.wait()
        before = sent
        started = time.monotonic()
        report = await read_status(settings, settings.consumer.consumer_group)
        took = time.monotonic() - started
        after = sent
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await producer.stop()
    ends = sum(p["end"] for p in report.partitions)
    assert before <= ends <= after + 1  # + the one send in flight, stored but not acked yet
    assert took < 8, took  # not the probe's 10 s timeout
