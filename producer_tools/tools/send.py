"""`ucs-tasks send`: publish one task-start event and print the reply it gets, as JSON."""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from producer_tools.tools._progress import ToolError
from producer_tools.tools.settings import ToolsConfig
from schemas import wire
from schemas.task_start import TaskStartValidationError, parse_service_id

EXIT_CREATED, EXIT_REJECTED, EXIT_USAGE, EXIT_BROKER, EXIT_TIMEOUT = 0, 1, 2, 3, 5


def source_uri() -> str:
    """The CloudEvents source of events this host's tools publish."""
    return f"urn:ucs-tasks:cli:{socket.gethostname()}"


async def _reply_listener(settings: ToolsConfig) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the end of both reply topics."""
    listener = AIOKafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    await listener.start()
    partitions = [
        TopicPartition(topic, p)
        for topic in (settings.topics.created, settings.topics.rejected)
        for p in (listener.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        await listener.stop()
        raise ToolError(
            f"the reply topics {settings.topics.created!r} and {settings.topics.rejected!r} do "
            "not exist (create the topics: `ucs-tasks topics create`)",
            EXIT_USAGE,
        )
    listener.assign(partitions)
    await listener.seek_to_end(*partitions)
    for tp in partitions:  # resolve positions now, before the request can be answered
        await listener.position(tp)
    return listener


async def send_one(
    settings: ToolsConfig, service_id: int, body: bytes, event_id: str, timeout_s: float
) -> dict[str, Any] | None:
    """Publish one binary-mode event and wait for the reply that carries its correlation id."""
    correlation_id = uuid.uuid4().hex
    listener = await _reply_listener(settings)
    producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
    try:
        await producer.start()
        key, value, headers = wire.encode_request_binary(
            service_id=service_id,
            body=body,
            event_id=event_id,
            source=source_uri(),
            correlation_id=correlation_id,
        )
        await producer.send_and_wait(
            settings.topics.requests, value=value, key=key, headers=headers
        )
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await listener.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        if wire.reply_correlation(record.headers) == correlation_id:
                            reply: dict[str, Any] = orjson.loads(record.value)
                            return reply
    except TimeoutError:
        return None
    finally:
        await producer.stop()
        await listener.stop()


def run(
    settings: ToolsConfig, service_id: str, body: bytes, event_id: str | None, timeout: float
) -> int:
    """The command: prints the reply JSON on stdout; exit 0 created, 1 rejected, 2 usage, 3 the
    broker cannot be reached, 5 no reply in time."""
    try:
        sid = parse_service_id(service_id)
    except TaskStartValidationError as exc:
        print(orjson.dumps(exc.body().model_dump()).decode(), file=sys.stderr)
        return EXIT_USAGE
    try:
        reply = asyncio.run(send_one(settings, sid, body, event_id or uuid.uuid4().hex, timeout))
    except ToolError as exc:
        print(f"ucs-tasks send: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KafkaError, OSError) as exc:
        where = settings.kafka.bootstrap_servers
        print(f"ucs-tasks send: cannot reach the Kafka broker at {where}: {exc}", file=sys.stderr)
        return EXIT_BROKER
    if reply is None:
        print(f"no reply within {timeout:g}s (is the consumer running?)", file=sys.stderr)
        return EXIT_TIMEOUT
    sys.stdout.write(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_CREATED if reply.get("kind") == "task.created" else EXIT_REJECTED
