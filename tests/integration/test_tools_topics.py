"""`ucs-tasks topics create|check` and the consumer's start-up check, on the real broker.

The embedded broker reports only the configs given at creation: a topic made without them
shows the check's warnings, a topic made with other values its errors. What it cannot show (a
broker that reports every key) is in tests/unit/test_topic_rules.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from consumer.admin import create_topics
from consumer.bootstrap import run_consumer
from consumer.kafka.topics import TopicSetupError, describe
from producer_tools.cli import app
from producer_tools.devstack.embedded import free_port
from tests import servers
from tests.integration.test_tools import env_of
from tests.kafka_client import TaskClient
from tests.servers import StackSettings, topic_names

FAST_RETRY = {"retry_backoff_initial_ms": 100, "retry_backoff_max_ms": 300}


@pytest.fixture
def bare(kafka_bootstrap: str, database_url: str) -> StackSettings:
    """Settings whose topics do not exist yet."""
    return servers.make_settings(kafka_bootstrap, database_url).with_(**FAST_RETRY)


def topics_command(settings: StackSettings, *args: str) -> Any:
    return CliRunner().invoke(app, ["topics", *args], env=env_of(settings))


async def observed(settings: StackSettings) -> dict[str, Any]:
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        return await describe(admin, settings.topics.service_topics())
    finally:
        await admin.close()


async def test_create_makes_every_topic_with_the_settings_the_guarantees_need(
    bare: StackSettings,
) -> None:
    result = await asyncio.to_thread(topics_command, bare, "create")
    assert result.exit_code == 0, result.output
    for name in bare.topics.service_topics():
        assert f"{name}: created" in result.output
    assert "keep what the guarantees need" in result.output

    found = await observed(bare)
    created = found[bare.topics.created]
    assert created.configs is not None
    assert {
        k: created.configs[k] for k in ("retention.ms", "retention.bytes", "cleanup.policy")
    } == {
        "retention.ms": "-1",
        "retention.bytes": "-1",
        "cleanup.policy": "delete",
    }
    requests = found[bare.topics.requests]
    assert requests.configs is not None
    assert requests.configs["max.message.bytes"] == str(bare.contract.max_request_record_bytes)
    assert "retention.ms" not in requests.configs
    for name in (bare.topics.created, bare.topics.rejected, bare.topics.dead_letter):
        configs = found[name].configs
        assert configs is not None
        assert configs["max.message.bytes"] == str(bare.contract.max_reply_record_bytes)
    for topic in found.values():
        assert (topic.partitions, topic.replication_factor) == (3, 1)
        assert topic.configs["min.insync.replicas"] == "1"

    again = await asyncio.to_thread(topics_command, bare, "create")
    assert again.exit_code == 0, again.output
    assert f"{bare.topics.created}: ok" in again.output
    checked = await asyncio.to_thread(topics_command, bare, "check", "--json")
    report = orjson.loads(checked.output)
    assert (checked.exit_code, report["exit_code"], report["fixes"]) == (0, 0, [])
    assert {t["status"] for t in report["topics"]} == {"ok"}


async def test_check_reports_missing_topics_without_creating_them(bare: StackSettings) -> None:
    result = await asyncio.to_thread(topics_command, bare, "check")
    assert result.exit_code == 1, result.output
    for name in bare.topics.service_topics():
        assert f"{name}: error" in result.output
    assert "does not exist" in result.output
    assert "  ucs-tasks topics create" in result.output
    assert not set(bare.topics.service_topics()) & await topic_names(bare)


async def test_check_names_each_config_that_breaks_a_promise_and_the_command_that_fixes_it(
    bare: StackSettings,
) -> None:
    # Made by hand with a week's retention and too small a record limit.
    await create_topics(
        bare.kafka,
        bare.topics.service_topics(),
        3,
        {"retention.ms": "604800000", "max.message.bytes": "1000", "min.insync.replicas": "1"},
        replication_factor=1,
    )
    result = await asyncio.to_thread(topics_command, bare, "check", "--json")
    assert result.exit_code == 1, result.output
    report = orjson.loads(result.output)
    by_name = {t["name"]: t for t in report["topics"]}
    created = by_name[bare.topics.created]
    assert created["status"] == "error"
    problems = {f["subject"]: f for f in created["findings"]}
    assert problems["retention.ms"]["severity"] == "error"
    assert "retention.ms is 604800000, must be -1" in problems["retention.ms"]["problem"]
    assert problems["max.message.bytes"]["severity"] == "error"
    # Never given at creation: tansu does not report them, the check cannot confirm them.
    assert problems["retention.bytes"]["severity"] == "warning"
    assert problems["cleanup.policy"]["severity"] == "warning"
    assert (
        f"kafka-configs.sh --bootstrap-server {bare.kafka.bootstrap_servers} --alter "
        f"--entity-type topics --entity-name {bare.topics.created} --add-config "
        "max.message.bytes="
    ) in "\n".join(report["fixes"])
    requests = {f["subject"]: f["severity"] for f in by_name[bare.topics.requests]["findings"]}
    assert requests == {"max.message.bytes": "error"}

    human = await asyncio.to_thread(topics_command, bare, "check")
    assert human.exit_code == 1
    assert "to fix, an operator would run (nothing is altered automatically):" in human.output
    assert "retention.ms=-1" in human.output
    # Nothing was altered.
    again = (await observed(bare))[bare.topics.created]
    assert again.configs is not None
    assert again.configs["retention.ms"] == "604800000"


async def test_topics_made_without_configs_only_warn_on_a_broker_that_does_not_report_them(
    bare: StackSettings,
) -> None:
    await create_topics(bare.kafka, bare.topics.service_topics(), 2, replication_factor=1)
    result = await asyncio.to_thread(topics_command, bare, "check")
    assert result.exit_code == 0, result.output
    assert "not reported by the broker" in result.output
    assert "has 2 partitions, UCS_TOPIC_PARTITIONS asks for 3" in result.output
    assert "error" not in result.output


async def test_too_few_replicas_is_an_error(bare: StackSettings) -> None:
    demanding = bare.with_(topic_replication_factor=2)
    await create_topics(bare.kafka, bare.topics.service_topics(), 3, replication_factor=1)
    result = await asyncio.to_thread(topics_command, demanding, "check")
    assert result.exit_code == 1, result.output
    assert "has 1 replicas per partition, UCS_TOPIC_REPLICATION_FACTOR asks for 2" in result.output
    assert "kafka-reassign-partitions.sh" in result.output


def test_an_unreachable_broker_exits_3_with_the_reason(bare: StackSettings) -> None:
    port = free_port()
    closed = bare.with_(kafka_bootstrap_servers=f"127.0.0.1:{port}")
    result = topics_command(closed, "check")
    assert result.exit_code == 3, result.output
    assert result.output.startswith(f"error: topics check on 127.0.0.1:{port}: ")
    assert len(result.output.strip().splitlines()) == 1


# --- the consumer's start-up check ------------------------------------------------------------


async def test_a_consumer_refuses_to_start_on_a_created_log_that_is_not_kept_forever(
    bare: StackSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consumer")
    await create_topics(
        bare.kafka, bare.topics.service_topics(), 3, {"retention.ms": "604800000"},
        replication_factor=1,
    )  # fmt: skip
    stopping = asyncio.Event()
    with pytest.raises(TopicSetupError) as refused:
        await asyncio.wait_for(run_consumer(bare, stopping), 30)
    reason = str(refused.value)
    assert "\n" not in reason
    assert f"{bare.topics.created}: retention.ms is 604800000, must be -1" in reason
    assert "ucs-tasks topics check" in reason
    logged = [r.getMessage() for r in caplog.records]
    assert any("kafka-configs.sh" in m and "retention.ms=-1" in m for m in logged)
    assert not any(m.startswith("consuming ") for m in logged)


async def test_the_consumer_process_exits_3_with_one_line_naming_the_problem(
    bare: StackSettings,
) -> None:
    await create_topics(
        bare.kafka, bare.topics.service_topics(), 3, {"max.message.bytes": "1000"},
        replication_factor=1,
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consumer",
        env={**os.environ, **env_of(bare)},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3, err.decode()
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("ucs-tasks consumer: the topics do not keep what the guarantees need:")
    assert f"{bare.topics.requests}: max.message.bytes is 1000, must be at least" in last


async def test_a_consumer_waits_for_missing_topics_without_creating_them_then_consumes(
    bare: StackSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer")
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(bare, stopping))
    try:
        async with asyncio.timeout(30):
            while not any("topics not ready" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
        waiting = next(
            r.getMessage() for r in caplog.records if "topics not ready" in r.getMessage()
        )
        assert "ucs-tasks topics create" in waiting
        assert bare.topics.requests in waiting
        assert bare.topics.requests not in await topic_names(bare)
        assert not consumer.done()

        await servers.create_topics(bare)
        client = TaskClient(bare)
        await client.start()
        try:
            reply = await client.reply(await client.send(b'{"state_id": 1}'), timeout=30)
            assert reply.payload["kind"] == "task.created"
        finally:
            await client.stop()
    finally:
        stopping.set()
        await asyncio.wait_for(consumer, 30)
    assert consumer.exception() is None


async def test_a_consumer_starts_on_topics_it_can_only_warn_about(
    bare: StackSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="consumer")
    await create_topics(bare.kafka, bare.topics.service_topics(), 3, replication_factor=1)
    stopping = asyncio.Event()
    consumer = asyncio.create_task(run_consumer(bare, stopping))
    try:
        client = TaskClient(bare)
        await client.start()
        try:
            reply = await client.reply(await client.send(b'{"state_id": 2}'), timeout=30)
            assert reply.payload["kind"] == "task.created"
        finally:
            await client.stop()
    finally:
        stopping.set()
        await asyncio.wait_for(consumer, 30)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"topic {bare.topics.created}: retention.ms is not reported" in m for m in warned), (
        warned
    )
